"""``faceage compare``: which of two faces is older, for two images or a CSV of pairs (pair models or the
age-difference comparator of an age model)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from faceage import _signals
from faceage.cli._common import add_engine_options, add_run_options, load_or_report, set_interrupt_note
from faceage.data.images import ImageLoadError
from faceage.inference.compare import FaceComparer, compare_pair_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faceage compare", description="Which of two faces is older (P(left older)).",
        epilog="exit status: 0 the run completed, also when some rows failed (each gets an 'error: row N: ...' line on "
               "stderr); 1 with --strict when any row failed, or two images of which one cannot be read; 2 a failed "
               "run (bad arguments, model, pair file or output, no pairs).")
    p.add_argument("images", nargs="*", help="two images: LEFT RIGHT")
    p.add_argument("--pairs", default=None,
                   help="CSV of pairs 'left,right[,label]' (relative paths: relative to the CSV)")
    add_run_options(p, what="rows")
    p.add_argument("--root", default=None,
                   help="folder the pair CSV's relative paths are relative to (default: the CSV's folder)")
    p.add_argument("--model", default=None,
                   help="pair model or age model dir / .ckpt (default: the bundled age model, age-difference "
                        "comparator)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="engine for age models; auto (default): ONNX Runtime when the model directory has model.onnx, else torch")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--age-scale", type=float, default=2.0,
                   help="years per logit unit for age models without a distribution")
    add_engine_options(p)
    return p


def _compare_two(comparer: FaceComparer, left: str, right: str) -> int:
    try:
        p = comparer.compare_files(left, right)
    except ImageLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if p > 0.5:
        print(f"{left} is older than {right} (probability {p:.3f})")
    elif p < 0.5:
        print(f"{right} is older than {left} (probability {1 - p:.3f})")
    else:
        print(f"cannot tell which of {left} and {right} is older (probability 0.500)")
    print(f"p_left_older={p:.4f} ({comparer.kind})")
    return 0


def _compare_file(comparer: FaceComparer, args: argparse.Namespace) -> int:
    from faceage.data.pair_csv import read_pair_csv
    from faceage.inference.output import Column, OutputError, RowWriter, escape_text
    from faceage.inference.progress import progress_bar, progress_wanted, say

    try:
        rows = read_pair_csv(args.pairs, resolve=False, strict=False)
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: {args.pairs}: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no pairs in {args.pairs}", file=sys.stderr)
        return 2
    columns = [Column("left"), Column("right"), Column("p_left_older", "float", "{:.4f}".format)]
    try:
        out = RowWriter(args.output, columns, fmt=args.format, resume=args.resume, key=("left", "right"))
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_skipped = 0
    if args.resume:  # a pair already written is skipped as often as it is there (a pair file may repeat a pair)
        left_over, todo = out.done_counts.copy(), []
        for r in rows:
            key = out.key_of(r.left, r.right)
            if r.error is None and left_over[key] > 0:
                left_over[key] -= 1
                n_skipped += 1
            else:
                todo.append(r)
        rows = todo
    n_ok = n_failed = 0
    total = n_skipped + len(rows)
    where = "stdout" if out.stdout else args.output
    set_interrupt_note(lambda: f"{n_skipped + n_ok:,} of {total:,} pairs written to {where}"
                               f"{'' if out.stdout else '; rerun with --resume'}")
    bar = progress_bar(len(rows), "pair", progress_wanted(args.progress, args.quiet), "compare")
    try:
        for result in compare_pair_file(comparer, args.pairs, args.root, rows=rows):
            bar.update(1)
            if result.error is not None:
                n_failed += 1
                say(f"error: row {result.row}: {escape_text(result.error)}")
                continue
            with _signals.held():  # a stop waits for the row and its count
                out.write([{"left": result.left, "right": result.right, "p_left_older": result.p_left_older}])
                n_ok += 1
        out.close()  # the last rows, fsync (Parquet: footer + rename): its errors are output errors too
    except OSError as e:
        bar.close()
        print(f"error: {args.output or 'stdout'}: cannot write the output ({e.strerror or e})", file=sys.stderr)
        return 2
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            out.close()  # no-op after a clean close
    if not args.quiet:
        where = f"; {out.format.upper()}: {args.output}" if not out.stdout else ""
        skipped = f", {n_skipped} skipped (already in {args.output})" if args.resume else ""
        print(f"summary: {n_ok} pairs ok, {n_failed} failed{skipped} ({comparer.kind}){where}", file=sys.stderr)
    return 1 if args.strict and n_failed else 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 the run completed (some rows may have failed), 1 a failed row with ``--strict`` (or one of two
    images unreadable), 2 bad arguments, model, pair file or output, or no pairs."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.pairs is None and len(args.images) != 2:
        parser.error("give two images (LEFT RIGHT) or --pairs FILE.csv")
    if args.pairs is not None and args.images:
        parser.error("give either two images or --pairs, not both")
    for option in ("batch_size", "workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.resume and (args.pairs is None or args.output in (None, "-")):
        parser.error("--resume needs --pairs and --output FILE")
    if args.pairs is not None and not Path(args.pairs).is_file():
        print(f"error: {args.pairs}: pair file not found", file=sys.stderr)
        return 2
    comparer = load_or_report(
        FaceComparer, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
        batch_size=args.batch_size, workers=args.workers, threads=args.threads, age_scale=args.age_scale,
        device=args.device,
    )
    if comparer is None:
        return 2
    if args.pairs is None:
        return _compare_two(comparer, *args.images)
    return _compare_file(comparer, args)
