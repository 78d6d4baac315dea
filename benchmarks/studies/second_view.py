"""A member that sees differently, beside the bundled model and averaged with it, on every dataset here.

The member (``configs/sface_member.yaml``: SFace's frozen face-recognition trunk with an age and a gender head,
trained on UTKFace and All-Age-Faces) reads 112-px chips, the bundled model 64-px ones, so they cannot share one
graph (:class:`faceage.models.ensemble.AgeEnsemble` needs one input); here each runs on the same aligned chips and
their age distributions and gender probabilities are averaged. Scored on the validation and test faces of
``utkface/`` and ``aaf/`` (the saved splits) and on the FairFace photos (YuNet, the middle face, age groups).

    python -m benchmarks.studies.second_view MEMBER_DIR --json benchmarks/studies/second_view.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import write_json
from benchmarks.photo_faces import DEFAULT_FAIRFACE

DATASETS = {"utkface": ("../shared/data/utkface", "benchmarks/utkface_split_seed0.json"),
            "aaf": ("../shared/data/aaf", "benchmarks/aaf_split_seed0.json")}


def outputs(predictor, chips: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """``(distributions (n, ages), P(female) (n,))`` of a predictor on aligned chips."""
    faces = predictor.predict_chips(chips)
    dist = np.stack([f.distribution for f in faces])
    female = np.array([f.gender_p if f.gender == "female" else 1 - f.gender_p for f in faces])
    return dist, female


def scores(dist: np.ndarray, female: np.ndarray, records: list, grouped: bool) -> dict:
    """MAE and gender accuracy (exact ages) or the age-group figures (grouped) of expected ages."""
    from faceage.evaluation.age_groups import group_metrics

    ages = dist @ np.arange(dist.shape[1])
    gender = np.array([r.gender if r.gender is not None else -1 for r in records])
    known = gender >= 0
    out = {"n": len(records), "gender": float(((female > 0.5).astype(int) == gender)[known].mean()) if known.any() else None}
    if grouped:
        m = group_metrics(ages, [r.age_low for r in records], [r.age_high for r in records])
        out.update({k: m[k] for k in ("inside", "years_outside", "bias")})
    else:
        true = np.array([r.age for r in records])
        out.update({"mae": float(np.abs(np.round(ages) - true).mean()), "bias": float((np.round(ages) - true).mean())})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("member", help="the second member's model directory")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from faceage.data.boxes import middle_face
    from faceage.data.detect import FaceDetector
    from faceage.data.readers import read_dataset
    from faceage.data.splits import load_split
    from faceage.inference.predictor import Predictor

    systems = {"v3": Predictor(detect=False), "member": Predictor(args.member, detect=False)}
    sets = {}
    for name, (root, split_file) in DATASETS.items():
        if not Path(root).is_dir():
            print(f"{root}: not found, skipped")
            continue
        records, _ = read_dataset(name, root, check_images=False)
        split = load_split(split_file, records)
        for part in ("val", "test"):
            chosen = [records[i] for i in split[part]]
            sets[f"{name}/{part}"] = (chosen, [Image.open(r.path).convert("RGB") for r in chosen], False)
    if Path(DEFAULT_FAIRFACE).is_dir():
        records, _ = read_dataset("fairface", DEFAULT_FAIRFACE)
        detector, kept, chips = FaceDetector(), [], []
        for r in records:
            image = Image.open(r.path).convert("RGB")
            face = middle_face(detector.detect(image), image.size)
            if face is not None:
                kept.append(r)
                chips.append(face.chip)
        sets["fairface"] = (kept, chips, True)
    result = {}
    for set_name, (records, chips, grouped) in sets.items():
        out = {name: outputs(pr, chips) for name, pr in systems.items()}
        mean = tuple((a + b) / 2 for a, b in zip(out["v3"], out["member"]))
        result[set_name] = {**{name: scores(*o, records, grouped) for name, o in out.items()},
                            "average": scores(*mean, records, grouped)}
        print(set_name, result[set_name])
    if args.json:
        write_json({"member": args.member, "results": result}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
