"""Cheap verifiers for weak HOG hits, measured on faces and false hits of the detection benchmark's photo sets.

``FaceDetector`` keeps a HOG hit scoring under ``VERIFY_BELOW`` only when a verifier confirms it. This script
collects the HOG hits of both passes (without upsampling, and on the ``FINE_SCALE`` copy) on the benchmark's seeded
sets (``benchmarks/detection.py``: large, small, face-free, astronaut), labels each hit a face (IoU >= 0.4 with a
pasted face) or a false hit, and for every hit under ``VERIFY_BELOW`` (down to ``--threshold``, below dlib's 0, for
more false hits) measures:

* ``chip_hog``: the best HOG score (upsample 0, threshold -1) on the hit's aligned chip (68-point landmarks,
  ``UTKFACE_PADDING``), cut at ``--chip-sizes`` pixels, with its CPU time;
* ``shape``: the RMS distance of the fitted 68 landmarks, mapped into the chip, to the mean chip shape of real
  UTKFace chips (utkface-part1, never used as a test face), in units of the chip side;
* ``cnn``: the current confirmation (``faceage.data.hog.cnn_confirms``) and its CPU time.

    python -m benchmarks.studies.detection_verifiers --n 24 --n-small 12 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image, ImageFilter

from benchmarks.detection import (
    CANVAS,
    DEFAULT_DATA,
    IOU_MATCH,
    PART1_NAMES,
    SCENES,
    Photo,
    _scene,
    held_out_chips,
    photo_sets,
)
from faceage._io import write_text_atomic
from faceage.data import alignment, hog
from faceage.data import detect as det
from faceage.data.boxes import iou

# face-free skimage.data images shipped with scikit-image, for more false hits (no camera: it holds a face)
EXTRA_SCENES = [*SCENES, "logo", "horse", "checkerboard", "binary_blobs"]


def hits(arr: np.ndarray, threshold: float) -> list[tuple[dlib.rectangle, float, str]]:
    """HOG hits of both passes in ``arr`` pixels, with scores and the pass's name."""
    detector = hog.hog_detector()
    out = []
    rects, scores, _ = detector.run(arr, 0, threshold)
    out += [(r, float(s), "1x") for r, s in zip(rects, scores)]
    h, w = arr.shape[:2]
    size = (round(w * det.FINE_SCALE), round(h * det.FINE_SCALE))
    big = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
    rects, scores, _ = detector.run(big, 0, threshold)
    out += [(alignment.scale_rect(r, w / size[0]), float(s), "1.4x") for r, s in zip(rects, scores)]
    rects, scores, _ = detector.run(arr, 1, threshold)  # the thorough pass: dlib upsampling once (2x)
    out += [(r, float(s), "2x") for r, s in zip(rects, scores)]
    return out


def negative_photos(n: int, seed: int) -> list[Photo]:
    """``n`` more face-free canvases: crops of the face-free scenes zoomed 1-4x, half of them blurred a little."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = Image.fromarray(_scene(EXTRA_SCENES[i % len(EXTRA_SCENES)]))
        zoom = float(rng.uniform(1, 4)) * max(CANVAS[0] / img.width, CANVAS[1] / img.height)
        img = img.resize((max(CANVAS[0], round(img.width * zoom)), max(CANVAS[1], round(img.height * zoom))),
                         Image.Resampling.BILINEAR)
        x, y = int(rng.integers(0, img.width - CANVAS[0] + 1)), int(rng.integers(0, img.height - CANVAS[1] + 1))
        img = img.crop((x, y, x + CANVAS[0], y + CANVAS[1]))
        if i % 2:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2))))
        out.append(Photo(f"neg_{i:03d}.jpg", img))
    return out


def chip_points(shape, details) -> np.ndarray:
    """The landmarks of ``shape`` in the chip's pixel coordinates (as fractions of the chip side)."""
    pts = alignment.landmark_points(shape)
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    scale = details.rows / r.width()
    c, s = np.cos(-details.angle), np.sin(-details.angle)
    rel = pts - [cx, cy]
    rot = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1)
    return (rot * scale + details.rows / 2) / details.rows


