"""Direct regression heads: one output, L1 or MSE loss (seed 001)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.heads.base import HEADS, AgeHead


class _RegressionHead(AgeHead):
    has_distribution = False

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110) -> None:
        super().__init__(in_features, min_age, max_age)
        self.fc = nn.Linear(in_features, 1)
        # the network predicts a standardised age; centre/scale put the initial guess mid-range
        self.center = (self.min_age + self.max_age) / 2
        self.scale = (self.max_age - self.min_age) / 2

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return self.center + self.scale * logits[:, 0]

    def _error(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return (self.predict(logits) - ages.clamp(self.min_age, self.max_age)) / self.scale


@HEADS.register("l1")
class L1Head(_RegressionHead):
    """Regression trained with mean absolute error."""

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return self._error(logits, ages).abs().mean()


@HEADS.register("mse")
class MSEHead(_RegressionHead):
    """Regression trained with mean squared error."""

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._error(logits, ages), torch.zeros_like(ages))
