"""The ``faceage`` command: ``fit|validate|test`` (LightningCLI), ``predict``, ``export``, ``prepare``, ``models``.

Imports are deferred to the chosen command so that ``faceage predict --engine onnx`` starts without PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

USAGE = """usage: faceage COMMAND [options]

commands:
  fit        train a model (LightningCLI: --config configs/X.yaml, overrides like --model.head.name coral)
  validate   validate a model (LightningCLI; --weights MODEL to load a saved model)
  test       test a model: metrics JSON + plots (LightningCLI; --ckpt_path or --weights)
  predict    ages of the faces in images or folders -> CSV / annotated images
  verify     over-N age checks (pass / refer) under a policy with a measured error rate
  calibrate  fit calibrated age intervals and over-N thresholds on held-out faces (stored in config.json)
  export     write ONNX or TorchScript from a model (--quantize int8 for a faster CPU graph)
  ensemble   average several trained age models into one model
  prepare    detect + align faces once and cache the chips for training
  models     list backbones and heads
  describe   what a dataset (or two, or the splits of one) holds: ages by band, gender, race, sizes -> table + PNG
  compare    which of two faces is older (pair models or the age-difference comparator)
  kfold      fit + test every fold (k-fold / subject-exclusive) and report mean +/- std
  tune       hyper-parameter search with Ray Tune (ASHA)
  report     bias and sensitivity report (HTML + markdown)
  explain    Grad-CAM heatmap of the age output
  serve      Gradio web app
  push       upload a saved model to the Hugging Face Hub
run 'faceage COMMAND --help' for a command's options; 'faceage --version' prints the version"""


EXIT_CODES = """exit status: 0 the run completed, also when some files had no face or could not be read (each gets an
'error: FILE: problem' line on stderr); 1 with --strict when any file failed; 2 a failed run (bad arguments, model
or output file, no input images)."""


def add_run_options(p: argparse.ArgumentParser, what: str = "files", resume: bool = True) -> None:
    """Output, resume, exit-status and progress options shared by ``predict`` and ``compare``."""
    p.add_argument("--output", default=None, help="file to write (default or '-': stdout)")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], default=None,
                   help="output format (default: from the --output extension .csv/.jsonl/.parquet, else csv). CSV text "
                        "cells starting with = + - @ get a leading ' (no spreadsheet formulas); bytes of a file name "
                        "that are not UTF-8 are written as \\xNN")
    if resume:
        p.add_argument("--resume", action="store_true", help=f"keep the rows already in --output and skip the {what} they cover")
    p.add_argument("--strict", action="store_true", help=f"exit 1 when any of the {what} failed")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line (errors are still printed)")


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage predict", description="Estimate the age of every face in images or folders.",
                                epilog=EXIT_CODES)
    p.add_argument("paths", nargs="+", help="image or video files (.mp4 .avi .mov .mkv .webm), or folders")
    p.add_argument("--model", default=None, help="model dir / .ckpt (default: the bundled model)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="videos: every N-th frame (rows get frame, time_s, track; one row per track with frame empty "
                        "holds its median age)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: 'local' (default) starts a local Ray, 'auto' / ray://HOST:10001 / HOST:6379 "
                        "joins a cluster (images only; every node must see the files)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto (default): ONNX Runtime when the model directory has model.onnx (no torch import), else torch")
    add_run_options(p)
    p.add_argument("--annotate", default=None, metavar="DIR", help="write copies with boxes and ages drawn into DIR")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--thorough", action="store_true",
                   help="HOG always upsampled by 2: faces from ~40 px in every photo, slower (default: upsampled only "
                        "where the first pass finds no face or a small one)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: one per core with detection, one per two cores with --no-detect)")
    p.add_argument("--threads", type=int, default=None, help="engine intra-op threads")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: torch on the GPU, or onnxruntime's CUDA provider (onnxruntime-gpu); one error line when there is none")
    p.add_argument("--fractional-ages", action="store_true",
                   help="report the expected age unrounded, also for a model that reports whole years (round_ages)")
    p.add_argument("--level", type=float, default=None,
                   help="coverage of the age interval (a calibrated model: a level it was calibrated at; default: its first)")
    p.add_argument("--distribution", action="store_true",
                   help="also write each face's age distribution ({start, p}) and P(age >= 18/21/25); on by default for jsonl/parquet")
    return p


