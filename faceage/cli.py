"""The ``faceage`` command: ``fit|validate|test`` (LightningCLI), ``predict``, ``export``, ``prepare``, ``models``.

Imports are deferred to the chosen command so that ``faceage predict --engine onnx`` starts without PyTorch.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

USAGE = """usage: faceage COMMAND [options]

commands:
  fit        train a model (LightningCLI: --config configs/X.yaml, overrides like --model.head.name coral)
  validate   validate a model (LightningCLI; --weights MODEL to load a saved model)
  test       test a model: metrics JSON + plots (LightningCLI; --ckpt_path or --weights)
  predict    ages of the faces in images or folders -> CSV / annotated images
  export     write ONNX or TorchScript from a model (--quantize int8 for a faster CPU graph)
  ensemble   average several trained age models into one model
  prepare    detect + align faces once and cache the chips for training
  models     list backbones and heads
  compare    which of two faces is older (pair models or the age-difference comparator)
  kfold      fit + test every fold (k-fold / subject-exclusive) and report mean +/- std
  tune       hyper-parameter search with Ray Tune (ASHA)
  report     bias and sensitivity report (HTML + markdown)
  explain    Grad-CAM heatmap of the age output
  serve      Gradio web app
  push       upload a saved model to the Hugging Face Hub
run 'faceage COMMAND --help' for a command's options"""


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage predict", description="Estimate the age of every face in images or folders.")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, help="model dir / .ckpt (default: the bundled model)")
    p.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    p.add_argument("--output", default=None, help="CSV file to write (default: print to stdout)")
    p.add_argument("--annotate", default=None, metavar="DIR", help="write copies with boxes and ages drawn into DIR")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: one per core with detection, one per two cores with --no-detect)")
    p.add_argument("--threads", type=int, default=None, help="engine intra-op threads")
    p.add_argument("--fractional-ages", action="store_true",
                   help="report the expected age unrounded, also for a model that reports whole years (round_ages)")
    return p


CSV_COLUMNS = ["file", "face", "age", "age_low", "age_high", "gender", "gender_p", "race", "race_p", "left", "top", "right", "bottom"]


def load_or_report(factory, model, **kwargs):
    """``factory(model, **kwargs)`` (a Predictor or comparer), or ``None`` after one clear ``error:`` line on stderr."""
    try:
        return factory(model, **kwargs)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - a broken model file is a user error, not a crash
        print(f"error: cannot load model {model or '(bundled)'}: {type(e).__name__}: {e}", file=sys.stderr)
    return None


def predict_main(argv: list[str]) -> int:
    """Exit status: 0 all images ok, 1 some failed (or none found), 2 bad arguments / model / output."""
    parser = _predict_parser()
    args = parser.parse_args(argv)
    for option in ("batch_size", "workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    from faceage.inference.predictor import Predictor, format_age

    predictor = load_or_report(Predictor, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
                               batch_size=args.batch_size, workers=args.workers, threads=args.threads,
                               round_ages=False if args.fractional_ages else None)
    if predictor is None:
        return 2
    annotate_dir = Path(args.annotate) if args.annotate else None
    try:
        out_file = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
        if annotate_dir:
            annotate_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    writer = csv.writer(out_file)
    writer.writerow(CSV_COLUMNS)
    n_ok = n_failed = n_faces = 0
    used_names: set[str] = set()

    def num(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    def annotate_target(source: str) -> Path:
        # DIR/<stem>.jpg, made unique when inputs share a stem (a.jpg and a.png, or the same name in subfolders)
        stem = Path(source).stem or "image"
        name, n = f"{stem}.jpg", 1
        while name.lower() in used_names:
            name, n = f"{stem}_{n}.jpg", n + 1
        used_names.add(name.lower())
        return annotate_dir / name

    try:
        for result in predictor.predict_files(args.paths):
            if result.error:
                n_failed += 1
                print(f"error: {result.path}: {result.error}", file=sys.stderr)
                continue
            n_ok += 1
            for f in result.faces:
                n_faces += 1
                writer.writerow([result.path, f.face, format_age(f.age), num(f.age_low, "g"), num(f.age_high, "g"), f.gender or "", num(f.gender_p, ".4f"),
                                 f.race or "", num(f.race_p, ".4f"), *f.box])
            if annotate_dir:
                from faceage.data.images import ImageLoadError, load_image
                from faceage.inference.annotate import annotate

                target = annotate_target(result.path)
                try:
                    annotate(load_image(result.path), result.faces).save(target, "JPEG", quality=92)
                except (ImageLoadError, OSError) as e:
                    print(f"warning: {result.path}: annotated image not written ({e})", file=sys.stderr)
    finally:
        if args.output:
            out_file.close()
        else:
            out_file.flush()
    if n_ok + n_failed == 0:
        print(f"error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
    where = f"; CSV: {args.output}" if args.output else ""
    where += f"; annotated images: {annotate_dir}" if annotate_dir else ""
    print(f"summary: {n_ok} ok, {n_failed} failed, {n_faces} faces{where}", file=sys.stderr)
    return 0 if n_failed == 0 and n_ok > 0 else 1


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

    from faceage.inference.engines import export_dir
    from faceage.inference.export import calibration_batch, export_onnx, export_torchscript, quantize_onnx
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
    args = p.parse_args(argv)
    from faceage.data.prepare import prepare_images
    from faceage.inference.detect import UTKFACE_PADDING
    from faceage.inference.predictor import expand_inputs

    report = prepare_images(
        expand_inputs([args.root]), args.output, detector=args.detector, chip_size=args.chip_size,
        padding=UTKFACE_PADDING if args.padding is None else args.padding, workers=args.workers, largest=args.largest,
        root=args.root,
    )
    print(report.summary())
    return 0


def models_main(argv: list[str]) -> int:
    from faceage.models import BACKBONES, HEADS

    print("backbones:", ", ".join(BACKBONES.names()), "(or any timm model name)")
    print("heads:", ", ".join(HEADS.names()))
    return 0


COMMANDS = {"predict": predict_main, "export": export_main, "prepare": prepare_main, "models": models_main}
# commands living beside the code they drive: "module:function", imported only when chosen
LAZY_COMMANDS = {
    "compare": "faceage.inference.compare:main",
    "tune": "faceage.training.tune:main",
    "kfold": "faceage.training.kfold:main",
    "report": "faceage.evaluation.report:main",
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
    command, rest = argv[0], argv[1:]
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
