"""The interface every age head shares, and the head registry.

A head maps backbone features ``(B, F)`` to logits, and knows how to turn those logits into a loss, a point
estimate of age, and (where the head has one) a distribution over the integer ages ``min_age..max_age``.

Faces labelled with an age group ``[low, high]`` (inclusive years) train through :meth:`AgeHead.interval_loss`;
:meth:`AgeHead.label_loss` mixes exact and grouped faces in one batch.
"""

from __future__ import annotations

import torch
from torch import nn

from faceage._registry import Registry

HEADS: Registry[type[AgeHead]] = Registry("head")
GROUPS_REFUSED = ("model.head.name {head!r} cannot train on age-group labels; choose ce, dldl, mean_variance, coral, "
                  "l1 or mse, or train on exact ages only")


class AgeHead(nn.Module):
    """Base class of age heads.

    Args:
        in_features: backbone feature size ``F``.
        min_age: youngest age the head can output (inclusive).
        max_age: oldest age the head can output (inclusive).
    """

    has_distribution: bool = True
    supports_groups: bool = True  # whether interval_loss can train on age-group labels

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110) -> None:
        super().__init__()
        if max_age <= min_age:
            raise ValueError(f"max_age ({max_age}) must be greater than min_age ({min_age})")
        self.in_features = in_features
        self.min_age = int(min_age)
        self.max_age = int(max_age)
        self.num_ages = self.max_age - self.min_age + 1
        self.register_buffer("age_values", torch.arange(self.min_age, self.max_age + 1, dtype=torch.float32), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features ``(B, F)`` -> logits ``(B, num_outputs)``."""
        return self.fc(features)

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """logits ``(B, num_outputs)``, ages ``(B,)`` float years -> scalar loss."""
        raise NotImplementedError

    def interval_loss(self, logits: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Loss of faces labelled with age groups: ``-log sum_{k in [low, high]} p_k``, the negative log of the
        probability mass the head's distribution puts inside each group, averaged over the batch.

        Args:
            logits: ``(B, num_outputs)``.
            lows: groups' first years ``(B,)``.
            highs: groups' last years ``(B,)``; groups reaching past ``max_age`` (or below ``min_age``) are cut to
                the head's range (an open "70+" group is ``70..max_age``).

        Returns:
            Scalar loss.
        """
        log_p = self.log_distribution(logits)
        if log_p is None:
            raise ValueError(f"head {type(self).__name__} has no age distribution to train on age groups")
        return -log_p.masked_fill(~self.interval_mask(lows, highs), float("-inf")).logsumexp(dim=1).mean()

    def interval_mask(self, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        """Which of the head's ages each group holds: ``(B,)``, ``(B,)`` -> bool ``(B, num_ages)``.

        An age is in ``[low, high]`` when it rounds into it (``low - 0.5 <= age < high + 0.5``, as
        :func:`faceage.evaluation.age_groups.group_metrics` scores); bounds are cut to the head's range first, so
        every row holds at least one age.
        """
        low = lows.to(self.age_values).clamp(max=self.max_age)[:, None] - 0.5
        high = highs.to(self.age_values).clamp(min=self.min_age)[:, None] + 0.5
        return (self.age_values[None, :] >= low) & (self.age_values[None, :] < high)

    def label_loss(self, logits: torch.Tensor, ages: torch.Tensor, lows: torch.Tensor | None = None,
                   highs: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of a batch that may mix exact ages and age groups.

        Args:
            logits: ``(B, num_outputs)``.
            ages: ``(B,)`` years (a grouped face's representative age, unused by the loss).
            lows: ``(B,)`` group first years, equal to ``ages`` for exact faces; ``None``: all exact.
            highs: ``(B,)`` group last years, equal to ``ages`` for exact faces.

        Returns:
            Scalar: :meth:`loss` on the exact faces and :meth:`interval_loss` on the grouped ones (``high > low``),
            weighted by their counts, so it is the mean over the batch.
        """
        if lows is None or highs is None:
            return self.loss(logits, ages)
        grouped = highs > lows
        n_grouped = int(grouped.sum())
        if n_grouped == 0:
            return self.loss(logits, ages)
        if n_grouped == len(ages):
            return self.interval_loss(logits, lows, highs)
        exact = ~grouped
        total = (len(ages) - n_grouped) * self.loss(logits[exact], ages[exact])
        total = total + n_grouped * self.interval_loss(logits[grouped], lows[grouped], highs[grouped])
        return total / len(ages)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """logits -> predicted age ``(B,)`` in years (float)."""
        dist = self.distribution(logits)
        return dist @ self.age_values

    def distribution(self, logits: torch.Tensor) -> torch.Tensor | None:
        """logits -> probabilities ``(B, num_ages)`` over ``min_age..max_age`` (rows sum to 1), or ``None``."""
        return None

    def log_distribution(self, logits: torch.Tensor) -> torch.Tensor | None:
        """Log of :meth:`distribution` (for KL losses against a target distribution), or ``None``."""
        dist = self.distribution(logits)
        return None if dist is None else dist.clamp_min(1e-8).log()

    def age_to_index(self, ages: torch.Tensor) -> torch.Tensor:
        """Float ages ``(B,)`` -> class indices ``(B,)`` clamped into the head's range."""
        return (ages.round() - self.min_age).clamp(0, self.num_ages - 1).long()


def cumulative_to_distribution(p_greater: torch.Tensor) -> torch.Tensor:
    """Turns ``P(y > k)`` for ``k = 0..K-2`` ``(B, K-1)`` into ``P(y = k)`` ``(B, K)``.

    Ordinal heads (CORAL, CORN) produce rank-monotonic exceedance probabilities, so differences are >= 0; a clamp
    guards against float noise before renormalising.
    """
    ones = torch.ones_like(p_greater[:, :1])
    zeros = torch.zeros_like(p_greater[:, :1])
    upper = torch.cat([ones, p_greater], dim=1)
    lower = torch.cat([p_greater, zeros], dim=1)
    dist = (upper - lower).clamp_min(0)
    return dist / dist.sum(dim=1, keepdim=True).clamp_min(1e-12)


def create_head(name: str, in_features: int, min_age: int = 0, max_age: int = 110, **kwargs) -> AgeHead:
    """Builds the head registered as ``name`` (see ``HEADS.names()``)."""
    cls = HEADS.get(name)
    try:
        return cls(in_features, min_age=min_age, max_age=max_age, **kwargs)
    except TypeError as e:
        raise TypeError(f"head {name!r}: {e}") from None
