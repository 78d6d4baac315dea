"""``faceage report``: the bias (and optional sensitivity) report of a run's test predictions, or of a model run over
a dataset, as self-contained HTML + markdown (:mod:`faceage.evaluation.report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceage.evaluation.bias import MIN_FLAG_N
from faceage.evaluation.predictions import SPLITS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faceage report",
        description="Bias report (MAE / CS@5 by age band x gender x race with bootstrap CIs, gender accuracy by group) "
        "as self-contained HTML + markdown, from a run's test predictions or a model run over a dataset.",
    )
    p.add_argument("run_dir", nargs="?", default=None,
                   help="run folder holding test/test_predictions.csv (or the CSV itself)")
    p.add_argument("--model", default=None, help="model dir / .ckpt to run over --data (and for --sensitivity)")
    p.add_argument("--data", default=None, help="dataset folder of aligned face chips (of photos with --detect)")
    p.add_argument("--detect", action="store_true",
                   help="--data holds photos with the labelled face in the middle (FairFace): detect faces and score "
                        "the one holding the photo's centre")
    p.add_argument("--dataset", default="utkface", help="dataset reader (default: utkface)")
    p.add_argument("--split", choices=SPLITS, default="test", help="which split of --data (split_records, seed 0)")
    p.add_argument("--split-file", default=None, help="a saved split.json to use instead of recomputing the split")
    p.add_argument("--max-samples", type=int, default=0, help="seeded random subset of the split (0: all)")
    p.add_argument("--output", default=None, help="output folder (default: RUN_DIR/report or ./faceage_report)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per CI")
    p.add_argument("--min-flag-n", type=int, default=MIN_FLAG_N, help="smallest group that can be flagged")
    p.add_argument("--sensitivity", action="store_true",
                   help="also measure the metrics under image changes (needs --model)")
    p.add_argument("--sensitivity-samples", type=int, default=300, help="images used for --sensitivity")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: one per two cores)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="torch",
                   help="engine running --model over --data (onnx: needs model.onnx)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``faceage report``. Exit status 0 on success, 2 on bad arguments or unusable inputs."""
    parser = _parser()
    args = parser.parse_args(argv)
    from faceage.evaluation.render import age_group_line, assurance_lines, ci_text, flag_lines
    from faceage.evaluation.report import (
        build_report,
        find_predictions_csv,
        measure_sensitivity,
        predict_dataset,
        read_predictions_csv,
        write_report,
    )
    from faceage.inference.progress import progress_wanted

    if args.run_dir is None and not (args.model and args.data):
        parser.error("give RUN_DIR, or --model and --data")
    if args.data and not args.model and args.run_dir is None:
        parser.error("--data needs --model")
    if args.sensitivity and not args.model:
        parser.error("--sensitivity needs --model")
    if args.n_boot < 1 or args.sensitivity_samples < 1:
        parser.error("--n-boot and --sensitivity-samples must be >= 1")
    predictor = None
    try:
        if args.run_dir is not None:
            preds = read_predictions_csv(find_predictions_csv(args.run_dir))
        else:
            if args.engine != "torch":
                from faceage.inference.predictor import Predictor

                predictor = Predictor(args.model, engine=args.engine, detect=args.detect, batch_size=args.batch_size,
                                      workers=args.workers)
            preds, predictor = predict_dataset(args.model, args.data, args.dataset, args.split, args.split_file,
                                               args.max_samples, args.batch_size, args.workers, predictor=predictor,
                                               progress=progress_wanted(args.progress, args.quiet), detect=args.detect)
        if len(preds) == 0:
            raise ValueError("no usable predictions (every image failed)")
        sensitivity = measure_sensitivity(preds, predictor, args.model, args.sensitivity_samples, args.batch_size,
                                          progress_wanted(args.progress, args.quiet)) if args.sensitivity else None
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = build_report(preds, n_boot=args.n_boot, min_flag_n=args.min_flag_n, sensitivity=sensitivity)
    default_out = Path(args.run_dir) / "report" if args.run_dir and Path(args.run_dir).is_dir() else Path("faceage_report")
    try:
        paths = write_report(report, preds, args.output or default_out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    o = report["overall"]
    if o is not None:
        print(f"n={o['n']} MAE {o['mae']:.2f} (95% CI {ci_text(o['mae_ci'])}) CS@5 {o['cs@5']:.3f}; "
              f"{len(report['flagged'])} flagged group(s)")
    for line in age_group_line(report.get("age_groups")):
        print(line)
    for line in assurance_lines(report.get("assurance")):
        print(f"  {line}")
    flags = flag_lines(report)
    for line in flags[:10]:
        print(f"  flagged: {line}")
    if len(flags) > 10:
        print(f"  ... and {len(flags) - 10} more (see the report)")
    print(f"report: {paths['html']} ; {paths['markdown']}")
    return 0

