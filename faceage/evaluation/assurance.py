"""Age-assurance figures, computed the way NIST FATE Age Estimation & Verification (NIST IR 8525) and the
commercial age-assurance reports judge an estimator — not by MAE alone:

* **MAE averaged over sex x age cells** (each cell weighs the same, so a test set rich in young adults does not hide
  errors on children and the old) and **Acc(x)**, the share of faces estimated within ``x`` years;
* for an **over-N decision** (``pass``/``refer``): the **false positive rate** (people under N who pass; stated on the
  ages ``N-5..N-1`` and on everyone under N) and the **referral rate** of adults (people aged ``adult_age``+ sent to an
  ID check), by age, gender and race, each with a percentile-bootstrap 95% CI
  (:func:`faceage.evaluation.metrics.bootstrap_ci`);
* **interval coverage and width** by age band, gender and race;
* curves: the pass rate against true age (the "decision curve") and the FPR against the referral rate as the
  threshold on ``P(age >= N)`` moves.

Every function returns plain JSON-able values; plots are in :func:`plot_coverage_by_band`,
:func:`plot_decision_curve` and :func:`plot_fpr_referral` (matplotlib imported when called).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.metrics import AGE_BAND_LABELS, age_band_index, bootstrap_ci

ACC_YEARS: tuple[int, ...] = (1, 2, 3, 5, 10)
MINOR_WINDOW = 5
ADULT_AGE = 25


def _ci(hits: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    return bootstrap_ci(lambda idx: float(hits[idx].mean()), hits.size, n_boot=n_boot, seed=seed) if hits.size >= 2 else (math.nan, math.nan)


def cell_mae(pred: np.ndarray, true: np.ndarray, gender: np.ndarray) -> dict[str, Any]:
    """MAE averaged over the non-empty (gender x age band) cells; faces of unknown gender (-1) are left out.

    Returns:
        ``{"mae_cells": mean of cell MAEs, "n_cells", "cells": {"male/0-9": {"n", "mae"}, ...}}``.
    """
    err = np.abs(np.asarray(pred, float) - np.asarray(true, float))
    band = age_band_index(true)
    gender = np.asarray(gender)
    cells = {}
    for g, gname in enumerate(GENDERS):
        for b, bname in enumerate(AGE_BAND_LABELS):
            mask = (gender == g) & (band == b)
            if mask.any():
                cells[f"{gname}/{bname}"] = {"n": int(mask.sum()), "mae": float(err[mask].mean())}
    return {"mae_cells": float(np.mean([c["mae"] for c in cells.values()])) if cells else None, "n_cells": len(cells), "cells": cells}


def accuracy_within(pred: np.ndarray, true: np.ndarray, years: Sequence[int] = ACC_YEARS) -> dict[str, float]:
    """``{"acc@x": share of faces with |error| <= x}`` for each ``x`` in ``years``."""
    err = np.abs(np.asarray(pred, float) - np.asarray(true, float))
    return {f"acc@{x}": float(np.mean(err <= x + 1e-9)) for x in years}


def _groups(true: np.ndarray, gender: np.ndarray | None, race: np.ndarray | None) -> list[tuple[str, str, np.ndarray]]:
    """``(factor, label, mask)`` for every age band, gender and race present."""
    out = [("age band", label, age_band_index(true) == b) for b, label in enumerate(AGE_BAND_LABELS)]
    for name, codes, labels in (("gender", gender, GENDERS), ("race", race, RACES)):
        if codes is not None:
            out += [(name, label, np.asarray(codes) == i) for i, label in enumerate(labels)]
    return [g for g in out if g[2].any()]


def decision_table(passed: np.ndarray, true: np.ndarray, over: int, gender: np.ndarray | None = None, race: np.ndarray | None = None,
                   window: int = MINOR_WINDOW, adult_age: int = ADULT_AGE, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """False positive and referral rates of pass/refer decisions, overall and by age band, gender and race.

    Returns:
        ``{"over", "overall": row, "groups": [rows], "by_age": {age: pass rate}}``; a row has ``fpr`` (share of faces
        aged ``over-window..over-1`` that pass) with ``fpr_ci`` and ``n_minors``, ``fpr_all`` (everyone under
        ``over``) with ``n_under``, and ``referral`` (share aged ``adult_age``+ referred) with ``referral_ci`` and
        ``n_adults``; rates are ``None`` where a group has no such faces.
    """
    passed = np.asarray(passed, dtype=bool)
    true = np.asarray(true, dtype=np.float64)
    minors = (true >= over - window) & (true < over)
    under = true < over
    adults = true >= adult_age

    def row(mask: np.ndarray) -> dict[str, Any]:
        m, u, a = passed[mask & minors], passed[mask & under], ~passed[mask & adults]
        return {"n": int(mask.sum()), "n_minors": int(m.size), "fpr": float(m.mean()) if m.size else None, "fpr_ci": _ci(m, n_boot, seed),
                "n_under": int(u.size), "fpr_all": float(u.mean()) if u.size else None,
                "n_adults": int(a.size), "referral": float(a.mean()) if a.size else None, "referral_ci": _ci(a, n_boot, seed)}

    ages = np.round(true).astype(int)
    return {"over": int(over), "minor_ages": [int(over - window), int(over - 1)], "adult_age": int(adult_age),
            "overall": row(np.ones(true.shape, bool)),
            "groups": [{"factor": f, "group": label, **row(mask)} for f, label, mask in _groups(true, gender, race)],
            "by_age": {int(a): float(passed[ages == a].mean()) for a in np.unique(ages)}}


def interval_table(low: np.ndarray, high: np.ndarray, true: np.ndarray, gender: np.ndarray | None = None, race: np.ndarray | None = None,
                   n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Coverage (with bootstrap CI) and mean width of intervals, overall and by age band, gender and race."""
    true = np.asarray(true, dtype=np.float64)
    covered = (np.asarray(low) <= true) & (true <= np.asarray(high))
    width = np.asarray(high, float) - np.asarray(low, float)

    def row(mask: np.ndarray) -> dict[str, Any]:
        return {"n": int(mask.sum()), "coverage": float(covered[mask].mean()), "coverage_ci": _ci(covered[mask], n_boot, seed),
                "width": float(width[mask].mean())}

    return {"overall": row(np.ones(true.shape, bool)),
            "groups": [{"factor": f, "group": label, **row(mask)} for f, label, mask in _groups(true, gender, race)]}


