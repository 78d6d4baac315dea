"""Export to ONNX and TorchScript (seed 002 exported TorchScript), through one wrapper with fixed outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceage.models.age_model import AgeModel


class InferenceWrapper(nn.Module):
    """``AgeModel`` -> tuple of tensors named by :attr:`output_names` (``age``, ``distribution``, ``gender_prob``,
    ``race_probs``), averaged over the image and its mirror when the model config has ``tta_flip``."""

    def __init__(self, model: AgeModel) -> None:
        super().__init__()
        self.model = model.eval()
        self.tta_flip = bool(model.config.get("tta_flip", False))
        self.output_names = model.output_names

    def _once(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(images)
        dec = self.model.decode(out)
        return [dec[name] for name in self.output_names]

    def forward(self, images: torch.Tensor):
        if not self.tta_flip:
            return tuple(self._once(images))
        # one pass over [images; mirrored images]: a batch twice as large runs faster than two passes
        n = images.shape[0]
        both = self._once(torch.cat([images, images.flip(-1)]))
        return tuple((out[:n] + out[n:]) / 2 for out in both)


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


def calibration_batch(files: list[str], input_config: dict, limit: int = 256, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` aligned face chips (a seeded sample of ``files``), preprocessed as the model expects:
    ``(N, 3, S, S)`` float32. Unreadable files are skipped with a warning naming them."""
    import random
    import warnings

    from faceage.data.images import ImageLoadError, load_image
    from faceage.inference.preprocess import preprocess_chip

    picked = sorted(files)
    random.Random(seed).shuffle(picked)
    arrays = []
    for f in picked:
        if len(arrays) >= limit:
            break
        try:
            arrays.append(preprocess_chip(load_image(f), input_config))
        except ImageLoadError as e:
            warnings.warn(f"calibration: skipped {e}", stacklevel=2)
    if not arrays:
        raise ValueError("int8 quantization needs calibration face images; none of the given files could be read")
    return np.stack(arrays).astype(np.float32)


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

    target = Path(target)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    return target


def export_model(model: AgeModel, out: str | Path, fmt: str = "onnx", calibration: np.ndarray | None = None) -> Path:
    """Writes ``model`` as one graph file ``out`` and, when its folder has none, the model's ``config.json`` beside
    it (atomically: a kill never leaves a half-written config beside the graph); returns ``out``.

    Args:
        model: the model to export.
        out: the graph file to write; its folder must exist.
        fmt: ``onnx`` or ``torchscript``.
        calibration: ONNX only: faces from :func:`calibration_batch`; given, the graph is static int8
            (:func:`quantize_onnx` of an fp32 export).
    """
    import json
    import tempfile

    from faceage._io import write_text_atomic

    out = Path(out)
    if calibration is not None:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_onnx(export_onnx(model, Path(tmp) / "fp32.onnx"), out, calibration)
    else:
        (export_onnx if fmt == "onnx" else export_torchscript)(model, out)
    config_target = out.parent / "config.json"
    if not config_target.exists():
        write_text_atomic(config_target, json.dumps(model.config, indent=2))
    return out