def mean_shape(data: Path, n: int = 200) -> np.ndarray:
    names = sorted(PART1_NAMES.read_text().split())[:: 40][:n]
    sp = alignment.shape_predictor(68)
    shapes = []
    for name in names:
        path = data / name
        if not path.exists():
            continue
        arr = np.asarray(Image.open(path).convert("RGB"))
        rects = hog.hog_detector()(arr, 0)
        if not rects:
            continue
        shape = sp(arr, rects[0])
        shapes.append(chip_points(shape, dlib.get_face_chip_details(shape, 200, det.UTKFACE_PADDING)))
    return np.mean(shapes, 0)


def chip_hog(arr, details, size) -> tuple[float, float]:
    d = dlib.chip_details(details.rect, dlib.chip_dims(size, size), details.angle)
    t = time.process_time()
    chip = dlib.extract_image_chip(arr, d)
    _, scores, _ = hog.hog_detector().run(chip, 0, -1.0)
    return (max(scores) if len(scores) else -1.0), time.process_time() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--n-small", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", type=int, default=100, help="more face-free canvases (zoomed scene crops)")
    p.add_argument("--threshold", type=float, default=-0.3)
    p.add_argument("--chip-sizes", type=int, nargs="+", default=[100, 120, 150])
    p.add_argument("--no-cnn", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = Path(args.data)
    sets = {**photo_sets(held_out_chips(data), args.n, args.n_small, args.seed), "negatives": negative_photos(args.negatives, args.seed + 3)}
    ref = mean_shape(data)
    sp = alignment.shape_predictor(68)
    rows = []
    for set_name, photos in sets.items():
        for ph in photos:
            arr = np.asarray(ph.image)
            for rect, score, pass_name in hits(arr, args.threshold):
                if score >= det.VERIFY_BELOW:
                    continue
                box = alignment.clip_box(rect, arr.shape[1], arr.shape[0])
                face = any(iou(t, box) >= IOU_MATCH for t in ph.boxes)
                shape = sp(arr, rect)
                details = dlib.get_face_chip_details(shape, 200, det.UTKFACE_PADDING)
                row = {"set": set_name, "photo": ph.name, "pass": pass_name, "box": box, "side": rect.width(),
                       "score": score, "face": face,
                       "shape_rms": float(np.sqrt(((chip_points(shape, details) - ref) ** 2).sum(1).mean()))}
                for size in args.chip_sizes:
                    row[f"chip_hog_{size}"], row[f"chip_hog_{size}_s"] = chip_hog(arr, details, size)
                if not args.no_cnn:
                    t = time.process_time()
                    row["cnn"] = hog.cnn_confirms(arr, rect)
                    row["cnn_s"] = time.process_time() - t
                rows.append(row)
    faces = [r for r in rows if r["face"]]
    false = [r for r in rows if not r["face"]]
    print(f"weak hits (score {args.threshold} .. {det.VERIFY_BELOW}): {len(faces)} faces, {len(false)} false")
    for key in ["score", "shape_rms", *(f"chip_hog_{s}" for s in args.chip_sizes)]:
        f, n = np.array([r[key] for r in faces]), np.array([r[key] for r in false])
        print(f"{key:>14}: faces min {f.min():.3f} p5 {np.percentile(f, 5):.3f} median {np.median(f):.3f} | "
              f"false max {n.max():.3f} p95 {np.percentile(n, 95):.3f} median {np.median(n):.3f}")
    for size in args.chip_sizes:
        ms = 1000 * np.mean([r[f"chip_hog_{size}_s"] for r in rows])
        print(f"chip_hog_{size}: {ms:.1f} ms CPU a hit")
    if not args.no_cnn:
        print(f"cnn: faces confirmed {sum(r['cnn'] for r in faces)}/{len(faces)}, false confirmed "
              f"{sum(r['cnn'] for r in false)}/{len(false)}, {1000 * np.mean([r['cnn_s'] for r in rows]):.0f} ms a hit")
    for r in sorted(false, key=lambda r: -r[f"chip_hog_{args.chip_sizes[0]}"])[:8]:
        print("false:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if not k.endswith("_s")})
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
