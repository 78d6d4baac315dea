"""``faceage calibrate``: fit calibrated age intervals and over-N policies on held-out faces, stored in the model's
``config.json`` (:mod:`faceage.evaluation.calibration`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from faceage.evaluation.calibration import (
    DEFAULT_CHALLENGES,
    DEFAULT_MAX_FPR,
    calibration_records,
    collect,
    fit_calibration,
    write_calibration,
)
from faceage.inference.calibration import DEFAULT_LEVEL


def _table_lines(cal: dict[str, Any]) -> list[str]:
    lines = []
    for key, fit in cal["intervals"].items():
        t = fit["fitted"]
        lines.append(f"level {key} (from the raw {fit['base_level']:g} interval): coverage {t['overall']['coverage']:.3f}, "
                     f"mean width {t['overall']['width']:.1f} years (n={t['overall']['n']}); "
                     "offsets by predicted band: " + ", ".join(f"{b} {q:+g}" for b, q in fit["offsets"].items()))
        lines.append("  by true age: " + ", ".join(f"{b} {r['coverage']:.3f}/{r['width']:.1f}y (n={r['n']})" for b, r in t["bands"].items() if r["n"]))
    from faceage.inference.calibration import policy_text

    for over, policy in cal["verify"].items():
        lines.append(policy_text(policy, int(over)))
        for name, rates in policy.get("by_dataset", {}).items():
            if rates.get("fpr") is not None and rates.get("adult_pass") is not None:
                lines.append(f"  {name}: {rates['fpr']:.2%} of {rates['n_minors']} faces aged {policy['minor_ages'][0]}-{policy['minor_ages'][1]} pass; "
                             f"{rates['adult_pass']:.1%} of {rates['n_adults']} aged {policy['adult_age']}+ pass")
        for c in policy["challenge"]:
            lines.append("  " + policy_text(policy, int(over), challenge=float(c)))
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage calibrate", description=(
        "Fit calibrated age intervals (Mondrian split-conformal CQR) and over-N decision thresholds on labelled faces "
        "the model did not train on, and store them in the model's config.json."))
    p.add_argument("model", help="model directory (its config.json is updated)")
    p.add_argument("--data", required=True, nargs="+",
                   help="dataset folder(s) of aligned face chips; several are fitted on together, and the over-N threshold "
                        "then holds --max-fpr in each of them")
    p.add_argument("--dataset", nargs="+", default=["utkface"],
                   help="dataset reader: one for all --data, or one per --data (default: utkface)")
    p.add_argument("--split", nargs="+", default=None,
                   help="a split.json saved by training, one per --data (default: the datamodule's seeded split)")
    p.add_argument("--split-name", default="val", choices=["val", "test", "train", "all"],
                   help="which split to fit on (default: val)")
    p.add_argument("--names", default=None,
                   help="a file listing the image names (one a line, relative to --data) to fit on instead of a split")
    p.add_argument("--level", type=float, nargs="+", default=[DEFAULT_LEVEL],
                   help="interval coverage(s) to fit (default 0.9)")
    p.add_argument("--base-level", default="auto",
                   help="level of the raw interval that is conformalized: a number, or auto (default: the narrowest by cross-fitting)")
    p.add_argument("--scale", choices=["none", "std"], default="none",
                   help="none (default): one offset for every face of a predicted-age band; std: conformal scores divided by "
                        "the age distribution's spread, so intervals widen where the model is unsure (no better coverage on "
                        "unseen datasets for the bundled model: benchmarks/calibration_transfer_v3.json)")
    p.add_argument("--over", type=int, nargs="+", default=[18], help="ages N to fit over-N policies for (default 18)")
    p.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                   help="largest share of people aged N-5..N-1 that may pass (default 0.01)")
    p.add_argument("--challenge", type=float, nargs="*", default=list(DEFAULT_CHALLENGES),
                   help="challenge ages measured beside each policy")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: onnx when the model has model.onnx")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--describe", default=None,
                   help="what the faces are, stored with the calibration (default: the data, split and count)")
    p.add_argument("--dry-run", action="store_true", help="fit and print, but do not write config.json")
    return p


def main(argv: list[str] | None = None) -> int:
    """``faceage calibrate``. Exit status 0 on success, 2 on bad arguments or unusable inputs."""
    parser = _parser()
    args = parser.parse_args(argv)
    if any(not 0 < v < 1 for v in args.level) or not 0 <= args.max_fpr < 1:
        parser.error("--level must be in (0, 1) and --max-fpr in [0, 1)")
    if args.base_level != "auto":
        try:
            args.base_level = float(args.base_level)
        except ValueError:
            parser.error(f"--base-level must be a number or auto, got {args.base_level!r}")
        if not 0 < args.base_level < 1:
            parser.error("--base-level must be in (0, 1)")
    n = len(args.data)
    if len(args.dataset) not in (1, n) or (args.split is not None and len(args.split) != n):
        parser.error(f"give one --dataset (or one per --data) and one --split per --data: {n} --data")
    if args.names and n > 1:
        parser.error("--names selects from one --data folder")
    datasets = args.dataset * n if len(args.dataset) == 1 else args.dataset
    splits = args.split or [None] * n
    from faceage.inference.predictor import Predictor

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"error: {model_dir}: not a model directory (no config.json)", file=sys.stderr)
        return 2
    engine = args.engine if args.engine != "auto" else ("onnx" if (model_dir / "model.onnx").exists() else "torch")
    try:
        predictor = Predictor(model_dir, engine=engine, detect=False, batch_size=args.batch_size, workers=args.workers, calibrated=False)
        parts, whats = [], []
        for dataset, data, split in zip(datasets, args.data, splits):
            selected, warnings = calibration_records(dataset, data, args.split_name, split, args.names)
            for line in warnings:
                print(f"warning: {line}", file=sys.stderr)
            records = [r for r in selected if r.age is not None]
            if not records:
                raise ValueError(f"{data}: no labelled faces selected")
            dist, ages, true, problems = collect(predictor, [r.path for r in records], [r.age for r in records])
            for line in problems:
                print(f"error: {line}", file=sys.stderr)
            parts.append((dist, ages, true, [dataset] * len(true)))
            whats.append(f"{dataset} {data} " + (f"names {args.names}" if args.names else f"{args.split_name} split" + (f" of {split}" if split else ""))
                         + f" ({len(true)} faces)")
        dist, ages, true = (np.concatenate([p[i] for p in parts]) for i in range(3))
        groups = [g for p in parts for g in p[3]] if n > 1 else None
        config = predictor.config
        what = "; ".join(whats)
        cal = fit_calibration(dist, ages, true, int(config.get("min_age", 0)), int(config.get("max_age", 110)), args.level, args.over,
                              args.max_fpr, base_level=args.base_level, challenges=args.challenge,
                              data=f"{args.describe or what}, engine {engine}", scale=None if args.scale == "none" else args.scale,
                              groups=groups)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in _table_lines(cal):
        print(line)
    if not args.dry_run:
        print(f"wrote the calibration into {write_calibration(model_dir, cal)}")
    return 0

