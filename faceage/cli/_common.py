"""Pieces shared by the ``faceage`` commands: run options, exit-status text, model loading with one error line, and
the streaming loop that writes one unit of rows per input file."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS

EXIT_CODES = """exit status: 0 the run completed, also when some files had no face or could not be read (each gets an
'error: FILE: problem' line on stderr); 1 with --strict when any file failed; 2 a failed run (bad arguments, model
or output file, no input images)."""


DETECTOR_HELP = ("blazeface: MediaPipe's BlazeFace in ONNX Runtime, one pass over the whole image (default); hog: "
                 "dlib's HOG, coarse to fine; cnn: dlib's MMOD CNN (slow on CPU); benchmarks/RESULTS.md compares them")


def add_detector_option(p: argparse.ArgumentParser) -> None:
    """``--detector`` (:data:`DETECTORS`), the same in every command that finds faces."""
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR, help=DETECTOR_HELP)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Detector, batch, image workers, engine threads and device: the options of every command that runs the model
    on files."""
    add_detector_option(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None,
                   help="image decoding (and detection) workers: processes when faces are detected in 16+ files on "
                        "Linux, threads otherwise (default: one per core with detection, one per two cores with "
                        "--no-detect)")
    p.add_argument("--threads", type=int, default=None, help="engine intra-op threads")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: torch on the GPU, or onnxruntime's CUDA provider (onnxruntime-gpu); one error line when there is none")


def add_run_options(p: argparse.ArgumentParser, what: str = "files", resume: bool = True) -> None:
    """Output, resume, exit-status and progress options shared by ``predict`` and ``compare``."""
    p.add_argument("--output", default=None, help="file to write (default or '-': stdout)")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], default=None,
                   help="output format (default: from the --output extension .csv/.jsonl/.parquet, else csv). CSV text "
                        "cells starting with = + - @ get a leading ' (no spreadsheet formulas); bytes of a file name "
                        "that are not UTF-8 are written as \\xNN")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help=f"keep the rows already in --output and skip the {what} they cover")
    p.add_argument("--strict", action="store_true", help=f"exit 1 when any of the {what} failed")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary line (errors are still printed)")



def load_or_report(factory, model, **kwargs):
    """``factory(model, **kwargs)`` (a Predictor or comparer), or ``None`` after one clear ``error:`` line on stderr."""
    try:
        return factory(model, **kwargs)
    except ModuleNotFoundError as e:
        from faceage._extras import missing_extra_message

        print(missing_extra_message(e, f"with the model {model or '(bundled)'}") or f"error: {e}", file=sys.stderr)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - a broken model file is a user error, not a crash
        print(f"error: cannot load model {model or '(bundled)'}: {type(e).__name__}: {e}", file=sys.stderr)
    return None



def stream_files(args, predictor, files: list[str], out, rows_of, what: str, after=None, run=None,
                 special=None) -> tuple[int, int, int, int] | None:
    """Runs ``predictor`` over ``files`` (less those already in ``out`` with ``--resume``), writing ``rows_of(result)``
    as one unit per file, with the progress bar and one ``error:`` line per bad file.

    Args:
        run: ``todo -> iterator of FileResult`` instead of ``predictor.predict_files`` (e.g. on a Ray cluster).
        special: ``(is_special, unit)``: files for which ``is_special(path)`` (videos) are handled after the others by
            ``unit(path) -> (error or None, rows, n_faces)``, their rows written as one unit.

    Returns:
        ``(ok, failed, faces, skipped)``, or ``None`` after one error line when the output (or ``run``) fails.
    """
    from faceage.inference.output import escape_text
    from faceage.inference.progress import progress_bar, progress_wanted, say

    todo = [f for f in files if out.key_of(f) not in out.done] if getattr(args, "resume", False) else files
    is_special, unit = special if special else ((lambda path: False), None)
    later = [f for f in todo if is_special(f)]
    images = [f for f in todo if not is_special(f)]
    n_ok = n_failed = n_faces = 0
    bar = progress_bar(len(todo), "face" if args.no_detect else "image", progress_wanted(args.progress, args.quiet), what)
    try:
        if run is None:
            results = predictor.predict_files(images)
        else:
            try:
                results = run(images)
            except Exception as e:  # noqa: BLE001 - no Ray, or no cluster at the address: one line, not a traceback
                print(f"error: cannot run on Ray ({getattr(args, 'ray', None)}): {type(e).__name__}: {e}", file=sys.stderr)
                return None
        for result in results:
            bar.update(1)
            if result.error:
                n_failed += 1
                say(f"error: {escape_text(result.path)}: {result.error}")  # one visible line, whatever the name
                continue
            n_ok += 1
            n_faces += len(result.faces)
            out.write(rows_of(result))  # the file's rows as one unit: all written, or none
            if after is not None:
                after(result)
        for path in later:
            error, rows, faces = unit(path)
            bar.update(1)
            if error:
                n_failed += 1
                say(f"error: {escape_text(path)}: {error}")
                continue  # a broken video writes no row
            n_ok += 1
            n_faces += faces
            out.write(rows)
        out.close()  # the last rows, fsync (Parquet: footer + rename): its errors are output errors too
    except OSError as e:
        print(f"error: {args.output or 'stdout'}: cannot write the output ({e.strerror or e})", file=sys.stderr)
        return None
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            out.close()  # no-op after a clean close
    return n_ok, n_failed, n_faces, len(files) - len(todo)


def export_graph(model, out: Path, fmt: str = "onnx", calibration: list[str] | None = None) -> int:
    """Writes ``model``'s graph to ``out`` (int8 ONNX when ``calibration`` paths are given) with
    :func:`faceage.models.export.export_model`, then ``wrote PATH``; exit status 0, or 2 after one error line."""
    from faceage.inference.predictor import expand_inputs
    from faceage.inference.preprocess import calibration_batch
    from faceage.models.export import export_model

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: {out.parent}: {e.strerror or e}", file=sys.stderr)
        return 2
    batch = None
    if calibration:
        try:
            batch = calibration_batch(expand_inputs(calibration), model.input_config)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    export_model(model, out, fmt, batch)
    print(f"wrote {out.resolve()}")
    return 0
