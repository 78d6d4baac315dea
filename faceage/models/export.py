"""Writing a model's graph files: ONNX (optionally int8-quantized with ONNX Runtime's own tooling) and TorchScript,
both through :class:`~faceage.models.outputs.InferenceWrapper` (fixed, named outputs; flip averaging when the config
asks for it). The command is ``faceage export``; the int8 calibration faces come from
:func:`faceage.inference.preprocess.calibration_batch`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceage.models.age_model import AgeModel
from faceage.models.outputs import InferenceWrapper


def export_onnx(model: AgeModel, path: str | Path, opset: int = 17) -> Path:
    """Writes an ONNX graph with a dynamic batch axis; returns the path."""
    path = Path(path)
    wrapper = InferenceWrapper(model)
    size = model.input_config["image_size"]
    dummy = torch.randn(2, 3, size, size)
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=wrapper.output_names,
        dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in wrapper.output_names}},
        opset_version=opset,
        dynamo=False,
    )
    return path


def export_torchscript(model: AgeModel, path: str | Path) -> Path:
    """Writes a traced TorchScript module (input ``(B, 3, S, S)``); returns the path."""
    path = Path(path)
    wrapper = InferenceWrapper(model)
    size = model.input_config["image_size"]
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, torch.randn(2, 3, size, size), check_trace=False)
    traced.save(str(path))
    return path


QUANTIZED_PARTS = ("/backbone/", "/gender_net/")  # graph node names of the parts that int8 runs


def quantize_onnx(source: str | Path, target: str | Path, calibration: np.ndarray, batch_size: int = 32) -> Path:
    """Static int8 quantization of an exported fp32 graph with ONNX Runtime's own tooling (QDQ format, per-channel
    int8 weights, uint8 activations calibrated on ``calibration`` faces (min-max)). On CPUs with VNNI this runs about
    twice as fast; for the bundled ensembles the test MAE moved by 0.03-0.04 years (benchmarks/RESULTS.md)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": calibration[i : i + batch_size]} for i in range(0, len(calibration), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    import onnx

    target = Path(target)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        # only the convolutional trunks are quantized: the heads are a few small matrix products, and uint8 steps on
        # their logits, the age distribution and the expected age moved the ages by 0.7 years
        # (benchmarks/RESULTS.md, "int8 graph")
        keep_float = [n.name for n in onnx.load(str(prepared)).graph.node if not any(part in n.name for part in QUANTIZED_PARTS)]
        quantize_static(
            str(prepared), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_float,
        )
    return target


def export_model(model: AgeModel, out: str | Path, fmt: str = "onnx", calibration: np.ndarray | None = None) -> Path:
    """Writes ``model`` as one graph file ``out`` and, when its folder has none, the model's ``config.json`` beside
    it, both atomically (a kill never leaves a half-written graph or config); returns ``out``.

    Args:
        model: the model to export.
        out: the graph file to write; its folder must exist.
        fmt: ``onnx`` or ``torchscript``.
        calibration: ONNX only: faces from :func:`calibration_batch`; given, the graph is static int8
            (:func:`quantize_onnx` of an fp32 export).
    """
    import tempfile

    from faceage._io import atomic_target
    from faceage.models.files import CONFIG_NAME, write_config

    out = Path(out)
    with atomic_target(out) as target:  # a stop or an error mid-export leaves no half-written graph
        if calibration is not None:
            with tempfile.TemporaryDirectory() as tmp:
                quantize_onnx(export_onnx(model, Path(tmp) / "fp32.onnx"), target, calibration)
        else:
            (export_onnx if fmt == "onnx" else export_torchscript)(model, target)
    if not (out.parent / CONFIG_NAME).exists():
        write_config(out.parent, model.config)
    return out
