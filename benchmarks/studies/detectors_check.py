"""Checks of detection changes on data they were not chosen on (``benchmarks/RESULTS.md``, "Detection on photos").

* ``--photos SEED``: recall and false detections of ``FaceDetector`` on the detection benchmark's photo sets drawn
  with another seed, plus ``--negatives`` more face-free crops, for HOG without and with the weak hits
  (``WEAK_THRESHOLD``) and for BlazeFace;
* ``--chips N``: on N pre-cropped UTKFace test chips (seeded sample of the split's test faces), how many each
  detector finds and the bundled model's age MAE on them (the alignment's effect).

    python -m benchmarks.studies.detectors_check --photos 1 --negatives 400
    python -m benchmarks.studies.detectors_check --chips 400
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import DEFAULT_DATA
from benchmarks.detection import held_out_chips, photo_sets, score
from benchmarks.studies.detection_verifiers import negative_photos
from faceage.data import detect as det
from faceage.data import hog

SPLIT = Path(__file__).resolve().parents[1] / "utkface_split_seed0.json"


def _jpeg(im: Image.Image) -> np.ndarray:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)  # as the benchmark writes its photos
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def photos(data: Path, seed: int, negatives: int) -> None:
    sets = photo_sets(held_out_chips(data), 100, 50, seed)
    sets["negatives"] = negative_photos(negatives, seed + 7)
    arrays = {k: [_jpeg(p.image) for p in v] for k, v in sets.items()}
    weak = det.WEAK_THRESHOLD
    for name, kind, weak_threshold in (("hog, no weak hits", "hog", 0.0), ("hog", "hog", weak), ("blazeface (default)", "blazeface", weak)):
        det.WEAK_THRESHOLD = hog.WEAK_THRESHOLD = weak_threshold  # FaceDetector's and the close-ups' HOG search
        detector = det.FaceDetector(detector=kind)
        for set_name, photos_ in sets.items():
            r = score(photos_, {p.name: [(f.box, 0.0) for f in detector.detect(a)] for p, a in zip(photos_, arrays[set_name])})
            recall = "-" if r["recall"] is None else f"{r['recall']:.4f}"
            print(f"{name:18s} {set_name:10s} recall {recall} false {r['false']}", flush=True)
    det.WEAK_THRESHOLD = hog.WEAK_THRESHOLD = weak


def chips(data: Path, n: int) -> None:
    from faceage.evaluation.calibration import calibration_records
    from faceage.inference.predictor import Predictor

    records, _ = calibration_records("utkface", data, "test", SPLIT)
    random.Random(0).shuffle(records)
    records = records[:n]
    for kind in ("hog", "blazeface"):
        results = list(Predictor(engine="auto", detector=kind, workers=1).predict_files([r.path for r in records]))
        errors = [abs(res.faces[0].age - r.age) for res, r in zip(results, records) if res.faces]
        print(f"{kind}: found a face in {len(errors)} of {len(records)} chips, MAE on them {np.mean(errors):.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--photos", type=int, default=None, metavar="SEED")
    p.add_argument("--negatives", type=int, default=400)
    p.add_argument("--chips", type=int, default=None, metavar="N")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: shared UTKFace data not found (--data DIR)")
    if args.photos is not None:
        photos(data, args.photos, args.negatives)
    if args.chips:
        chips(data, args.chips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
