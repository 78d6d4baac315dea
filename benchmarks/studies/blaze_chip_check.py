"""The chip check of weak BlazeFace hits: which hits it keeps, on faces and on false hits, by BlazeFace's score.

``FaceDetector`` keeps a BlazeFace hit scoring from ``BLAZE_MIN_SCORE`` up to ``BLAZE_VERIFY_BELOW`` only when HOG,
at ``VERIFY_CHIP_THRESHOLD``, fires on the hit's chip aligned by its 68 landmarks (``_chip_confirms``). This study
collects BlazeFace's hits down to ``--min-score`` on the detection benchmark's seeded photo sets
(``benchmarks/detection.py``: large and small faces, the face-free images) and on more face-free canvases
(``benchmarks.studies.detection_verifiers.negative_photos``), the way the default detector sees them (the whole
image, the corner tiles where it gave none), labels each hit a face (its box overlaps a pasted face by IoU >= 0.3) or
a false hit (no pasted face overlaps it by 0.1), and records BlazeFace's score and the chip's best HOG score. Then it
counts, for rules "keep when the chip scores at least T" by band of BlazeFace score, the faces and false hits kept.

    python -m benchmarks.studies.blaze_chip_check --seeds 0 1 2 --json benchmarks/studies/blaze_chip_check.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_DATA, machine_info, write_json
from benchmarks.detection import held_out_chips, photo_sets
from benchmarks.studies.detection_verifiers import negative_photos
from faceage.data import blazeface, blazeface_boxes, hog
from faceage.data import detect as det
from faceage.data.boxes import iou

BANDS = [(0.25, 0.4), (0.4, 0.6), (0.6, 0.9)]
CHIP_THRESHOLDS = [-1.0, -0.8, -0.6, -0.5, -0.35, -0.2, 0.0]


def chip_score(arr: np.ndarray, rect) -> float:
    """The best HOG score (from -1.5) on the hit's chip, as the chip check cuts it; -2 when none."""
    _, score = hog.chip_score(arr, rect, -1.5)
    return -2.0 if score is None else score


def hits(photo, min_score: float) -> list[dict]:
    """BlazeFace's hits on ``photo`` as the default detector takes them, labelled and scored."""
    arr = np.asarray(photo.image.convert("RGB"))
    found = blazeface.detect(arr, min_score)
    second = not found
    if second:
        found = blazeface.detect_tiles(arr, min_score)
    rows = []
    for box, score, _ in found:
        overlap = max((iou(box, b) for b in photo.boxes), default=0.0)
        label = "face" if overlap >= 0.3 else "false" if overlap < 0.1 else None
        if label is None:
            continue
        rows.append({"photo": photo.name, "label": label, "blaze": float(score),
                     "chip": chip_score(arr, blazeface_boxes.blaze_rect(box)),
                     "second_look": second})
    return rows


def rule_table(rows: list[dict]) -> list[dict]:
    """Faces and false hits kept per BlazeFace-score band and chip threshold (first-look hits; second looks are
    all checked at the default threshold)."""
    out = []
    for lo, hi in BANDS:
        band = [r for r in rows if lo <= r["blaze"] < hi and not r["second_look"]]
        faces = [r for r in band if r["label"] == "face"]
        false = [r for r in band if r["label"] == "false"]
        for t in CHIP_THRESHOLDS:
            out.append({"band": [lo, hi], "chip_threshold": t, "faces": len(faces), "false": len(false),
                        "faces_kept": sum(r["chip"] >= t for r in faces),
                        "false_kept": sum(r["chip"] >= t for r in false)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--n-small", type=int, default=50)
    p.add_argument("--negatives", type=int, default=400)
    p.add_argument("--min-score", type=float, default=0.25)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: shared UTKFace data not found (--data DIR)")
    chips = held_out_chips(data)
    det.FaceDetector().load()
    per_seed = {}
    for seed in args.seeds:
        sets = photo_sets(chips, args.n, args.n_small, seed)
        photos = [*sets["large"], *sets["small"], *sets["face_free"], *negative_photos(args.negatives, seed + 3)]
        rows = [r for ph in photos for r in hits(ph, args.min_score)]
        per_seed[seed] = {"rows": rows, "rules": rule_table(rows)}
        print(f"seed {seed}: {len(photos)} photos, {sum(r['label'] == 'face' for r in rows)} face hits, "
              f"{sum(r['label'] == 'false' for r in rows)} false hits")
    print("\n| band of BlazeFace score | chip >= | " + " | ".join(f"seed {s} faces kept / false kept" for s in args.seeds)
          + " |\n|---|---:|" + "---:|" * len(args.seeds))
    for i, row in enumerate(per_seed[args.seeds[0]]["rules"]):
        cells = [f"{r['faces_kept']}/{r['faces']} / {r['false_kept']}/{r['false']}"
                 for r in (per_seed[s]["rules"][i] for s in args.seeds)]
        print(f"| {row['band'][0]}-{row['band'][1]} | {row['chip_threshold']} | " + " | ".join(cells) + " |")
    if args.json:
        command = shlex.join([sys.executable, "-m", "benchmarks.studies.blaze_chip_check", *(sys.argv[1:] if argv is None else argv)])
        write_json({"command": command, "machine": machine_info(("dlib-bin", "onnxruntime")),
                    "verify_chip_threshold": det.VERIFY_CHIP_THRESHOLD, "blaze_min_score": det.BLAZE_MIN_SCORE,
                    "seeds": per_seed}, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
