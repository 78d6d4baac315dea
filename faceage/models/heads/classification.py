"""Heads with a softmax over integer ages: DEX cross-entropy, label distribution (DLDL), mean-variance."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.heads.base import HEADS, AgeHead


class _SoftmaxHead(AgeHead):
    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110) -> None:
        super().__init__(in_features, min_age, max_age)
        self.fc = nn.Linear(in_features, self.num_ages)

    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def log_distribution(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(dim=1)  # exact where the softmax underflows


@HEADS.register("ce")
class CrossEntropyHead(_SoftmaxHead):
    """DEX (Rothe et al., 2015): classification over ages, predicted age is the softmax expectation."""

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, self.age_to_index(ages))


@HEADS.register("dldl")
class LabelDistributionHead(_SoftmaxHead):
    """DLDL-v2 (Gao et al., 2018): KL to a Gaussian label distribution plus L1 on the expectation.

    Args:
        sigma: standard deviation of the target Gaussian, in years.
        l1_weight: weight of the expectation L1 term (0 gives plain DLDL).
    """

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110, sigma: float = 2.0, l1_weight: float = 1.0) -> None:
        super().__init__(in_features, min_age, max_age)
        self.sigma = sigma
        self.l1_weight = l1_weight

    def target_distribution(self, ages: torch.Tensor) -> torch.Tensor:
        """ages ``(B,)`` -> Gaussian label distributions ``(B, num_ages)``."""
        d = (self.age_values[None, :] - ages[:, None]) / self.sigma
        return (-0.5 * d.square()).softmax(dim=1)

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        log_p = logits.log_softmax(dim=1)
        kl = F.kl_div(log_p, self.target_distribution(ages), reduction="batchmean")
        expected = log_p.exp() @ self.age_values
        return kl + self.l1_weight * (expected - ages).abs().mean()


@HEADS.register("mean_variance")
class MeanVarianceHead(_SoftmaxHead):
    """Mean-variance loss with softmax loss (Pan et al., CVPR 2018), as seed 004.

    Args:
        lambda_mean: weight of the squared mean error (paper: 0.2).
        lambda_var: weight of the distribution variance (paper: 0.05).
    """

    def __init__(self, in_features: int, min_age: int = 0, max_age: int = 110, lambda_mean: float = 0.2, lambda_var: float = 0.05) -> None:
        super().__init__(in_features, min_age, max_age)
        self.lambda_mean = lambda_mean
        self.lambda_var = lambda_var

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(dim=1)
        mean = p @ self.age_values
        var = (p * (self.age_values[None, :] - mean[:, None]).square()).sum(dim=1)
        target = ages.clamp(self.min_age, self.max_age)
        mean_loss = 0.5 * (mean - target).square().mean()
        return F.cross_entropy(logits, self.age_to_index(ages)) + self.lambda_mean * mean_loss + self.lambda_var * var.mean()
