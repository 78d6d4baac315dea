"""Export to ONNX and TorchScript (seed 002 exported TorchScript), through one wrapper with fixed outputs."""

from __future__ import annotations

from pathlib import Path

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
