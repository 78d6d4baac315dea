"""Rank-consistent ordinal heads from ``coral-pytorch``: CORAL (Cao et al., 2020) and CORN (Shi et al., 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from coral_pytorch.dataset import corn_label_from_logits, levels_from_labelbatch
from coral_pytorch.layers import CoralLayer
from coral_pytorch.losses import coral_loss, corn_loss
from torch import nn

from faceage.models.heads.base import GROUPS_REFUSED, HEADS, AgeHead, cumulative_to_distribution


@HEADS.register("coral")
class CoralHead(AgeHead):
    """CORAL: ``K-1`` binary tasks "age > k" sharing one weight vector, with ordered biases.

    Args:
        decode: ``"threshold"`` counts tasks with p > 0.5 (the paper's rule); ``"expectation"`` sums the
            probabilities (the mean of the implied distribution).
    """

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110, decode: str = "threshold") -> None:
        super().__init__(in_features, min_age, max_age)
        if decode not in ("threshold", "expectation"):
            raise ValueError(f"decode must be 'threshold' or 'expectation', got {decode!r}")
        self.decode = decode
        self.fc = CoralLayer(size_in=in_features, num_classes=self.num_ages)

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        levels = levels_from_labelbatch(self.age_to_index(ages).cpu(), num_classes=self.num_ages).to(logits)
        return coral_loss(logits, levels)

    def interval_loss(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Age groups: CORAL's loss on the tasks the group settles. Task ``k`` ("age > min_age + k") is true below the
        group's first year and false from its last year; the tasks inside the group carry no label. Equals
        :meth:`loss` when ``low == high``."""
        low, high = self.age_to_index(lows), self.age_to_index(highs)
        k = torch.arange(self.num_ages - 1, device=logits.device)[None, :]
        known = (k < low[:, None]) | (k >= high[:, None])
        bce = F.binary_cross_entropy_with_logits(logits, (k < low[:, None]).to(logits.dtype), reduction="none")
        return (bce * known).sum(dim=1).mean()

    def exceedance(self, logits: torch.Tensor) -> torch.Tensor:
        """``P(age > min_age + k)`` for ``k = 0..K-2``, shape ``(B, K-1)``."""
        return logits.sigmoid()

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.exceedance(logits)
        if self.decode == "threshold":
            return self.min_age + (p > 0.5).sum(dim=1).float()
        return self.min_age + p.sum(dim=1)

    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        return cumulative_to_distribution(self.exceedance(logits))


@HEADS.register("corn")
class CornHead(AgeHead):
    """CORN: conditional binary tasks "age > k given age > k-1"; exceedance is their cumulative product.

    Age-group labels are refused: inside a group the conditioning of its tasks is unknown.
    """

    supports_groups = False

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110) -> None:
        super().__init__(in_features, min_age, max_age)
        self.fc = nn.Linear(in_features, self.num_ages - 1)

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return corn_loss(logits, self.age_to_index(ages), num_classes=self.num_ages)

    def interval_loss(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        raise ValueError(GROUPS_REFUSED.format(head="corn"))

    def exceedance(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid().cumprod(dim=1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return self.min_age + corn_label_from_logits(logits).float()

    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        return cumulative_to_distribution(self.exceedance(logits))
