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

    def _outside(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Standardised distance from the prediction to the group's span ``[low - 0.5, high + 0.5]``, 0 inside."""
        pred = self.predict(logits)
        low = lows.to(pred).clamp(self.min_age, self.max_age) - 0.5
        high = highs.to(pred).clamp(self.min_age, self.max_age) + 0.5
        return ((low - pred).clamp_min(0) + (pred - high).clamp_min(0)) / self.scale


@HEADS.register("l1")
class L1Head(_RegressionHead):
    """Regression trained with mean absolute error."""

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return self._error(logits, ages).abs().mean()

    def interval_loss(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Age groups: mean distance outside the group (zero inside), standardised like :meth:`loss`."""
        return self._outside(logits, lows, highs).mean()


@HEADS.register("mse")
class MSEHead(_RegressionHead):
    """Regression trained with mean squared error."""

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._error(logits, ages), torch.zeros_like(ages))

    def interval_loss(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Age groups: mean squared distance outside the group (zero inside), standardised like :meth:`loss`."""
        return self._outside(logits, lows, highs).square().mean()
