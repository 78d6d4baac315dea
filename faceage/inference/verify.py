"""``faceage verify --over N PATHS``: an over-N decision per face — ``pass`` (confidently N or over) or ``refer``
(check ID) — under a stated policy whose error rates were measured on calibration data (``faceage calibrate``).

Output CSV columns: ``file,face,age,decision,p_over,rule,age_low,age_high``; the policy and its measured error
rates are printed on stderr first. Per-file problems are one ``error: FILE: problem`` line each and the rest goes
on. Exit status: 0 all images ok, 1 some failed (or none found), 2 bad arguments / model / policy / output.
"""

from __future__ import annotations

import argparse
import csv
import sys

VERIFY_COLUMNS = ["file", "face", "age", "decision", "p_over", "rule", "age_low", "age_high"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage verify", description="Over-N age checks: pass, or refer to an ID check.")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--over", type=int, default=18, help="the age checked (default 18)")
    p.add_argument("--challenge", type=float, default=None,
                   help="challenge-age rule instead of the fitted policy: pass when the estimated age is >= this (e.g. 25)")
    p.add_argument("--model", default=None, help="model dir (default: the bundled model)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto", help="auto: onnx when the model has model.onnx")
    p.add_argument("--output", default=None, help="CSV file to write (default: stdout)")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pathlib import Path

    from faceage.inference.calibration import policy_text
    from faceage.inference.predictor import Predictor, format_age

    engine = args.engine
    if engine == "auto":
        from faceage.models.pretrained import bundled_model_dir

        model_dir = Path(args.model) if args.model else Path(bundled_model_dir())
        engine = "onnx" if (model_dir / "model.onnx").exists() else "torch"
    try:
        predictor = Predictor(args.model, engine=engine, detect=not args.no_detect, detector=args.detector,
                              batch_size=args.batch_size, workers=args.workers)
    except Exception as e:  # noqa: BLE001 - a missing or broken model is one clear line, not a traceback
        print(f"error: cannot load model {args.model or '(bundled)'}: {e}", file=sys.stderr)
        return 2
    policy = predictor.calibration.policy(args.over) if predictor.calibration is not None else None
    if policy is None and args.challenge is None:
        print(f"error: {args.model or 'the bundled model'}: no over-{args.over} policy fitted; run `faceage calibrate MODEL --over {args.over}` "
              "or use --challenge AGE", file=sys.stderr)
        return 2
    print(policy_text(policy, args.over, args.challenge), file=sys.stderr)
    try:
        out_file = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    writer = csv.writer(out_file)
    writer.writerow(VERIFY_COLUMNS)
    n_ok = n_failed = n_pass = n_faces = 0
    try:
        for result in predictor.predict_files(args.paths):
            if result.error:
                n_failed += 1
                print(f"error: {result.path}: {result.error}", file=sys.stderr)
                continue
            n_ok += 1
            for face, d in zip(result.faces, predictor.decisions(result.faces, args.over, args.challenge)):
                n_faces += 1
                n_pass += d.decision == "pass"
                writer.writerow([result.path, d.face, format_age(d.age), d.decision, "" if d.p_over is None else f"{d.p_over:.4f}", d.rule,
                                 "" if face.age_low is None else f"{face.age_low:g}", "" if face.age_high is None else f"{face.age_high:g}"])
    finally:
        if args.output:
            out_file.close()
        else:
            out_file.flush()
    if n_ok + n_failed == 0:
        print(f"error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
    print(f"summary: {n_ok} ok, {n_failed} failed, {n_faces} faces, {n_pass} pass, {n_faces - n_pass} refer", file=sys.stderr)
    return 0 if n_failed == 0 and n_ok > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
