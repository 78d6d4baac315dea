"""Age metrics of one prediction set: MAE, RMSE, bias, CS@k, per-group rows, and interval coverage."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from faceage.evaluation.groups import ArrayLike, check_pair

CS_THRESHOLDS: tuple[int, ...] = tuple(range(1, 11))


def age_metrics(pred: ArrayLike, true: ArrayLike) -> dict[str, float | int]:
    """Overall regression metrics of predicted against true ages.

    Args:
        pred: predicted ages, shape (N,), N >= 1.
        true: true ages, shape (N,).

    Returns:
        ``{"n", "mae", "mse", "rmse", "bias", "median_ae", "cs@1", ..., "cs@10"}`` where ``bias`` is the mean
        signed error ``pred - true`` (positive: over-estimation) and ``cs@k`` is the cumulative score, the
        fraction of samples with ``|pred - true| <= k`` years.

    Raises:
        ValueError: on empty or invalid input.
    """
    p, t = check_pair(pred, true)
    if p.size == 0:
        raise ValueError("age_metrics needs at least one sample")
    err = p - t
    abs_err = np.abs(err)
    mse = float(np.mean(err**2))
    out: dict[str, float | int] = {
        "n": int(p.size),
        "mae": float(np.mean(abs_err)),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "bias": float(np.mean(err)),
        "median_ae": float(np.median(abs_err)),
    }
    for k in CS_THRESHOLDS:
        out[f"cs@{k}"] = float(np.mean(abs_err <= k + 1e-9))  # tolerance: 10.1 - 8.1 counts as 2
    return out


def group_summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float | int]:
    """The short per-group table row: n, mae, rmse, cs@5, bias."""
    m = age_metrics(pred, true)
    return {key: m[key] for key in ("n", "mae", "rmse", "cs@5", "bias")}


def by_group(
    pred: np.ndarray, true: np.ndarray, codes: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Group summaries keyed by label, in label order; groups with no sample are left out."""
    return {
        label: group_summary(pred[codes == i], true[codes == i]) for i, label in enumerate(labels) if np.any(codes == i)
    }


def interval_metrics(intervals: ArrayLike, true: np.ndarray) -> dict[str, float]:
    """Coverage and mean width of prediction intervals.

    Args:
        intervals: ``[low, high]`` per sample, shape (N, 2).
        true: true ages, shape (N,).

    Returns:
        ``{"interval_coverage", "interval_mean_width"}``; coverage counts ``low <= true <= high``.

    Raises:
        ValueError: on a wrong shape, non-finite bounds or ``low > high``.
    """
    iv = np.asarray(intervals, dtype=np.float64)
    if iv.shape != (true.shape[0], 2):
        raise ValueError(f"intervals must have shape ({true.shape[0]}, 2), got {iv.shape}")
    if not np.all(np.isfinite(iv)):
        raise ValueError("intervals contain NaN or infinite values")
    low, high = iv[:, 0], iv[:, 1]
    if np.any(low > high):
        raise ValueError("intervals have low > high")
    return {
        "interval_coverage": float(np.mean((low <= true) & (true <= high))),
        "interval_mean_width": float(np.mean(high - low)),
    }
