"""Exact, group-aware metrics for age (and gender) predictions, in plain numpy.

Training logs running averages with torchmetrics; this module recomputes the final numbers exactly on a
whole prediction set and breaks them down by true-age band, gender and race, as a bias report needs.

Every function returns plain Python ``int`` / ``float`` / ``None`` / ``dict`` / ``list`` values, so a result
can be written with :func:`save_json` unchanged.

Group codes follow ``faceage.data.records``: gender 0 male, 1 female; race 0..4 (``RACES``). A group value
may be ``None``, ``-1``, NaN or anything outside the code range: such samples count as *unknown* and are left
out of that group's table (the number left out is reported under ``"n_unknown"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES

AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 9), (10, 19), (20, 29), (30, 44), (45, 59), (60, 200))
AGE_BAND_LABELS: tuple[str, ...] = ("0-9", "10-19", "20-29", "30-44", "45-59", "60+")
CS_THRESHOLDS: tuple[int, ...] = tuple(range(1, 11))
FEMALE = 1  # positive class for gender F1 / ROC-AUC (``GENDERS[1]``)

ArrayLike = Sequence[Any] | np.ndarray


# --------------------------------------------------------------------------------------------- inputs


def _ages(values: ArrayLike, name: str) -> np.ndarray:
    """Validates a vector of ages.

    Args:
        values: ages, shape (N,) or (N, 1) (any sequence of numbers).
        name: argument name for error messages.

    Returns:
        float64 array, shape (N,).

    Raises:
        ValueError: if not 1-D or not all finite.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {np.shape(values)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validates predicted and true ages together.

    Args:
        pred: predicted ages, shape (N,). A (N, 1) column is accepted and flattened.
        true: true ages, shape (N,).

    Returns:
        ``(pred, true)`` as float64 arrays of shape (N,).

    Raises:
        ValueError: on different lengths, wrong dimensionality or non-finite values.
    """
    p, t = _ages(pred, "pred"), _ages(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.shape[0]} vs {t.shape[0]}")
    return p, t


def group_codes(values: ArrayLike | None, names: Sequence[str], n: int) -> np.ndarray:
    """Turns group labels into integer codes, ``-1`` for unknown.

    Args:
        values: shape (N,): integer codes ``0..len(names)-1``, the names themselves (case-insensitive),
            or ``None`` / ``-1`` / NaN / anything else for unknown. ``None`` as a whole means all unknown.
        names: the group names, e.g. ``GENDERS`` or ``RACES``.
        n: expected length N.

    Returns:
        int64 array, shape (N,), values in ``-1..len(names)-1``.

    Raises:
        ValueError: if ``values`` does not have length N.
    """
    if values is None:
        return np.full(n, -1, dtype=np.int64)
    seq = list(np.asarray(values, dtype=object).reshape(-1))
    if len(seq) != n:
        raise ValueError(f"group labels have length {len(seq)}, expected {n}")
    lookup = {name.lower(): i for i, name in enumerate(names)}
    return np.array([_one_code(v, lookup, len(names)) for v in seq], dtype=np.int64)


def _one_code(value: Any, lookup: Mapping[str, int], n_groups: int) -> int:
    if value is None:
        return -1
    if isinstance(value, str):
        return lookup.get(value.strip().lower(), -1)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return -1
    if not math.isfinite(f) or f != int(f) or not 0 <= int(f) < n_groups:
        return -1
    return int(f)


def age_band_index(ages: ArrayLike) -> np.ndarray:
    """Index into ``AGE_BANDS`` for each age.

    A band runs from its lower bound up to (not including) the next band's lower bound, so fractional ages
    fall in the band of their integer part (9.5 -> "0-9"); ages below 0 go to the first band and ages above
    200 to "60+".

    Args:
        ages: shape (N,).

    Returns:
        int64 array, shape (N,), values ``0..len(AGE_BANDS)-1``.
    """
    lows = np.array([lo for lo, _ in AGE_BANDS], dtype=np.float64)
    idx = np.searchsorted(lows, np.asarray(ages, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(AGE_BANDS) - 1).astype(np.int64)


def age_band_label(age: float) -> str:
    """The ``AGE_BAND_LABELS`` entry for one age (9 -> "0-9", 10 -> "10-19", 60 -> "60+")."""
    return AGE_BAND_LABELS[int(age_band_index([age])[0])]


# ------------------------------------------------------------------------------------------ age metrics


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


def _group_summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float | int]:
    """The short per-group table row: n, mae, rmse, cs@5, bias."""
    m = age_metrics(pred, true)
    return {key: m[key] for key in ("n", "mae", "rmse", "cs@5", "bias")}


def _by_group(
    pred: np.ndarray, true: np.ndarray, codes: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Group summaries keyed by label, in label order; groups with no sample are left out."""
    return {
        label: _group_summary(pred[codes == i], true[codes == i])
        for i, label in enumerate(labels)
        if np.any(codes == i)
    }


# --------------------------------------------------------------------------------------- gender metrics


def rank_average(x: ArrayLike) -> np.ndarray:
    """1-based ranks with ties given their average rank (like ``scipy.stats.rankdata``).

    Args:
        x: shape (N,).

    Returns:
        float64 array, shape (N,).
    """
    _, inverse, counts = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts + 1) / 2.0)[inverse.reshape(-1)]


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """ROC-AUC via the Mann-Whitney U statistic (ties count one half).

    Args:
        labels: binary labels, shape (N,), 1 positive.
        scores: scores, shape (N,), higher meaning more likely positive.

    Returns:
        AUC in [0, 1], or ``None`` when only one class is present.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rank_average(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _f1(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> tuple[float, float, float]:
    """Precision, recall, F1 for one positive class; 0.0 where undefined (as scikit-learn does)."""
    tp = int(np.sum((y_pred == positive) & (y_true == positive)))
    fp = int(np.sum((y_pred == positive) & (y_true != positive)))
    fn = int(np.sum((y_pred != positive) & (y_true == positive)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return float(precision), float(recall), float(f1)


def _accuracy_by(correct: np.ndarray, codes: np.ndarray, labels: Sequence[str]) -> dict[str, dict]:
    return {
        label: {"n": int(np.sum(codes == i)), "accuracy": float(np.mean(correct[codes == i]))}
        for i, label in enumerate(labels)
        if np.any(codes == i)
    }


def _with_breakdowns(out: dict[str, Any], correct: np.ndarray, known: np.ndarray, tables: list) -> dict[str, Any]:
    """Adds ``accuracy_by_<name>`` to ``out`` for each ``(name, codes, labels)`` whose codes are given."""
    for name, codes, labels in tables:
        if codes is not None:
            out[f"accuracy_by_{name}"] = _accuracy_by(correct, codes[known], labels)
    return out


def gender_metrics(
    gender: np.ndarray,
    gender_pred: np.ndarray,
    gender_prob: ArrayLike | None = None,
    race: np.ndarray | None = None,
    band: np.ndarray | None = None,
) -> dict[str, Any]:
    """Gender classification metrics on the samples whose true gender is known.

    Args:
        gender: true codes, shape (N,), ``-1`` unknown (those samples are left out).
        gender_pred: predicted codes, shape (N,); anything but 0/1 counts as wrong.
        gender_prob: P(female), shape (N,), for ROC-AUC; ``None`` gives ``roc_auc: None``.
        race: race codes, shape (N,), ``-1`` unknown, for ``accuracy_by_race``.
        band: ``AGE_BANDS`` indices of the true ages, shape (N,), for ``accuracy_by_age_band``.

    Returns:
        ``{"n", "accuracy", "precision", "recall", "f1", "roc_auc", "accuracy_by_race",
        "accuracy_by_age_band"}`` with female as the positive class; the ``accuracy_by_*`` tables map a
        group label to ``{"n", "accuracy"}``. With no known gender, ``{"n": 0}``.
    """
    known = gender >= 0
    if not np.any(known):
        return {"n": 0}
    y, yp = gender[known], gender_pred[known]
    correct = y == yp
    precision, recall, f1 = _f1(y, yp, FEMALE)
    auc = None
    if gender_prob is not None:
        auc = roc_auc(y == FEMALE, _ages(gender_prob, "gender_prob")[known])
    out: dict[str, Any] = {
        "n": int(known.sum()),
        "accuracy": float(np.mean(correct)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
    }
    return _with_breakdowns(out, correct, known, [("race", race, RACES), ("age_band", band, AGE_BAND_LABELS)])


def race_metrics(race: np.ndarray, race_pred: np.ndarray, gender: np.ndarray | None = None, band: np.ndarray | None = None) -> dict[str, Any]:
    """Race classification metrics on the samples whose true race is known.

    Args:
        race: true codes 0..4 (``RACES``), shape (N,), ``-1`` unknown (left out).
        race_pred: predicted codes, shape (N,).
        gender: gender codes, shape (N,), ``-1`` unknown, for ``accuracy_by_gender``.
        band: ``AGE_BANDS`` indices of the true ages, shape (N,), for ``accuracy_by_age_band``.

    Returns:
        ``{"n", "accuracy", "balanced_accuracy", "recall_by_class", "precision_by_class", "confusion",
        "accuracy_by_gender"?, "accuracy_by_age_band"?}``; ``recall_by_class`` maps a race name to
        ``{"n", "recall"}``; ``confusion[i][j]`` counts true ``RACES[i]`` predicted as ``RACES[j]``. With no
        known race, ``{"n": 0}``.
    """
    known = race >= 0
    if not np.any(known):
        return {"n": 0}
    y, yp = race[known], race_pred[known]
    correct = y == yp
    recall = {name: {"n": int(np.sum(y == i)), "recall": float(np.mean(yp[y == i] == i))} for i, name in enumerate(RACES) if np.any(y == i)}
    precision = {name: float(np.mean(y[yp == i] == i)) for i, name in enumerate(RACES) if np.any(yp == i)}
    confusion = [[int(np.sum((y == i) & (yp == j))) for j in range(len(RACES))] for i in range(len(RACES))]
    out: dict[str, Any] = {
        "n": int(known.sum()),
        "accuracy": float(np.mean(correct)),
        "balanced_accuracy": float(np.mean([v["recall"] for v in recall.values()])),
        "recall_by_class": recall,
        "precision_by_class": precision,
        "confusion": confusion,
    }
    return _with_breakdowns(out, correct, known, [("gender", gender, GENDERS), ("age_band", band, AGE_BAND_LABELS)])


# ------------------------------------------------------------------------------------------ intervals


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


# -------------------------------------------------------------------------------------- full evaluation


def evaluate_predictions(
    pred: ArrayLike,
    true: ArrayLike,
    gender: ArrayLike | None = None,
    race: ArrayLike | None = None,
    gender_pred: ArrayLike | None = None,
    gender_prob: ArrayLike | None = None,
    intervals: ArrayLike | None = None,
    race_pred: ArrayLike | None = None,
) -> dict[str, Any]:
    """All metrics of one prediction set, overall and by group.

    Args:
        pred: predicted ages, shape (N,).
        true: true ages, shape (N,).
        gender: true gender, shape (N,): 0 male / 1 female (or the names), unknown as ``None`` / ``-1``.
        race: true race, shape (N,): 0..4 (or the names of ``RACES``), unknown as ``None`` / ``-1``.
        gender_pred: predicted gender codes, shape (N,). If ``None`` but ``gender_prob`` is given, it is
            ``gender_prob >= 0.5``.
        gender_prob: predicted P(female), shape (N,).
        intervals: prediction intervals ``[low, high]``, shape (N, 2).
        race_pred: predicted race codes 0..4 (or names), shape (N,).

    Returns:
        A dict with

        - ``"overall"``: :func:`age_metrics`.
        - ``"by_age_band"``: band label (of the *true* age) -> ``{"n", "mae", "rmse", "cs@5", "bias"}``.
        - ``"by_gender"`` / ``"by_race"`` (only when ``gender`` / ``race`` is given): same rows keyed by
          group name, unknowns left out, empty groups omitted.
        - ``"n_unknown"``: ``{"gender": k, "race": k}`` for the labels given.
        - ``"gender"`` (when gender predictions are given and ``gender`` is): :func:`gender_metrics`.
        - ``"race"`` (when race predictions are given and ``race`` is): :func:`race_metrics`.
        - ``"interval_coverage"``, ``"interval_mean_width"`` (when ``intervals`` is given).

    Raises:
        ValueError: on inconsistent lengths or invalid values; if gender (race) predictions are given without
            true ``gender`` (``race``).
    """
    p, t = check_pair(pred, true)
    n = p.size
    band = age_band_index(t)
    result: dict[str, Any] = {
        "overall": age_metrics(p, t),
        "by_age_band": _by_group(p, t, band, AGE_BAND_LABELS),
    }
    g = group_codes(gender, GENDERS, n) if gender is not None else None
    r = group_codes(race, RACES, n) if race is not None else None
    unknown: dict[str, int] = {}
    if g is not None:
        result["by_gender"] = _by_group(p, t, g, GENDERS)
        unknown["gender"] = int(np.sum(g < 0))
    if r is not None:
        result["by_race"] = _by_group(p, t, r, RACES)
        unknown["race"] = int(np.sum(r < 0))
    if unknown:
        result["n_unknown"] = unknown
    if gender_pred is None and gender_prob is not None:
        gender_pred = (_ages(gender_prob, "gender_prob") >= 0.5).astype(np.int64)
    if gender_pred is not None:
        if g is None:
            raise ValueError("gender predictions need the true gender to be scored")
        gp = group_codes(gender_pred, GENDERS, n)
        result["gender"] = gender_metrics(g, gp, gender_prob, r, band)
    if race_pred is not None:
        if r is None:
            raise ValueError("race predictions need the true race to be scored")
        result["race"] = race_metrics(r, group_codes(race_pred, RACES, n), g, band)
    if intervals is not None:
        result.update(interval_metrics(intervals, t))
    return result


# ------------------------------------------------------------------------------------ folds, bootstrap


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


def summarize_folds(
    results: Sequence[Mapping[str, Any]], section: str = "overall", ddof: int = 1
) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------------------------- json


def to_jsonable(obj: Any) -> Any:
    """Converts numpy scalars/arrays, tuples and paths to JSON types; NaN and infinities become ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Writes a result dict as indented JSON, creating parent folders.

    Args:
        result: e.g. the output of :func:`evaluate_predictions` or :func:`summarize_folds`.
        path: destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")
    return path