CSV_COLUMNS = ["file", "face", "age", "age_low", "age_high", "gender", "gender_p", "race", "race_p", "left", "top", "right", "bottom"]


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


def predict_main(argv: list[str]) -> int:
    """Exit status: 0 the run completed (some files may have failed), 1 some failed with ``--strict``, 2 bad
    arguments / model / output / no input images."""
    parser = _predict_parser()
    args = parser.parse_args(argv)
    for option in ("batch_size", "workers", "threads", "every"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.resume and args.output in (None, "-"):
        parser.error("--resume needs --output FILE")
    from faceage.inference.output import (DISTRIBUTION_COLUMNS, PREDICT_COLUMNS, OutputError, RowWriter, escape_text,
                                          output_format, prediction_rows)
    from faceage.inference.predictor import Predictor, expand_inputs
    from faceage.inference.progress import say

    from faceage.data.video import is_video_file

    files = expand_inputs(args.paths, videos=True)
    videos = [f for f in files if is_video_file(f)]
    if videos and args.ray:
        parser.error("--ray takes images only; run videos without --ray")
    if not files:
        print(f"error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    predictor = load_or_report(Predictor, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
                               batch_size=args.batch_size, workers=args.workers, threads=args.threads,
                               round_ages=False if args.fractional_ages else None, device=args.device, level=args.level,
                               thorough=args.thorough)
    if predictor is None:
        return 2
    annotate_dir = Path(args.annotate) if args.annotate else None
    try:
        with_distribution = args.distribution or output_format(args.output, args.format) != "csv"
        columns = PREDICT_COLUMNS + (DISTRIBUTION_COLUMNS if with_distribution else ())
        if videos:
            from faceage.inference.video import video_columns

            columns = video_columns(with_distribution)
        out = RowWriter(args.output, columns, fmt=args.format, resume=args.resume, key="file")
        if annotate_dir:
            annotate_dir.mkdir(parents=True, exist_ok=True)
    except (OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    used_names: set[str] = set()

    def annotate_target(source: str) -> Path:
        # DIR/<stem>.jpg, made unique when inputs share a stem (a.jpg and a.png, or the same name in subfolders)
        stem = Path(source).stem or "image"
        name, n = f"{stem}.jpg", 1
        while name.lower() in used_names:
            name, n = f"{stem}_{n}.jpg", n + 1
        used_names.add(name.lower())
        return annotate_dir / name

    def after(result) -> None:
        if annotate_dir:
            from faceage.data.images import ImageLoadError, load_image
            from faceage.inference.annotate import annotate

            try:
                annotate(load_image(result.path), result.faces).save(annotate_target(result.path), "JPEG", quality=92)
            except (ImageLoadError, OSError) as e:
                say(f"warning: {escape_text(result.path)}: annotated image not written ({e})")

    rows_of = lambda result: prediction_rows(result, distribution=with_distribution)  # noqa: E731
    run = None
    if args.ray:
        from faceage.inference.distributed import ray_predict_files

        def run(todo):
            return ray_predict_files(todo, args.ray, {
                "model": args.model, "engine": predictor.engine_name, "detect": not args.no_detect, "detector": args.detector,
                "batch_size": args.batch_size, "round_ages": False if args.fractional_ages else None, "device": args.device,
                "level": args.level, **({"threads": args.threads} if args.threads else {})})

    def video_unit(path):
        from faceage.inference.video import predict_video, video_rows

        video = predict_video(predictor, path, args.every)
        if video.error:
            return video.error, [], 0
        if not args.quiet:
            from faceage.inference.predictor import format_age

            for t in video.tracks:
                say(f"track: {escape_text(path)} #{t.track}: age {format_age(t.age)} (median of {t.frames} frames, "
                    f"{t.first_frame}-{t.last_frame})")
        return None, video_rows(video, distribution=with_distribution), sum(len(fr.faces) for fr in video.frames)

    counts = stream_files(args, predictor, files, out, rows_of, "predict", after, run=run,
                          special=(is_video_file, video_unit))
    if counts is None:
        return 2
    n_ok, n_failed, n_faces, n_skipped = counts
    if not args.quiet:
        where = f"; {out.format.upper()}: {args.output}" if not out.stdout else ""
        where += f"; annotated images: {annotate_dir}" if annotate_dir else ""
        skipped = f", {n_skipped} skipped (already in {args.output})" if args.resume else ""
        print(f"summary: {n_ok} ok, {n_failed} failed, {n_faces} faces{skipped}{where}", file=sys.stderr)
    return 1 if args.strict and n_failed else 0


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
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto", help="auto: onnx when the model has model.onnx")
    add_run_options(p)
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads")
    p.add_argument("--threads", type=int, default=None, help="engine intra-op threads")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return p


def verify_main(argv: list[str]) -> int:
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


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage export", description="Export a model to ONNX or TorchScript.")
    p.add_argument("model", nargs="?", default=None, help="model dir / .ckpt (default: bundled)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--output", default=None, help="output file (default: model.onnx / model.torchscript.pt in the model's folder; "
                                                  "for a checkpoint X.ckpt in the folder X/ beside it, where predict --engine onnx looks)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="ONNX only: static int8 quantization (about 2x faster on CPUs with VNNI); needs --calibration")
    p.add_argument("--calibration", nargs="+", default=None, metavar="PATH",
                   help="aligned face chips (files or folders) to calibrate the int8 activation ranges; 256 are sampled")
    args = p.parse_args(argv)
    if args.quantize and args.format != "onnx":
        p.error("--quantize applies to --format onnx only")
    if args.quantize and not args.calibration:
        p.error("--quantize int8 needs --calibration with face images like the model's inputs")

    from faceage.inference.preprocess import calibration_batch
    from faceage.models.export import export_onnx, export_torchscript, quantize_onnx
    from faceage.models.files import export_dir
    from faceage.inference.predictor import expand_inputs
    from faceage.models.age_model import load_model

    model = load_or_report(load_model, args.model)
    if model is None:
        return 2
    if args.model is None:  # the bundled model's folder is read-only package data
        default_dir = Path(".")
    else:
        default_dir = export_dir(args.model)  # where predict --model <the same path> --engine onnx looks
    name = "model.onnx" if args.format == "onnx" else "model.torchscript.pt"
    out = Path(args.output) if args.output else default_dir / name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: {out.parent}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.quantize:
        try:
            calibration = calibration_batch(expand_inputs(args.calibration), model.input_config)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            quantize_onnx(export_onnx(model, Path(tmp) / "fp32.onnx"), out, calibration)
    else:
        (export_onnx if args.format == "onnx" else export_torchscript)(model, out)
    config_target = out.parent / "config.json"
    if not config_target.exists():
        import json
        import os

        partial = config_target.with_name(f".{config_target.name}.tmp-{os.getpid()}")
        partial.write_text(json.dumps(model.config, indent=2))
        os.replace(partial, config_target)  # atomic: a kill never leaves a half-written config beside the graph
    print(f"wrote {out.resolve()}")
    return 0


def prepare_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage prepare", description="Detect and align faces once; cache the aligned chips.")
    p.add_argument("root", help="folder of raw photos")
    p.add_argument("output", help="folder for aligned chips (file names kept, so labels in names still parse)")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--chip-size", type=int, default=200)
    p.add_argument("--padding", type=float, default=None, help="alignment padding (default: UTKFace-like)")
    p.add_argument("--largest", action="store_true", help="keep the largest face when several are found")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from faceage.data.prepare import prepare_images
    from faceage.data.detect import UTKFACE_PADDING
    from faceage.inference.predictor import expand_inputs
    from faceage.inference.progress import progress_bar, progress_wanted

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # created on the first image: the cached chips count as done already
            bar = progress_bar(total, "image", progress_wanted(args.progress, args.quiet), "prepare")
        bar.update(done - bar.n)

    try:
        report = prepare_images(
            expand_inputs([args.root]), args.output, detector=args.detector, chip_size=args.chip_size,
            padding=UTKFACE_PADDING if args.padding is None else args.padding, workers=args.workers, largest=args.largest,
            root=args.root, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    return 0


def models_main(argv: list[str]) -> int:
    from faceage.models import BACKBONES, HEADS

    print("backbones:", ", ".join(BACKBONES.names()), "(or any timm model name)")
    print("heads:", ", ".join(HEADS.names()))
    return 0


def describe_main(argv: list[str]) -> int:
    """``faceage describe DATA [DATA ...] [--split-file F] [--plot PNG] [--json F]``: exit 0, or 2 for unreadable data."""
    p = argparse.ArgumentParser(prog="faceage describe", description="Describe datasets side by side before training on them.")
    p.add_argument("roots", nargs="+", help="dataset folders (or CSV files for --dataset csv)")
    p.add_argument("--dataset", default="utkface", help="reader name (utkface, afad, cacd, appa_real, fgnet, aaf, csv)")
    p.add_argument("--split-file", default=None, help="a saved split.json: describe its splits side by side (one dataset)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the histograms and shares as a PNG")
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    p.add_argument("--no-sizes", action="store_true", help="skip reading image headers for sizes")
    args = p.parse_args(argv)
    from faceage.data.readers import read_dataset
    from faceage.evaluation.describe import describe_records, format_side_by_side, plot_descriptions
    from faceage.evaluation.metrics import save_json

    descriptions: dict = {}
    for root in args.roots:
        if not Path(root).exists():
            print(f"error: {root}: dataset not found", file=sys.stderr)
            return 2
        try:
            records, report = read_dataset(args.dataset, root, check_images=False)
        except (KeyError, ValueError, OSError) as e:
            print(f"error: {root}: {e}", file=sys.stderr)
            return 2
        print(report.summary())
        name = Path(root).name or str(root)
        if args.split_file:
            from faceage.data.splits import load_split

            try:
                split = load_split(args.split_file, records)
            except (ValueError, OSError) as e:
                print(f"error: {args.split_file}: {e}", file=sys.stderr)
                return 2
            for part, idx in split.items():
                descriptions[f"{name}:{part}"] = describe_records([records[i] for i in idx], sizes=not args.no_sizes)
        else:
            descriptions[name] = describe_records(records, report, sizes=not args.no_sizes)
    print(format_side_by_side(descriptions))
    if args.plot:
        print(f"plot written to {plot_descriptions(descriptions, args.plot)}")
    if args.json:
        save_json(descriptions, args.json)
    return 0


COMMANDS = {"describe": describe_main, "predict": predict_main, "verify": verify_main, "export": export_main, "prepare": prepare_main, "models": models_main}
# commands living beside the code they drive: "module:function", imported only when chosen
LAZY_COMMANDS = {
    "compare": "faceage.inference.compare:main",
    "tune": "faceage.training.tune:main",
    "kfold": "faceage.training.kfold:main",
    "report": "faceage.evaluation.report:main",
    "calibrate": "faceage.evaluation.calibration:main",
    "explain": "faceage.inference.explain:main",
    "serve": "faceage.app.server:main",
    "push": "faceage.models.hub:main",
    "ensemble": "faceage.models.ensemble:main",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from faceage._version import __version__

        print(f"faceage {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    try:
        return _run(command, rest)
    except ModuleNotFoundError as e:  # an optional package (extra) is not installed: say which to install
        from faceage._extras import missing_extra_message

        message = missing_extra_message(e, command)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def _run(command: str, rest: list[str]) -> int:
    if command in ("fit", "validate", "test"):
        from faceage.training.cli import run_cli

        run_cli([command, *rest])
        return 0
    if command in COMMANDS:
        return COMMANDS[command](rest)
    if command in LAZY_COMMANDS:
        import importlib

        module, func = LAZY_COMMANDS[command].split(":")
        return getattr(importlib.import_module(module), func)(rest)
    print(f"faceage: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
