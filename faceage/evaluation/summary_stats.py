"""Statistics over results: mean and spread across folds, and percentile bootstrap confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


def _numeric_leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], float]:
    """Flattens the int/float leaves of a nested dict (bools and None skipped) by key path."""
    out: dict[tuple[str, ...], float] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.update(_numeric_leaves(value, path))
        elif isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_):
            out[path] = float(value)
    return out


def summarize_folds(results: Sequence[Mapping[str, Any]], section: str = "overall", ddof: int = 1) -> dict[str, Any]:
    """Mean and standard deviation across folds of every numeric leaf of one section.

    Args:
        results: per-fold outputs of :func:`evaluate_predictions`, length F >= 1.
        section: which part of each result to summarise; ``"overall"`` by default.
        ddof: delta degrees of freedom of the std (1: sample std across folds); with a single fold the
            std is 0.0.

    Returns:
        The section's nesting with each numeric leaf replaced by ``{"mean", "std", "n_folds"}``, e.g.
        ``{"mae": {"mean": 5.1, "std": 0.2, "n_folds": 5}, ...}``. A leaf missing (or ``None``) in some
        folds is summarised over the folds that have it.

    Raises:
        ValueError: if ``results`` is empty or no fold has the section.
    """
    if not results:
        raise ValueError("summarize_folds needs at least one fold result")
    values: dict[tuple[str, ...], list[float]] = {}
    for res in results:
        for path, v in _numeric_leaves(res.get(section) or {}).items():
            values.setdefault(path, []).append(v)
    if not values:
        raise ValueError(f"no fold result has numeric values under {section!r}")
    summary: dict[str, Any] = {}
    for path, vals in values.items():
        node = summary
        for key in path[:-1]:
            node = node.setdefault(key, {})
        arr = np.asarray(vals)
        std = float(np.std(arr, ddof=ddof)) if arr.size > ddof else 0.0
        node[path[-1]] = {"mean": float(np.mean(arr)), "std": std, "n_folds": int(arr.size)}
    return summary


def bootstrap_ci(
    values_fn: Callable[[np.ndarray], float | None],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of any statistic of N samples.

    Args:
        values_fn: maps resampled indices, int array of shape (N,) drawn with replacement from
            ``0..n-1``, to the statistic (e.g. ``lambda idx: np.mean(abs_err[idx])``). It may return
            ``None`` / NaN where the statistic is undefined on a resample; such resamples are dropped.
        n: number of samples N.
        n_boot: number of bootstrap resamples.
        seed: seed of the resampling generator (same seed, same interval).
        alpha: 1 - confidence level (0.05 gives a 95% interval).

    Returns:
        ``(lo, hi)``, the ``alpha/2`` and ``1 - alpha/2`` percentiles as floats; ``(nan, nan)`` if every
        resample was undefined.

    Raises:
        ValueError: if ``n < 1``, ``n_boot < 1`` or ``alpha`` not in (0, 1).
    """
    if n < 1 or n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"bad bootstrap arguments: n={n}, n_boot={n_boot}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        value = values_fn(rng.integers(0, n, size=n))
        stats[b] = np.nan if value is None else float(value)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))