def fpr_referral_curve(p: np.ndarray, true: np.ndarray, over: int, window: int = MINOR_WINDOW, adult_age: int = ADULT_AGE,
                       thresholds: Sequence[float] | None = None) -> dict[str, list[float]]:
    """FPR (ages ``over-window..over-1`` passing) and adult referral rate as the threshold on ``p`` moves
    (default thresholds: 0, 0.01, ..., 1)."""
    p = np.asarray(p, float)
    true = np.asarray(true, float)
    ts = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, float)
    minors = p[(true >= over - window) & (true < over)]
    adults = p[true >= adult_age]
    return {"threshold": [float(t) for t in ts],
            "fpr": [float(np.mean(minors >= t)) if minors.size else math.nan for t in ts],
            "referral": [float(np.mean(adults < t)) if adults.size else math.nan for t in ts]}


def assurance_report(pred: np.ndarray, true: np.ndarray, gender: np.ndarray | None = None, race: np.ndarray | None = None,
                     low: np.ndarray | None = None, high: np.ndarray | None = None, p_over: dict[int, np.ndarray] | None = None,
                     thresholds: dict[int, float] | None = None, challenge: float | None = 25, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All of the above for one prediction set: ``{"mae_cells", "acc", "intervals"?, "decisions": {"18": ...}}``.

    ``p_over`` maps N to ``P(age >= N)`` per face, ``thresholds`` N to the policy threshold; without a threshold
    for N only the curve is computed. ``challenge`` adds the challenge-age rule (estimate >= it) for each N."""
    out: dict[str, Any] = {"mae_cells": cell_mae(pred, true, gender if gender is not None else np.full(len(true), -1)),
                           "acc": accuracy_within(pred, true)}
    if low is not None and high is not None:
        out["intervals"] = interval_table(low, high, true, gender, race, n_boot, seed)
    decisions = {}
    for over, p in (p_over or {}).items():
        entry: dict[str, Any] = {"curve": fpr_referral_curve(p, true, over)}
        t = (thresholds or {}).get(over)
        if t is not None:
            entry["policy"] = {"threshold": float(t), **decision_table(np.asarray(p) >= t, true, over, gender, race, n_boot=n_boot, seed=seed)}
        if challenge is not None:
            entry["challenge"] = {"age": float(challenge), **decision_table(np.asarray(pred) >= challenge, true, over, gender, race,
                                                                             n_boot=n_boot, seed=seed)}
        decisions[str(int(over))] = entry
    out["decisions"] = decisions
    return out


# ------------------------------------------------------------------------------------------------ plots


def plot_coverage_by_band(intervals: dict[str, Any], path: str | Path, level: float | None = None) -> Path:
    """Bars of interval coverage (with CI) by true age band, the nominal level as a line."""
    from faceage.evaluation.plots import _save, plt

    rows = [r for r in intervals["groups"] if r["factor"] == "age band"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    cov = np.array([r["coverage"] for r in rows])
    ci = np.array([r["coverage_ci"] for r in rows], float)
    ax.bar(x, cov, color="#4c72b0", yerr=np.nan_to_num(np.abs(ci.T - cov)), capsize=3)
    if level is not None:
        ax.axhline(level, color="k", ls="--", lw=1, label=f"nominal {level:g}")
        ax.legend(loc="lower right")
    ax.set_xticks(x, [f"{r['group']}\n{r['width']:.0f}y" for r in rows])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("coverage")
    ax.set_title("Interval coverage by true age (mean width below)")
    return _save(fig, path)


def plot_decision_curve(by_age: dict[int, float], over: int, path: str | Path, label: str = "policy", other: dict[int, float] | None = None,
                        other_label: str = "challenge") -> Path:
    """Share of faces that pass against their true age; the age checked as a vertical line."""
    from faceage.evaluation.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for curve, name, style in ((by_age, label, "-"), (other, other_label, "--")):
        if curve:
            ages = sorted(int(a) for a in curve)
            ax.plot(ages, [curve[a] if a in curve else curve[str(a)] for a in ages], style, label=name)
    ax.axvline(over, color="k", lw=1)
    ax.set_xlabel("true age")
    ax.set_ylabel("pass rate")
    ax.set_xlim(0, 80)
    ax.set_title(f"Over-{over} decision curve")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_fpr_referral(curve: dict[str, list[float]], over: int, path: str | Path, point: tuple[float, float] | None = None) -> Path:
    """FPR (minors passing) against the adult referral rate as the threshold moves; the policy as a dot."""
    from faceage.evaluation.plots import _save, plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(curve["referral"], curve["fpr"], "-", color="#4c72b0")
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="#c44e52", label="policy")
        ax.legend()
    ax.set_xlabel("referral rate of adults")
    ax.set_ylabel(f"FPR (ages {over - MINOR_WINDOW}-{over - 1} passing)")
    ax.set_title(f"Over-{over}: error trade-off")
    return _save(fig, path)
