"""A model's outputs as a function of images: the one place that runs flip averaging, and the tensor-tuple form that
export (ONNX, TorchScript), the torch engine and the pair comparators run.

:func:`flip_average` is the test-time augmentation (the image and its mirror, outputs averaged) every path uses;
:class:`InferenceWrapper` turns an ``AgeModel`` / ``AgeEnsemble`` into ``images -> (age, distribution?,
gender_prob?, race_probs?)`` named by its :attr:`~InferenceWrapper.output_names`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def flip_average(decoded: Callable[[torch.Tensor], dict[str, torch.Tensor]], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``decoded(images)`` averaged with ``decoded`` of the mirrored images, in one pass over a batch twice as large
    (faster than two passes)."""
    n = images.shape[0]
    both = decoded(torch.cat([images, images.flip(-1)]))
    return {k: (v[:n] + v[n:]) / 2 for k, v in both.items()}


class InferenceWrapper(nn.Module):
    """``AgeModel`` -> tuple of tensors named by :attr:`output_names` (``age``, ``distribution``, ``gender_prob``,
    ``race_probs``), averaged over the image and its mirror when the model config has ``tta_flip``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self.tta_flip = bool(model.config.get("tta_flip", False))
        self.output_names = model.output_names

    def _decoded(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.decode(self.model(images))

    def forward(self, images: torch.Tensor):
        out = flip_average(self._decoded, images) if self.tta_flip else self._decoded(images)
        return tuple(out[name] for name in self.output_names)
