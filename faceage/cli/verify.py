"""``faceage verify``: over-N age checks (pass / refer) under a policy with a measured error rate."""

from __future__ import annotations

import argparse
import sys

from faceage.cli._common import EXIT_CODES, add_engine_options, add_run_options, load_or_report, stream_files


def _verify_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faceage verify", epilog=EXIT_CODES,
        description="Over-N age checks: 'pass' (confidently N or over) or 'refer' (check ID), under a policy whose error "
                    "rates were measured on calibration data (faceage calibrate); the policy is printed first. Columns: "
                    "file,face,age,decision,p_over,rule,age_low,age_high.")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--over", type=int, default=18, help="the age checked (default 18)")
    p.add_argument("--challenge", type=float, default=None,
                   help="challenge-age rule instead of the fitted policy: pass when the estimated age is >= this (e.g. 25)")
    p.add_argument("--model", default=None, help="model dir (default: the bundled model)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: onnx when the model has model.onnx")
    add_run_options(p)
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    add_engine_options(p)
    return p


def main(argv: list[str]) -> int:
    """``faceage verify``; exit status as ``predict`` (2 also when no policy is fitted for ``--over``)."""
    parser = _verify_parser()
    args = parser.parse_args(argv)
    if args.resume and args.output in (None, "-"):
        parser.error("--resume needs --output FILE")
    from faceage.inference.calibration import policy_text
    from faceage.inference.output import VERIFY_COLUMNS, OutputError, RowWriter, verify_rows
    from faceage.inference.predictor import Predictor, expand_inputs

    files = expand_inputs(args.paths)
    if not files:
        print(f"error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    predictor = load_or_report(Predictor, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
                               batch_size=args.batch_size, workers=args.workers, threads=args.threads, device=args.device)
    if predictor is None:
        return 2
    policy = predictor.calibration.policy(args.over) if predictor.calibration is not None else None
    if policy is None and args.challenge is None:
        print(f"error: {args.model or 'the bundled model'}: no over-{args.over} policy fitted; run `faceage calibrate MODEL --over {args.over}` "
              "or use --challenge AGE", file=sys.stderr)
        return 2
    print(policy_text(policy, args.over, args.challenge), file=sys.stderr)
    try:
        out = RowWriter(args.output, VERIFY_COLUMNS, fmt=args.format, resume=args.resume, key="file")
    except (OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    passed = [0]

    def rows_of(result) -> list[dict]:
        decisions = predictor.decisions(result.faces, args.over, args.challenge)
        passed[0] += sum(d.decision == "pass" for d in decisions)
        return verify_rows(result, decisions)

    counts = stream_files(args, predictor, files, out, rows_of, "verify")
    if counts is None:
        return 2
    n_ok, n_failed, n_faces, _ = counts
    if not args.quiet:
        print(f"summary: {n_ok} ok, {n_failed} failed, {n_faces} faces, {passed[0]} pass, {n_faces - passed[0]} refer", file=sys.stderr)
    return 1 if args.strict and n_failed else 0
