"""Fitting the age-assurance calibration of a model on faces it did not train on (``faceage calibrate``,
:mod:`faceage.cli.calibrate`).

Two things are fitted and stored under ``config["calibration"]`` (the applied side, and the stored form, are in
:mod:`faceage.inference.calibration`):

* **Calibrated intervals** — split-conformal quantile regression (CQR; Romano, Patterson & Candès, NeurIPS 2019)
  on the central quantile interval ``[q_lo, q_hi]`` of the head's age distribution, Mondrian by the band of the
  *predicted* age (Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World", 2005; label-/category-
  conditional conformal prediction): in each band, conformity scores ``E_i = max(q_lo - y_i, y_i - q_hi)`` of the
  calibration faces and the offset ``Q = the ceil((n + 1) * level)``-th smallest score, so that a new face of that
  band is covered with probability at least ``level`` (exchangeability assumed). Hand-written (a sort and an
  index per band; no conformal library handles a per-face discrete distribution as the base predictor) — the
  method is the paper's Eq. (5)-(6) applied per band. Which raw interval is conformalized (its ``base_level``) is
  free; ``--base-level auto`` picks, among a few, the one whose conformalized intervals are narrowest by 2-fold
  cross-fitting on the calibration faces (fit on one half, measure the width on the other), then fits the offsets on
  all of them. Choosing among five candidates on the same data bends the finite-sample guarantee slightly; the
  measured coverage on held-out faces is in benchmarks/RESULTS.md.
* **Over-N policies** — ``pass`` when ``P(age >= N) >= t``: ``t`` is the smallest threshold at which at most
  ``max_fpr`` of the calibration faces aged ``N-5..N-1`` pass (the NIST FATE-AEV / age-assurance way of stating a
  decision by its error rate on the people just under the line). The measured false positive rate carries its
  exact (Clopper-Pearson, via ``scipy.stats.binomtest``) 95% upper bound, since a share of a few hundred minors is
  noisy; the pass rate of people aged ``adult_age`` and over is reported as the cost (1 - it = referral rate).
  Challenge-age rules (pass when the estimate is >= 25) are measured on the same faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceage.inference.calibration import (
    CALIBRATION_KEY,
    DEFAULT_LEVEL,
    Calibration,
    band_labels,
    band_of,
    base_interval,
    interval_key,
    p_over,
    spread,
)

DEFAULT_BANDS: tuple[tuple[int, int], ...] = ((0, 9), (10, 19), (20, 29), (30, 44), (45, 59), (60, 200))
MIN_BAND_N = 30  # a band with fewer calibration faces takes the pooled offset (its own would be mostly noise)
MINOR_WINDOW = 5  # the policy is stated on the faces aged N-5..N-1
ADULT_AGE = 25
DEFAULT_MAX_FPR = 0.01
DEFAULT_CHALLENGES = (25,)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) * level)``-th smallest of ``n`` scores; ``inf`` when that
    rank exceeds ``n`` (too few scores for the level: the interval must be the whole range)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((scores.size + 1) * level)
    return math.inf if rank > scores.size else float(scores[rank - 1])


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """Upper end of the exact (Clopper-Pearson) ``confidence`` interval of a rate of ``k`` in ``n``."""
    from scipy.stats import binomtest

    return float(binomtest(int(k), int(n)).proportion_ci(confidence, method="exact").high) if n else 1.0


def fit_intervals(dist: np.ndarray, ages: np.ndarray, true: np.ndarray, min_age: int = 0, max_age: int = 110,
                  level: float = DEFAULT_LEVEL, bands: Sequence[Sequence[int]] = DEFAULT_BANDS, base_level: float | None = None,
                  min_band_n: int = MIN_BAND_N, scale: str | None = None) -> dict[str, Any]:
    """Mondrian CQR offsets for one coverage ``level`` (see the module docstring).

    Args:
        dist: ``(N, K)`` age distributions over ``min_age..``.
        ages: ``(N,)`` predicted ages (they choose the band).
        true: ``(N,)`` true ages.
        base_level: level of the raw central interval that is conformalized (default ``level``).
        min_band_n: bands with fewer faces use the offset of all faces pooled.
        scale: ``"std"`` divides each score by the distribution's spread
            (:func:`faceage.inference.calibration.spread`): normalised scores, intervals wider where the head is unsure.

    Returns:
        ``{"level", "base_level", "offsets": {band: Q}, "n": {band: n}, "pooled_offset"}`` (and ``"scale"``).
    """
    base_level = level if base_level is None else base_level
    if scale not in (None, "none", "std"):
        raise ValueError(f"scale must be 'none' or 'std', got {scale!r}")
    true = np.asarray(true, dtype=np.float64)
    lo, hi = base_interval(dist, min_age, base_level)
    scores = np.maximum(lo - true, true - hi)
    if scale == "std":
        scores = scores / spread(dist, min_age)
    span = float(max_age - min_age)
    pooled = min(conformal_quantile(scores, level), span)
    band = band_of(ages, bands)
    offsets, counts = {}, {}
    for b, label in enumerate(band_labels([list(x) for x in bands])):
        mine = scores[band == b]
        counts[label] = int(mine.size)
        offsets[label] = pooled if mine.size < min_band_n else min(conformal_quantile(mine, level), span)
    out = {"level": float(level), "base_level": float(base_level), "offsets": offsets, "n": counts, "pooled_offset": pooled}
    if scale == "std":
        out["scale"] = "std"
    return out


BASE_LEVEL_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9)


def choose_base_level(dist: np.ndarray, ages: np.ndarray, true: np.ndarray, min_age: int = 0, max_age: int = 110, level: float = DEFAULT_LEVEL,
                      bands: Sequence[Sequence[int]] = DEFAULT_BANDS, candidates: Sequence[float] = BASE_LEVEL_CANDIDATES,
                      seed: int = 0, scale: str | None = None) -> tuple[float, dict[str, float]]:
    """The base level whose conformalized ``level`` intervals are narrowest, by 2-fold cross-fitting on the
    calibration faces (seeded halves); returns ``(base level, {candidate: mean width})``. Ties go to the higher level."""
    true = np.asarray(true, dtype=np.float64)
    half = np.random.default_rng(seed).permutation(len(true)) < len(true) // 2
    widths: dict[str, float] = {}
    for base in sorted({*map(float, candidates), float(level)}):
        total = 0.0
        for fit_on in (half, ~half):
            fit = fit_intervals(dist[fit_on], ages[fit_on], true[fit_on], min_age, max_age, level, bands, base, scale=scale)
            lo, hi = Calibration({"bands": [list(b) for b in bands], "intervals": {interval_key(level): fit}}, min_age, max_age).intervals(
                dist[~fit_on], ages[~fit_on], level)
            total += float(np.sum(hi - lo))
        widths[interval_key(base)] = total / len(true)
    best = min(widths.items(), key=lambda kv: (round(kv[1], 9), -float(kv[0])))[0]
    return float(best), widths


def coverage_table(low: np.ndarray, high: np.ndarray, true: np.ndarray, bands: Sequence[Sequence[int]] = DEFAULT_BANDS) -> dict[str, Any]:
    """Coverage and mean width of intervals, overall and by band of the *true* age:
    ``{"overall": {"n", "coverage", "width"}, "bands": {label: {...}}}``."""
    true = np.asarray(true, dtype=np.float64)
    covered = (low <= true) & (true <= high)
    width = np.asarray(high, dtype=np.float64) - low

    def row(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        return {"n": n, "coverage": float(covered[mask].mean()) if n else None, "width": float(width[mask].mean()) if n else None}

    band = band_of(true, bands)
    return {"overall": row(np.ones(true.shape, bool)),
            "bands": {label: row(band == b) for b, label in enumerate(band_labels([list(x) for x in bands]))}}


def decision_rates(passed: np.ndarray, true: np.ndarray, over: int, window: int = MINOR_WINDOW, adult_age: int = ADULT_AGE) -> dict[str, Any]:
    """Error rates of pass/refer decisions: ``fpr`` (share of faces aged ``over-window..over-1`` that pass) with
    its exact 95% upper bound, ``adult_pass`` (share aged ``adult_age``+ that pass) and ``under_pass`` (share of
    everyone under ``over`` that passes)."""
    true = np.asarray(true, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    minors = (true >= over - window) & (true < over)
    adults = true >= adult_age
    under = true < over
    k = int(passed[minors].sum())
    return {
        "n_minors": int(minors.sum()),
        "fpr": float(passed[minors].mean()) if minors.any() else None,
        "fpr_upper95": upper_bound(k, int(minors.sum())),
        "n_adults": int(adults.sum()),
        "adult_pass": float(passed[adults].mean()) if adults.any() else None,
        "n_under": int(under.sum()),
        "under_pass": float(passed[under].mean()) if under.any() else None,
    }


def choose_threshold(p: np.ndarray, max_fpr: float) -> float:
    """The smallest threshold ``t`` such that at most ``max_fpr`` of the scores ``p`` are ``>= t``: just above
    the ``(floor(max_fpr * n) + 1)``-th largest score (ties with it fail too)."""
    s = np.sort(np.asarray(p, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no calibration faces under the age checked: cannot state a false positive rate")
    k = math.floor(max_fpr * s.size + 1e-9)
    return float(s[-1]) if k >= s.size else float(np.nextafter(s[k], np.inf))


def fit_over_policy(p: np.ndarray, ages: np.ndarray, true: np.ndarray, over: int, max_fpr: float = DEFAULT_MAX_FPR,
                    window: int = MINOR_WINDOW, adult_age: int = ADULT_AGE,
                    challenges: Sequence[float] = DEFAULT_CHALLENGES, groups: Sequence[str] | None = None) -> dict[str, Any]:
    """The over-``over`` policy: threshold on ``p`` (``P(age >= over)``) from the faces aged ``over-window..over-1``
    (:func:`choose_threshold`), its measured rates (:func:`decision_rates`), and the rates of each challenge age
    rule ``age >= c`` on the same faces.

    With ``groups`` (each face's dataset), the threshold is the strictest of the groups' own thresholds, so the stated
    false-pass rate holds in each dataset and not only on their pool; each group's rates are under ``"by_dataset"``."""
    true = np.asarray(true, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    minors = (true >= over - window) & (true < over)
    threshold = choose_threshold(p[minors], max_fpr)
    g = None if groups is None else np.asarray(groups)
    if g is not None:
        for name in dict.fromkeys(g.tolist()):
            if (minors & (g == name)).any():
                threshold = max(threshold, choose_threshold(p[minors & (g == name)], max_fpr))
    out = {"over": int(over), "threshold": threshold, "max_fpr": float(max_fpr), "minor_ages": [int(over - window), int(over - 1)],
           "adult_age": int(adult_age), **decision_rates(p >= threshold, true, over, window, adult_age)}
    if g is not None:
        out["by_dataset"] = {str(name): decision_rates(p[g == name] >= threshold, true[g == name], over, window, adult_age)
                             for name in dict.fromkeys(g.tolist())}
    out["challenge"] = {interval_key(c): decision_rates(np.asarray(ages, dtype=np.float64) >= c, true, over, window, adult_age)
                        for c in challenges}
    return out


def fit_calibration(dist: np.ndarray, ages: np.ndarray, true: np.ndarray, min_age: int = 0, max_age: int = 110,
                    levels: Sequence[float] = (DEFAULT_LEVEL,), overs: Sequence[int] = (18,), max_fpr: float = DEFAULT_MAX_FPR,
                    bands: Sequence[Sequence[int]] = DEFAULT_BANDS, base_level: float | str | None = None,
                    challenges: Sequence[float] = DEFAULT_CHALLENGES, data: str = "", scale: str | None = None,
                    groups: Sequence[str] | None = None) -> dict[str, Any]:
    """The whole ``config["calibration"]`` dict: intervals at each level (with their fitted coverage table) and a
    policy for each ``over``. ``base_level``: ``None`` conformalizes the raw interval of the same level, ``"auto"``
    the one :func:`choose_base_level` picks. ``scale``: ``"std"`` for normalised scores (:func:`fit_intervals`).
    ``groups``: each face's dataset; the over-N threshold then holds ``max_fpr`` in every group
    (:func:`fit_over_policy`)."""
    cal: dict[str, Any] = {"method": "mondrian-cqr" + ("-normalized" if scale == "std" else ""), "band_by": "predicted_age",
                           "bands": [list(map(int, b)) for b in bands], "n": len(true), "data": data, "intervals": {}, "verify": {}}
    for level in levels:
        widths = None
        base = base_level
        if base_level == "auto":
            base, widths = choose_base_level(dist, ages, true, min_age, max_age, level, bands, scale=scale)
        fit = fit_intervals(dist, ages, true, min_age, max_age, level, bands, base, scale=scale)
        if widths is not None:
            fit["base_level_widths"] = widths  # cross-fitted mean width of each candidate
        cal["intervals"][interval_key(level)] = fit
        lo, hi = Calibration(cal, min_age, max_age).intervals(dist, ages, level)
        fit["fitted"] = coverage_table(lo, hi, true, bands)
        if groups is not None:
            g = np.asarray(groups)
            fit["fitted_by_dataset"] = {str(name): coverage_table(lo[g == name], hi[g == name], true[g == name], bands)["overall"]
                                        for name in dict.fromkeys(g.tolist())}
    for over in overs:
        cal["verify"][str(int(over))] = fit_over_policy(p_over(dist, min_age, over), ages, true, over, max_fpr, challenges=challenges, groups=groups)
    return cal


def write_calibration(model_dir: str | Path, calibration: dict[str, Any]) -> Path:
    """Stores ``calibration`` under ``"calibration"`` in ``MODEL_DIR/config.json`` (atomically: readers see the old
    or the new file, never half of one)."""
    from faceage.models.config import read_model_config
    from faceage.models.files import CONFIG_NAME, write_config

    config = read_model_config(Path(model_dir) / CONFIG_NAME)
    config[CALIBRATION_KEY] = calibration
    return write_config(model_dir, config)


# ------------------------------------------------------------------------------------------- calibration data


def collect(predictor: Any, paths: Sequence[str], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Runs ``predictor`` over ``paths`` -> ``(distributions, predicted ages, true ages, problems)``; a file that
    fails is one problem line and is left out."""
    dists, ages, kept, problems = [], [], [], []
    for age, result in zip(true, predictor.predict_files(paths), strict=True):
        if result.error or not result.faces:
            problems.append(f"{result.path}: {result.error or 'no face found'}")
            continue
        face = result.faces[0]
        if face.distribution is None:
            raise ValueError("the model's head has no age distribution: nothing to calibrate")
        dists.append(np.asarray(face.distribution, dtype=np.float64))
        ages.append(face.age)
        kept.append(age)
    if not dists:
        raise ValueError("no usable faces (every image failed)")
    return np.stack(dists), np.asarray(ages, dtype=np.float64), np.asarray(kept, dtype=np.float64), problems


def calibration_records(dataset: str, data: str | Path, split_name: str = "val", split_file: str | Path | None = None,
                        names: str | Path | None = None) -> tuple[list[Any], list[str]]:
    """The records to calibrate on, and warnings about the selection (for the user).

    Args:
        dataset: reader name (``faceage.data.readers.READERS``).
        data: dataset folder.
        split_name: ``val``, ``test``, ``train`` or ``all`` of the datamodule's seeded split (or of ``split_file``).
        split_file: a ``split.json`` saved by training.
        names: a file listing the image names (one a line, relative to ``data``) to use instead of a split.
    """
    from faceage.data.readers import read_dataset
    from faceage.evaluation.predictions import select_records

    warnings: list[str] = []
    records, report = read_dataset(dataset, data)
    if report.n_skipped or report.dropped:
        warnings.append(report.summary())
    if names:
        wanted = {line.strip() for line in Path(names).read_text().splitlines() if line.strip()}
        root = Path(data)
        chosen = [r for r in records if Path(r.path).name in wanted or str(Path(r.path).relative_to(root)) in wanted]
        missing = len(wanted) - len(chosen)
        if missing > 0:
            warnings.append(f"{names}: {missing} listed name(s) not found in {data}")
        return chosen, warnings
    return select_records(records, split_name, split_file=split_file), warnings
