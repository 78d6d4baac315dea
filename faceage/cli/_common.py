"""Pieces shared by the ``faceage`` commands: how every command ends (:func:`run_guarded`: Ctrl-C / SIGTERM, errors,
resources closed in order), run options, exit-status text, model loading with one error line, and the streaming loop
that writes one unit of rows per input file."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from faceage import _signals
from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS

TRACEBACK_ENV = "FACEAGE_TRACEBACK"  # =1: an unexpected error shows its traceback (for bug reports)
_resources: list = []  # objects with close() to shut down when the command ends (worker pools first)


def close_at_exit(resource):
    """Registers ``resource.close()`` to run when the command ends, whatever the ending; returns ``resource``."""
    if resource is not None and hasattr(resource, "close"):
        _resources.append(resource)
    return resource


def set_interrupt_note(note: Callable[[], str] | str | None) -> None:
    """What the ``interrupted:`` line says was done and how to go on (text, or a function called at the stop)."""
    _signals.set_note(note)


def _close_resources() -> None:
    while _resources:
        resource = _resources.pop()
        with contextlib.suppress(Exception):  # closing must not hide how the command ended
            resource.close()


def run_guarded(command: str, run: Callable[[], int]) -> int:
    """Runs a command's ``run() -> exit status`` so that it ends the same way everywhere.

    * SIGINT / SIGTERM (:mod:`faceage._signals`) stop it within about 2 s: the registered resources are closed (worker
      processes and threads gone), outputs are whole, and one line ``interrupted: WHAT WAS DONE; HOW TO GO ON`` is
      printed; exit status 130 (SIGINT) or 143 (SIGTERM).
    * An unexpected error prints one ``error:`` line (its traceback only with ``FACEAGE_TRACEBACK=1``); exit status 2.
    * A closed stdout (``faceage predict ... | head``) ends quietly.
    """
    previous = _signals.install()
    status: int | None = 2
    try:
        status = run()
    except KeyboardInterrupt:
        status = None
    except SystemExit:
        if _signals.received() is None:
            _close_resources()
            raise
        status = None
    except BrokenPipeError:
        _quiet_stdout()
        status = 1
    except Exception as e:  # noqa: BLE001 - no traceback reaches a user: one line (an error while stopping is the stop)
        if _signals.received() is None:
            if os.environ.get(TRACEBACK_ENV) == "1":
                import traceback

                traceback.print_exc()
            print(f"error: faceage {command}: {type(e).__name__}: {' '.join(str(e).split())[:500]} "
                  f"(set {TRACEBACK_ENV}=1 to see where)", file=sys.stderr)
            status = 2
    finally:
        _close_resources()
        _signals.uninstall(previous)
        try:
            sys.stdout.flush()  # here, not at exit: a reader that went away must not cost an "Exception ignored"
        except (OSError, ValueError):
            _quiet_stdout()
    signum = _signals.received()
    if signum is None and status is not None:
        return status
    signum = signum or 2  # a KeyboardInterrupt raised without our handler: as SIGINT
    what = _signals.note() or f"faceage {command} stopped before writing its results; run it again"
    try:
        print(f"interrupted: {what}", file=sys.stderr, flush=True)
    except OSError:
        pass
    return 128 + signum


def _quiet_stdout() -> None:
    """After a broken pipe on stdout: further writes (and the flush at exit) go nowhere instead of failing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())

EXIT_CODES = """exit status: 0 the run completed, also when some files had no face or could not be read (each gets an
'error: FILE: problem' line on stderr); 1 with --strict when any file failed; 2 a failed run (bad arguments, model
or output file, no input images, an output another run is writing); 130 / 143 stopped by Ctrl-C / SIGTERM (the rows
written are whole: rerun with --resume)."""


DETECTOR_HELP = ("yunet: OpenCV Zoo's YuNet, five landmarks, finds turned, rolled and partly hidden faces (default); "
                 "blazeface: MediaPipe's BlazeFace with dlib's 68 landmarks; hog: dlib's HOG, coarse to fine; cnn: "
                 "dlib's MMOD CNN (slow on CPU); benchmarks/RESULTS.md compares them")


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
    """``factory(model, **kwargs)`` (a Predictor or comparer), or ``None`` after one clear ``error:`` line on stderr;
    its ``close()`` (worker processes) runs when the command ends."""
    try:
        return close_at_exit(factory(model, **kwargs))
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
    n_skipped = len(files) - len(todo)
    where = "stdout" if out.stdout else str(args.output)
    set_interrupt_note(lambda: f"{n_skipped + n_ok:,} of {len(files):,} files written to {where}"
                               f"{'' if out.stdout else '; rerun with --resume'}")
    bar = progress_bar(len(todo), "face" if args.no_detect else "image", progress_wanted(args.progress, args.quiet), what)
    results = None
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
            with _signals.held():  # a stop waits for the file's rows and its count: the note is then exact
                out.write(rows_of(result))  # the file's rows as one unit: all written, or none
                n_ok += 1
                n_faces += len(result.faces)
            if after is not None:
                after(result)
        for path in later:
            error, rows, faces = unit(path)
            bar.update(1)
            if error:
                n_failed += 1
                say(f"error: {escape_text(path)}: {error}")
                continue  # a broken video writes no row
            with _signals.held():
                out.write(rows)
                n_ok += 1
                n_faces += faces
        out.close()  # the last rows, fsync (Parquet: footer + rename): its errors are output errors too
    except OSError as e:
        print(f"error: {args.output or 'stdout'}: cannot write the output ({e.strerror or e})", file=sys.stderr)
        return None
    finally:
        if hasattr(results, "close"):
            results.close()  # stops the image workers' queue before the output is closed
        bar.close()
        with contextlib.suppress(OSError):
            out.close()  # no-op after a clean close; after a stop: the rows so far, whole (Parquet: a complete file)
    return n_ok, n_failed, n_faces, n_skipped


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
