"""``faceage calibrate``: fit calibrated age intervals and over-N policies on held-out faces, stored in the model's
``config.json`` (:mod:`faceage.evaluation.calibration`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
        for c in policy["challenge"]:
            lines.append("  " + policy_text(policy, int(over), challenge=float(c)))
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage calibrate", description=(
        "Fit calibrated age intervals (Mondrian split-conformal CQR) and over-N decision thresholds on labelled faces "
        "the model did not train on, and store them in the model's config.json."))
    p.add_argument("model", help="model directory (its config.json is updated)")
    p.add_argument("--data", required=True, help="dataset folder of aligned face chips")
    p.add_argument("--dataset", default="utkface", help="dataset reader (default: utkface)")
    p.add_argument("--split", default=None,
                   help="a split.json saved by training (default: the datamodule's seeded split)")
    p.add_argument("--split-name", default="val", choices=["val", "test", "train", "all"],
                   help="which split to fit on (default: val)")
    p.add_argument("--names", default=None,
                   help="a file listing the image names (one a line, relative to --data) to fit on instead of a split")
    p.add_argument("--level", type=float, nargs="+", default=[DEFAULT_LEVEL],
                   help="interval coverage(s) to fit (default 0.9)")
    p.add_argument("--base-level", default="auto",
                   help="level of the raw interval that is conformalized: a number, or auto (default: the narrowest by cross-fitting)")
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
    from faceage.inference.predictor import Predictor

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"error: {model_dir}: not a model directory (no config.json)", file=sys.stderr)
        return 2
    engine = args.engine if args.engine != "auto" else ("onnx" if (model_dir / "model.onnx").exists() else "torch")
    try:
        selected, warnings = calibration_records(args.dataset, args.data, args.split_name, args.split, args.names)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        records = [r for r in selected if r.age is not None]
        if not records:
            raise ValueError(f"{args.data}: no labelled faces selected")
        predictor = Predictor(model_dir, engine=engine, detect=False, batch_size=args.batch_size, workers=args.workers, calibrated=False)
        dist, ages, true, problems = collect(predictor, [r.path for r in records], [r.age for r in records])
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        config = predictor.config
        what = f"{args.dataset} {args.data} " + (f"names {args.names}" if args.names else f"{args.split_name} split" + (f" of {args.split}" if args.split else ""))
        cal = fit_calibration(dist, ages, true, int(config.get("min_age", 0)), int(config.get("max_age", 110)), args.level, args.over,
                              args.max_fpr, base_level=args.base_level, challenges=args.challenge,
                              data=f"{args.describe or what} ({len(true)} faces, engine {engine})")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in _table_lines(cal):
        print(line)
    if not args.dry_run:
        print(f"wrote the calibration into {write_calibration(model_dir, cal)}")
    return 0

