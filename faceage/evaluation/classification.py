"""Gender and race classification metrics: accuracy, F1, ROC-AUC, confusion, and accuracy by group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.groups import AGE_BAND_LABELS, ArrayLike, check_ages

FEMALE = 1  # positive class for gender F1 / ROC-AUC (``GENDERS[1]``)


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
        auc = roc_auc(y == FEMALE, check_ages(gender_prob, "gender_prob")[known])
    out: dict[str, Any] = {
        "n": int(known.sum()),
        "accuracy": float(np.mean(correct)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
    }
    return _with_breakdowns(out, correct, known, [("race", race, RACES), ("age_band", band, AGE_BAND_LABELS)])


def race_metrics(
    race: np.ndarray, race_pred: np.ndarray, gender: np.ndarray | None = None, band: np.ndarray | None = None
) -> dict[str, Any]:
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
    recall = {
        name: {"n": int(np.sum(y == i)), "recall": float(np.mean(yp[y == i] == i))}
        for i, name in enumerate(RACES)
        if np.any(y == i)
    }
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
