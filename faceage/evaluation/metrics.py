"""Exact, group-aware metrics for age (and gender) predictions, in plain numpy.

Training logs running averages with torchmetrics; this module recomputes the final numbers exactly on a
whole prediction set and breaks them down by true-age band, gender and race, as a bias report needs.

Every function returns plain Python ``int`` / ``float`` / ``None`` / ``dict`` / ``list`` values, so a result
can be written with :func:`save_json` unchanged. :func:`evaluate_predictions` lives here; the parts it is built
from live in :mod:`.groups` (inputs, bands, group codes), :mod:`.age_metrics`, :mod:`.age_groups` (faces labelled
with an age group), :mod:`.classification` (gender, race), :mod:`.summary_stats` (folds, bootstrap) and
:mod:`.json_io`, and are importable from here too.

Group codes follow ``faceage.data.records``: gender 0 male, 1 female; race 0..4 (``RACES``). A group value
may be ``None``, ``-1``, NaN or anything outside the code range: such samples count as *unknown* and are left
out of that group's table (the number left out is reported under ``"n_unknown"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.age_groups import group_metrics, signed_years_outside
from faceage.evaluation.age_metrics import CS_THRESHOLDS, age_metrics, by_group, group_summary, interval_metrics
from faceage.evaluation.classification import FEMALE, gender_metrics, race_metrics, rank_average, roc_auc
from faceage.evaluation.groups import (
    AGE_BAND_LABELS,
    AGE_BANDS,
    ArrayLike,
    age_band_index,
    age_band_label,
    check_ages,
    check_pair,
    group_codes,
)
from faceage.evaluation.json_io import save_json, to_jsonable
from faceage.evaluation.summary_stats import bootstrap_ci, summarize_folds

__all__ = [
    "AGE_BANDS",
    "AGE_BAND_LABELS",
    "CS_THRESHOLDS",
    "FEMALE",
    "ArrayLike",
    "age_band_index",
    "age_band_label",
    "age_metrics",
    "bootstrap_ci",
    "by_group",
    "check_ages",
    "check_pair",
    "evaluate_predictions",
    "gender_metrics",
    "group_codes",
    "group_metrics",
    "group_summary",
    "interval_metrics",
    "race_metrics",
    "rank_average",
    "roc_auc",
    "save_json",
    "signed_years_outside",
    "summarize_folds",
    "to_jsonable",
]


def evaluate_predictions(
    pred: ArrayLike,
    true: ArrayLike,
    gender: ArrayLike | None = None,
    race: ArrayLike | None = None,
    gender_pred: ArrayLike | None = None,
    gender_prob: ArrayLike | None = None,
    intervals: ArrayLike | None = None,
    race_pred: ArrayLike | None = None,
    group_low: ArrayLike | None = None,
    group_high: ArrayLike | None = None,
) -> dict[str, Any]:
    """All metrics of one prediction set, overall and by group.

    Faces labelled with an age group (``group_low``/``group_high`` not NaN) are scored by :func:`group_metrics`
    under ``"age_groups"``; every other key is computed on the exact-age faces only, and is absent when there is none.

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
        group_low: true age group's first year per face, shape (N,), NaN for a face with an exact age.
        group_high: true age group's last year per face, shape (N,), NaN for a face with an exact age.

    Returns:
        A dict with

        - ``"overall"``: :func:`age_metrics`.
        - ``"by_age_band"``: band label (of the *true* age) -> ``{"n", "mae", "rmse", "cs@5", "bias"}``.
        - ``"by_gender"`` / ``"by_race"`` (only when ``gender`` / ``race`` is given): same rows by group name.
        - Unknown group labels are left out of those rows; empty groups are omitted.
        - ``"n_unknown"``: ``{"gender": k, "race": k}`` for the labels given.
        - ``"gender"`` (when gender predictions are given and ``gender`` is): :func:`gender_metrics`.
        - ``"race"`` (when race predictions are given and ``race`` is): :func:`race_metrics`.
        - ``"interval_coverage"``, ``"interval_mean_width"`` (when ``intervals`` is given).
        - ``"age_groups"`` (when some faces carry a group): :func:`group_metrics` of those faces.
        - ``"n_exact"``, ``"n_grouped"`` (when group bounds are given): how many faces each part is computed on.

    Raises:
        ValueError: on inconsistent lengths or invalid values; if gender (race) predictions are given without
            true ``gender`` (``race``).
    """
    if group_low is not None or group_high is not None:
        return _evaluate_with_groups(pred, true, gender, race, gender_pred, gender_prob, intervals, race_pred, group_low, group_high)
    p, t = check_pair(pred, true)
    n = p.size
    band = age_band_index(t)
    result: dict[str, Any] = {
        "overall": age_metrics(p, t),
        "by_age_band": by_group(p, t, band, AGE_BAND_LABELS),
    }
    g = group_codes(gender, GENDERS, n) if gender is not None else None
    r = group_codes(race, RACES, n) if race is not None else None
    unknown: dict[str, int] = {}
    if g is not None:
        result["by_gender"] = by_group(p, t, g, GENDERS)
        unknown["gender"] = int(np.sum(g < 0))
    if r is not None:
        result["by_race"] = by_group(p, t, r, RACES)
        unknown["race"] = int(np.sum(r < 0))
    if unknown:
        result["n_unknown"] = unknown
    if gender_pred is None and gender_prob is not None:
        gender_pred = (check_ages(gender_prob, "gender_prob") >= 0.5).astype(np.int64)
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


def _evaluate_with_groups(pred: ArrayLike, true: ArrayLike, gender: ArrayLike | None, race: ArrayLike | None,
                          gender_pred: ArrayLike | None, gender_prob: ArrayLike | None, intervals: ArrayLike | None,
                          race_pred: ArrayLike | None, group_low: ArrayLike | None, group_high: ArrayLike | None) -> dict[str, Any]:
    """:func:`evaluate_predictions` of a set where some faces carry an age group: exact-age metrics on the others."""
    p = check_ages(pred, "pred")
    n = p.size
    if group_low is None or group_high is None:
        raise ValueError("age groups need both group_low and group_high")
    low, high = np.asarray(group_low, dtype=np.float64).reshape(-1), np.asarray(group_high, dtype=np.float64).reshape(-1)
    if not low.size == high.size == n:
        raise ValueError(f"group_low and group_high must have {n} values, got {low.size} and {high.size}")
    if np.any(np.isnan(low) != np.isnan(high)):
        raise ValueError("group_low and group_high must be NaN for the same faces (exact ages)")
    exact = np.isnan(low)

    def part(values: ArrayLike | None) -> np.ndarray | None:
        return None if values is None else np.asarray(values)[exact]

    result: dict[str, Any] = {}
    if exact.any():
        result = evaluate_predictions(p[exact], np.asarray(true, dtype=np.float64).reshape(-1)[exact], part(gender),
                                      part(race), part(gender_pred), part(gender_prob), part(intervals), part(race_pred))
    if (~exact).any():
        result["age_groups"] = group_metrics(p[~exact], low[~exact], high[~exact])
    result["n_exact"], result["n_grouped"] = int(exact.sum()), int((~exact).sum())
    return result
