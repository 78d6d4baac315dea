"""Where YuNet's five points lie in a UTKFace chip (``faceage.data.yunet.TEMPLATE``), and whether chips cut by that
template give the model the error of UTKFace's own chips.

Each UTKFace training chip is padded by 50 px of repeated edge (so the detector sees the whole face) and detected;
the template is the median of the five points of the face nearest the middle, in chip pixels. Then validation chips
are re-cut from their padded copies by :func:`faceage.data.yunet.cut_chip` and the bundled model scores both sets.

    python -m benchmarks.studies.yunet_template --json benchmarks/studies/yunet_template.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image

from benchmarks.common import DEFAULT_DATA, require_data, write_json

PAD = 50


def padded_points(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The chip padded by :data:`PAD` px of repeated edge, and the middle face's five points in chip pixels."""
    from faceage.data import yunet

    arr = np.pad(np.asarray(Image.open(path).convert("RGB")), ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge")
    hits = yunet.detect(arr)
    if not hits:
        return None
    mid = np.array(arr.shape[1::-1]) / 2
    _, _, points = min(hits, key=lambda h: np.linalg.norm(np.array(h[0][:2]) / 2 + np.array(h[0][2:]) / 2 - mid))
    return arr, points - PAD


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--split-file", default="benchmarks/utkface_split_seed0.json")
    p.add_argument("--n-template", type=int, default=3000, help="training chips for the template")
    p.add_argument("--n-check", type=int, default=600, help="validation chips re-cut and scored")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    require_data(args.data)
    from faceage.data import yunet
    from faceage.data.readers import read_dataset
    from faceage.data.splits import load_split
    from faceage.inference.predictor import Predictor

    records, _ = read_dataset("utkface", args.data, check_images=False)
    split = load_split(args.split_file, records)
    rng = np.random.default_rng(0)
    train = rng.permutation(split["train"])[: args.n_template]
    points = [found[1] for i in train if (found := padded_points(records[i].path)) is not None]
    template = np.median(np.stack(points), 0)
    original, recut, ages = [], [], []
    for i in rng.permutation(split["val"])[: args.n_check]:
        found = padded_points(records[i].path)
        if found is None:
            continue
        arr, pts = found
        original.append(Image.open(records[i].path).convert("RGB"))
        recut.append(yunet.cut_chip(arr, pts + PAD, 200, yunet.TEMPLATE_PADDING))
        ages.append(records[i].age)
    predictor = Predictor(detect=False)
    ages = np.asarray(ages, dtype=np.float64)
    scores = {}
    for name, chips in (("utkface_chips", original), ("template_chips", recut)):
        pred = np.array([f.age for f in predictor.predict_chips(chips)])
        scores[name] = {"mae": float(np.abs(pred - ages).mean()), "bias": float((pred - ages).mean())}
    result = {"n_template": len(points), "missed": int(len(train) - len(points)),
              "template": np.round(template, 2).tolist(), "template_iqr": np.round(
                  np.percentile(np.stack(points), 75, 0) - np.percentile(np.stack(points), 25, 0), 2).tolist(),
              "n_check": len(ages), "check": scores}
    print(result)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
