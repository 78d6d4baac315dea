"""``faceage export``: write a model's ONNX graph (optionally static int8) or TorchScript module."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceage.cli._common import export_graph, load_or_report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage export", description="Export a model to ONNX or TorchScript.")
    p.add_argument("model", nargs="?", default=None, help="model dir / .ckpt (default: bundled)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--output", default=None,
                   help="output file (default: model.onnx / model.torchscript.pt in the model's folder; "
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

    from faceage.models.age_model import load_model
    from faceage.models.files import export_dir

    model = load_or_report(load_model, args.model)
    if model is None:
        return 2
    if args.model is None:  # the bundled model's folder is read-only package data
        default_dir = Path(".")
    else:
        default_dir = export_dir(args.model)  # where predict --model <the same path> --engine onnx looks
    name = "model.onnx" if args.format == "onnx" else "model.torchscript.pt"
    out = Path(args.output) if args.output else default_dir / name
    return export_graph(model, out, args.format, args.calibration if args.quantize else None)
