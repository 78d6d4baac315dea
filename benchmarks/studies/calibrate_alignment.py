"""Measures which dlib alignment reproduces the geometry of UTKFace's "aligned & cropped" 200x200 chips.

faceage models are trained on UTKFace chips, so the chips :class:`faceage.data.detect.FaceDetector` cuts from
raw photos must place the face exactly where UTKFace does. This script finds the ``padding`` of
``dlib.get_face_chip(img, shape, size=200, padding=p)`` (and any offset left over) that does so, two ways:

1. **Direct**: landmark each UTKFace chip and ask dlib which crop rectangle ``get_face_chip_details`` would cut
   from the chip itself. The chip was made by that very crop when the rectangle is the chip (width 200, centred,
   angle 0); the crop width at ``padding=0`` then gives the padding that makes it so:
   ``p* = (200 / width_at_p0 - 1) / 2`` (the template scales with ``1 + 2p``).
2. **Re-alignment sweep**: re-align every chip with ``get_face_chip(chip, shape, 200, p)`` for a grid of ``p``,
   landmark the result exactly like the originals, and compare face geometry (inter-ocular distance, eye and
   mouth height, as fractions of the chip side) with the UTKFace chips; interpolate the ``p`` that matches the
   inter-ocular distance and report what offset remains there.

Both are run with dlib's 68-point and 5-point shape predictors, since either can drive the alignment.

3. **As shipped**: re-align every chip with ``FaceDetector.align_box`` at its defaults (``UTKFACE_PADDING``; 68 and
   5 landmark points) and report the median and the per-face median absolute difference from UTKFace's geometry.

Usage::

    .venv/bin/python -m benchmarks.studies.calibrate_alignment [--n 200] [--data ../shared/data/utkface]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from benchmarks.common import DEFAULT_DATA
from faceage.data.detect import UTKFACE_PADDING, FaceDetector

SIZE = 200
PADDINGS = (0.10, 0.15, 0.175, 0.20, 0.225, 0.25, 0.30, 0.40)


def _models_dir() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("face_recognition_models is not installed; it ships the dlib landmark models")
    return os.path.join(spec.submodule_search_locations[0], "models")


class Landmarker:
    """HOG box (whole image when none) then both shape predictors, the same way for every image measured."""

    def __init__(self) -> None:
        models = _models_dir()
        self.hog = dlib.get_frontal_face_detector()
        self.sp = {
            68: dlib.shape_predictor(os.path.join(models, "shape_predictor_68_face_landmarks.dat")),
            5: dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat")),
        }
        self.n_whole = 0

    def box(self, img: np.ndarray) -> dlib.rectangle:
        dets, _, _ = self.hog.run(img, 1, -0.5)
        if len(dets):
            return max(dets, key=lambda r: r.area())
        self.n_whole += 1
        return dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)

    def shapes(self, img: np.ndarray) -> dict[int, dlib.full_object_detection]:
        box = self.box(img)
        return {k: sp(img, box) for k, sp in self.sp.items()}


def points(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def geometry(shape68: dlib.full_object_detection) -> np.ndarray:
    """Face geometry as fractions of the chip side: [inter-ocular distance, eye-mid x, eye-mid y, mouth y]."""
    p = points(shape68)
    left_eye, right_eye = p[36:42].mean(0), p[42:48].mean(0)
    mid = (left_eye + right_eye) / 2
    mouth = p[48:68].mean(0)
    return np.array([np.linalg.norm(right_eye - left_eye), mid[0], mid[1], mouth[1]]) / SIZE


def identity_rect() -> dlib.drectangle:
    """The crop rectangle dlib reports for a chip that maps every pixel onto itself."""
    pts = dlib.dpoints([dlib.dpoint(0, 0), dlib.dpoint(SIZE, 0), dlib.dpoint(0, SIZE)])
    return dlib.chip_details(pts, pts, dlib.chip_dims(SIZE, SIZE)).rect


def direct_estimate(shapes: list[dict[int, dlib.full_object_detection]]) -> None:
    ident = identity_rect()
    icx, icy = (ident.left() + ident.right()) / 2, (ident.top() + ident.bottom()) / 2
    print(f"\n1. Direct: crop rectangle dlib would cut from each UTKFace chip (identity = width {ident.width():.1f}, "
          f"centre ({icx:.1f}, {icy:.1f}))")
    print(f"{'landmarks':>9} {'p* median':>9} {'p* IQR':>15} {'dx px':>6} {'dy px':>6} {'angle deg':>9}")
    for k in (68, 5):
        widths, dx, dy, ang = [], [], [], []
        for s in shapes:
            d = dlib.get_face_chip_details(s[k], SIZE, 0.0)
            widths.append(d.rect.width())
            dx.append((d.rect.left() + d.rect.right()) / 2 - icx)
            dy.append((d.rect.top() + d.rect.bottom()) / 2 - icy)
            ang.append(np.degrees(d.angle))
        p_star = (ident.width() / np.array(widths) - 1) / 2
        q1, q3 = np.percentile(p_star, [25, 75])
        print(f"{k:>9} {np.median(p_star):9.3f} {q1:7.3f}-{q3:.3f} {np.median(dx):6.2f} {np.median(dy):6.2f} "
              f"{np.median(ang):9.2f}")
    print("   (dx, dy: where dlib's crop centre sits relative to the chip centre, in chip pixels at p*; "
          "positive dy = the aligned crop sits lower than UTKFace's)")


def sweep(chips: list[np.ndarray], shapes: list[dict], lm: Landmarker, utk_geo: np.ndarray) -> None:
    print("\n2. Re-alignment sweep: median geometry (fraction of chip side) of chips re-aligned at padding p")
    print(f"{'align':>5} {'p':>6} {'IOD':>7} {'eye x':>7} {'eye y':>7} {'mouth y':>7}")
    print(f"{'UTK':>5} {'-':>6} " + " ".join(f"{v:7.4f}" for v in utk_geo))
    for k in (68, 5):
        rows = []
        for p in PADDINGS:
            realigned = (dlib.get_face_chip(c, s[k], size=SIZE, padding=p) for c, s in zip(chips, shapes))
            geo = [geometry(lm.shapes(r)[68]) for r in realigned]
            g = np.median(np.array(geo), axis=0)
            rows.append(g)
            print(f"{k:>5} {p:6.3f} " + " ".join(f"{v:7.4f}" for v in g))
        rows = np.array(rows)
        # IOD falls monotonically with p: interpolate the p that reproduces UTKFace's IOD, then the offsets there.
        order = np.argsort(rows[:, 0])
        p_fit = float(np.interp(utk_geo[0], rows[order, 0], np.array(PADDINGS)[order]))
        at = np.array([np.interp(p_fit, PADDINGS, rows[:, j]) for j in range(rows.shape[1])])
        off = (at - utk_geo) * SIZE
        print(f"  -> {k}-point alignment matches UTKFace IOD at p = {p_fit:.3f}; remaining offset there "
              f"(re-aligned minus UTKFace, px of {SIZE}): eye x {off[1]:+.2f}, eye y {off[2]:+.2f}, "
              f"mouth y {off[3]:+.2f}")


def as_shipped(chips: list[np.ndarray], lm: Landmarker, utk_each: np.ndarray) -> None:
    print(f"\n3. FaceDetector.align_box as shipped (padding={UTKFACE_PADDING}), in px of {SIZE} "
          "(re-aligned minus UTKFace): median shift, and per-face median |difference|")
    print(f"{'landmarks':>9} {'IOD':>13} {'eye x':>13} {'eye y':>13} {'mouth y':>13}")
    for k in (68, 5):
        det = FaceDetector(detector="hog", chip_size=SIZE, landmark_model=k)
        geo = []
        for c in chips:
            b = lm.box(c)
            face = det.align_box(c, (b.left(), b.top(), b.right() + 1, b.bottom() + 1))
            geo.append(geometry(lm.shapes(np.asarray(face.chip))[68]))
        diff = (np.array(geo) - utk_each) * SIZE
        cells = [f"{np.median(diff[:, j]):+6.2f} ({np.median(np.abs(diff[:, j])):4.2f})" for j in range(4)]
        print(f"{k:>9} " + " ".join(f"{c:>13}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=200, help="number of chips (random sample, fixed seed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    files = sorted(glob.glob(str(args.data / "*.jpg")))
    if not files:
        sys.exit(f"no UTKFace chips under {args.data}; this benchmark needs ../shared/data/utkface")
    rng = np.random.default_rng(args.seed)
    files = [files[i] for i in rng.choice(len(files), min(args.n, len(files)), replace=False)]

    t0 = time.time()
    lm = Landmarker()
    chips = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    if any(c.shape[:2] != (SIZE, SIZE) for c in chips):
        sys.exit("expected 200x200 UTKFace chips")
    shapes = [lm.shapes(c) for c in chips]
    print(f"{len(chips)} UTKFace chips from {args.data} (seed {args.seed}); "
          f"HOG box found on {len(chips) - lm.n_whole}, whole-chip box used on {lm.n_whole}")
    direct_estimate(shapes)
    utk_each = np.array([geometry(s[68]) for s in shapes])
    utk_geo = np.median(utk_each, axis=0)
    sweep(chips, shapes, lm, utk_geo)
    as_shipped(chips, lm, utk_each)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
