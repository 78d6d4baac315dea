"""Bias tables of a prediction set: age error (MAE, CS@5, bias) for every group of age band x gender x race and their
crossings, gender accuracy by race and age band, each with a bootstrap 95% CI and a flag for groups significantly
worse than overall."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.metrics import AGE_BAND_LABELS, age_band_index, bootstrap_ci
from faceage.evaluation.predictions import Predictions

MIN_FLAG_N = 10  # groups smaller than this are never flagged
CS_K = 5


def _factors(preds: Predictions) -> list[tuple[str, np.ndarray, Sequence[str]]]:
    """The grouping factors with any known value: ``(name, codes, labels)``."""
    out = [("age band", age_band_index(preds.age_true), AGE_BAND_LABELS)]
    for name, codes, labels in (("gender", preds.gender, GENDERS), ("race", preds.race, RACES)):
        if np.any(codes >= 0):
            out.append((name, codes, labels))
    return out


def _ci(values_fn, n: int, n_boot: int, seed: int) -> tuple[float, float]:
    return bootstrap_ci(values_fn, n, n_boot=n_boot, seed=seed) if n >= 2 else (math.nan, math.nan)


def age_group_row(abs_err: np.ndarray, err: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``n``, ``mae``, ``mae_ci``, ``cs@5``, ``cs@5_ci`` and ``bias`` of one group's errors (CIs NaN for n < 2)."""
    n = int(abs_err.size)
    hit = abs_err <= CS_K + 1e-9
    return {
        "n": n,
        "mae": float(abs_err.mean()),
        "mae_ci": _ci(lambda idx: float(abs_err[idx].mean()), n, n_boot, seed),
        "cs@5": float(hit.mean()),
        "cs@5_ci": _ci(lambda idx: float(hit[idx].mean()), n, n_boot, seed),
        "bias": float(err.mean()),
    }


def age_group_tables(preds: Predictions, n_boot: int = 1000, seed: int = 0, min_flag_n: int = MIN_FLAG_N) -> dict[str, list[dict]]:
    """Age metrics for every group of every combination of the factors (age band, gender, race).

    Args:
        preds: the predictions.
        n_boot: bootstrap resamples per CI.
        seed: bootstrap seed.
        min_flag_n: smallest group that can be flagged.

    Returns:
        Section name (``"age band"``, ``"gender"``, ..., ``"age band × gender × race"``) -> rows with ``group``
        (labels joined by " / "), ``factors`` (factor -> label), the :func:`age_group_row` numbers and
        ``flagged`` (MAE CI lower bound above the overall MAE, ``n >= min_flag_n``). Samples with an unknown
        value of a section's factor are left out of that section.
    """
    err = preds.age_pred - preds.age_true
    abs_err = np.abs(err)
    overall = float(abs_err.mean())
    factors = _factors(preds)
    tables: dict[str, list[dict]] = {}
    for size in range(1, len(factors) + 1):
        for combo in itertools.combinations(factors, size):
            rows = []
            for values in itertools.product(*(range(len(labels)) for _, _, labels in combo)):
                mask = np.ones(len(preds), dtype=bool)
                for (_, codes, _), v in zip(combo, values):
                    mask &= codes == v
                if not mask.any():
                    continue
                row = age_group_row(abs_err[mask], err[mask], n_boot, seed)
                labels = {name: labels[v] for (name, _, labels), v in zip(combo, values)}
                lo = row["mae_ci"][0]
                row["flagged"] = bool(row["n"] >= min_flag_n and not math.isnan(lo) and lo > overall)
                rows.append({"group": " / ".join(labels.values()), "factors": labels, **row})
            tables[" × ".join(name for name, _, _ in combo)] = rows
    return tables


def gender_tables(preds: Predictions, n_boot: int = 1000, seed: int = 0, min_flag_n: int = MIN_FLAG_N) -> dict[str, Any] | None:
    """Gender accuracy overall and by race and age band, with bootstrap CIs.

    A group is flagged when its accuracy CI lies wholly below the overall accuracy (``n >= min_flag_n``).

    Returns:
        ``{"overall": row, "by race": [rows], "by age band": [rows]}`` with rows ``group``, ``n``, ``accuracy``,
        ``accuracy_ci``, ``flagged``; ``None`` without gender predictions or known true gender.
    """
    if preds.gender_prob is None:
        return None
    known = preds.gender >= 0
    if not known.any():
        return None
    correct = ((preds.gender_prob >= 0.5).astype(np.int64) == preds.gender)[known]
    overall = float(correct.mean())

    def row(group: str, hits: np.ndarray) -> dict[str, Any]:
        n = int(hits.size)
        acc = float(hits.mean())
        ci = _ci(lambda idx: float(hits[idx].mean()), n, n_boot, seed)
        flagged = bool(n >= min_flag_n and not math.isnan(ci[1]) and ci[1] < overall)
        return {"group": group, "n": n, "accuracy": acc, "accuracy_ci": ci, "flagged": flagged}

    out: dict[str, Any] = {"overall": row("all", correct)}
    for name, codes, labels in (("by race", preds.race[known], RACES), ("by age band", age_band_index(preds.age_true)[known], AGE_BAND_LABELS)):
        out[name] = [row(label, correct[codes == i]) for i, label in enumerate(labels) if np.any(codes == i)]
    return out
