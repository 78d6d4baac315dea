"""``faceage ensemble``: average several trained age models into one model directory, plus its ONNX graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceage.cli._common import export_graph, load_or_report


def main(argv: list[str]) -> int:
    """``faceage ensemble MODEL MODEL [...] --output DIR``: saves the ensemble and its ONNX graph."""
    p = argparse.ArgumentParser(prog="faceage ensemble", description="Average several trained age models into one model directory (+ model.onnx).")
    p.add_argument("models", nargs="+", help="model dirs / checkpoints with the same input config (one with --wise-ft)")
    p.add_argument("--wise-ft", type=float, default=None, metavar="ALPHA",
                   help="first interpolate each model's weights with the untuned Cydral start it was fine-tuned from: "
                        "(1 - ALPHA) * start + ALPHA * model (WiSE-FT; cydral_resnet10 models with a softmax head)")
    p.add_argument("--output", required=True, help="directory for model.safetensors, config.json and model.onnx")
    p.add_argument("--tta-flip", choices=["keep", "on", "off"], default="keep",
                   help="flip test-time augmentation of the ensemble")
    p.add_argument("--round-ages", choices=["keep", "on", "off"], default="keep",
                   help="report whole-year ages (keep: the first member's setting)")
    p.add_argument("--no-onnx", action="store_true", help="skip writing model.onnx")
    p.add_argument("--float16", action="store_true",
                   help="store the weights as float16 (half the size; computed in float32)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="write model.onnx as a static int8 graph (needs --calibration)")
    p.add_argument("--calibration", nargs="+", default=None, metavar="PATH",
                   help="aligned face chips for int8 calibration")
    args = p.parse_args(argv)
    if args.quantize and (args.no_onnx or not args.calibration):
        p.error("--quantize int8 writes model.onnx and needs --calibration with face images like the model's inputs")
    import tempfile

    from faceage.models.age_model import load_model
    from faceage.models.ensemble import build_ensemble

    dtype = "float16" if args.float16 else "float32"
    extra: dict = {"members_from": [str(m) for m in args.models]}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            flip = None if args.tta_flip == "keep" else args.tta_flip == "on"
            rounding = None if args.round_ages == "keep" else args.round_ages == "on"
            sources = list(args.models)
            if args.wise_ft is not None:
                from faceage.models.soup import wise_ft

                sources = [str(wise_ft(load_model(m), args.wise_ft).save_pretrained(Path(tmp) / str(i))) for i, m in enumerate(args.models)]
            if len(sources) == 1:
                ensemble = load_model(sources[0])
                extra = {"training": {"from": str(args.models[0])}}
                if flip is not None or rounding is not None:
                    ensemble.config.update({k: v for k, v in (("tta_flip", flip), ("round_ages", rounding)) if v is not None})
            else:
                ensemble = build_ensemble(sources, tta_flip=flip, round_ages=rounding)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.wise_ft is not None:
            extra.setdefault("training", {})["wise_ft"] = {"alpha": args.wise_ft, "start": "the untuned Cydral age and gender networks, age classifier as the head"}
        out = ensemble.save_pretrained(args.output, extra=extra, dtype=dtype)
    members = len(getattr(ensemble, "members", [ensemble]))
    print(f"wrote {out} ({members} member{'s' if members > 1 else ''}; outputs {', '.join(getattr(ensemble, 'output_names', ['age']))})")
    if args.no_onnx:
        return 0
    saved = load_or_report(load_model, str(out))  # the saved weights (float16 with --float16) are what gets exported
    if saved is None:
        return 2
    return export_graph(saved, Path(out) / "model.onnx", "onnx", args.calibration if args.quantize else None)
