"""Fitting the age-assurance calibration of a model (``faceage calibrate``) on faces it did not train on.

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

import argparse
import json
import math
import sys
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
                  min_band_n: int = MIN_BAND_N) -> dict[str, Any]:
    """Mondrian CQR offsets for one coverage ``level`` (see the module docstring).

    Args:
        dist: ``(N, K)`` age distributions over ``min_age..``.
        ages: ``(N,)`` predicted ages (they choose the band).
        true: ``(N,)`` true ages.
        base_level: level of the raw central interval that is conformalized (default ``level``).
        min_band_n: bands with fewer faces use the offset of all faces pooled.

    Returns:
        ``{"level", "base_level", "offsets": {band: Q}, "n": {band: n}, "pooled_offset"}``.
    """
    base_level = level if base_level is None else base_level
    true = np.asarray(true, dtype=np.float64)
    lo, hi = base_interval(dist, min_age, base_level)
    scores = np.maximum(lo - true, true - hi)
    span = float(max_age - min_age)
    pooled = min(conformal_quantile(scores, level), span)
    band = band_of(ages, bands)
    offsets, counts = {}, {}
    for b, label in enumerate(band_labels([list(x) for x in bands])):
        mine = scores[band == b]
        counts[label] = int(mine.size)
        offsets[label] = pooled if mine.size < min_band_n else min(conformal_quantile(mine, level), span)
    return {"level": float(level), "base_level": float(base_level), "offsets": offsets, "n": counts, "pooled_offset": pooled}


BASE_LEVEL_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9)


def choose_base_level(dist: np.ndarray, ages: np.ndarray, true: np.ndarray, min_age: int = 0, max_age: int = 110, level: float = DEFAULT_LEVEL,
                      bands: Sequence[Sequence[int]] = DEFAULT_BANDS, candidates: Sequence[float] = BASE_LEVEL_CANDIDATES,
                      seed: int = 0) -> tuple[float, dict[str, float]]:
    """The base level whose conformalized ``level`` intervals are narrowest, by 2-fold cross-fitting on the
    calibration faces (seeded halves); returns ``(base level, {candidate: mean width})``. Ties go to the higher level."""
    true = np.asarray(true, dtype=np.float64)
    half = np.random.default_rng(seed).permutation(len(true)) < len(true) // 2
    widths: dict[str, float] = {}
    for base in sorted({*map(float, candidates), float(level)}):
        total = 0.0
        for fit_on in (half, ~half):
            fit = fit_intervals(dist[fit_on], ages[fit_on], true[fit_on], min_age, max_age, level, bands, base)
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
                    challenges: Sequence[float] = DEFAULT_CHALLENGES) -> dict[str, Any]:
    """The over-``over`` policy: threshold on ``p`` (``P(age >= over)``) from the faces aged ``over-window..over-1``
    (:func:`choose_threshold`), its measured rates (:func:`decision_rates`), and the rates of each challenge age
    rule ``age >= c`` on the same faces."""
    true = np.asarray(true, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    minors = (true >= over - window) & (true < over)
    threshold = choose_threshold(p[minors], max_fpr)
    out = {"over": int(over), "threshold": threshold, "max_fpr": float(max_fpr), "minor_ages": [int(over - window), int(over - 1)],
           "adult_age": int(adult_age), **decision_rates(p >= threshold, true, over, window, adult_age)}
    out["challenge"] = {interval_key(c): decision_rates(np.asarray(ages, dtype=np.float64) >= c, true, over, window, adult_age)
                        for c in challenges}
    return out


def fit_calibration(dist: np.ndarray, ages: np.ndarray, true: np.ndarray, min_age: int = 0, max_age: int = 110,
                    levels: Sequence[float] = (DEFAULT_LEVEL,), overs: Sequence[int] = (18,), max_fpr: float = DEFAULT_MAX_FPR,
                    bands: Sequence[Sequence[int]] = DEFAULT_BANDS, base_level: float | str | None = None,
                    challenges: Sequence[float] = DEFAULT_CHALLENGES, data: str = "") -> dict[str, Any]:
    """The whole ``config["calibration"]`` dict: intervals at each level (with their fitted coverage table) and a
    policy for each ``over``. ``base_level``: ``None`` conformalizes the raw interval of the same level, ``"auto"``
    the one :func:`choose_base_level` picks."""
    cal: dict[str, Any] = {"method": "mondrian-cqr", "band_by": "predicted_age", "bands": [list(map(int, b)) for b in bands],
                           "n": int(len(true)), "data": data, "intervals": {}, "verify": {}}
    for level in levels:
        widths = None
        base = base_level
        if base_level == "auto":
            base, widths = choose_base_level(dist, ages, true, min_age, max_age, level, bands)
        fit = fit_intervals(dist, ages, true, min_age, max_age, level, bands, base)
        if widths is not None:
            fit["base_level_widths"] = widths  # cross-fitted mean width of each candidate
        cal["intervals"][interval_key(level)] = fit
        lo, hi = Calibration(cal, min_age, max_age).intervals(dist, ages, level)
        fit["fitted"] = coverage_table(lo, hi, true, bands)
    p_cache = {}
    for over in overs:
        p_cache[over] = p_over(dist, min_age, over)
        cal["verify"][str(int(over))] = fit_over_policy(p_cache[over], ages, true, over, max_fpr, challenges=challenges)
    return cal


def write_calibration(model_dir: str | Path, calibration: dict[str, Any]) -> Path:
    """Stores ``calibration`` under ``"calibration"`` in ``MODEL_DIR/config.json`` (atomically: readers see the old
    or the new file, never half of one)."""
    from faceage._io import write_text_atomic

    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text())
    config[CALIBRATION_KEY] = calibration
    write_text_atomic(path, json.dumps(config, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ command


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


def _table_lines(cal: dict[str, Any]) -> list[str]:
    lines = []
    for key, fit in cal["intervals"].items():
        t = fit["fitted"]
        lines.append(f"level {key} (from the raw {fit['base_level']:g} interval): coverage {t['overall']['coverage']:.3f}, "
                     f"mean width {t['overall']['width']:.1f} years (n={t['overall']['n']}); "
                     "offsets by predicted band: " + ", ".join(f"{b} {q:+g}" for b, q in fit["offsets"].items()))
        lines.append("  by true age: " + ", ".join(f"{b} {r['coverage']:.3f}/{r['width']:.1f}y (n={r['n']})" for b, r in t["bands"].items() if r["n"]))
    from faceage.inference.calibration import policy_text

    for over, policy in cal["verify"].items():
        lines.append(policy_text(policy, int(over)))
        for c in policy["challenge"]:
            lines.append("  " + policy_text(policy, int(over), challenge=float(c)))
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage calibrate", description=(
        "Fit calibrated age intervals (Mondrian split-conformal CQR) and over-N decision thresholds on labelled faces "
        "the model did not train on, and store them in the model's config.json."))
    p.add_argument("model", help="model directory (its config.json is updated)")
    p.add_argument("--data", required=True, help="dataset folder of aligned face chips")
    p.add_argument("--dataset", default="utkface", help="dataset reader (default: utkface)")
    p.add_argument("--split", default=None, help="a split.json saved by training (default: the datamodule's seeded split)")
    p.add_argument("--split-name", default="val", choices=["val", "test", "train", "all"], help="which split to fit on (default: val)")
    p.add_argument("--names", default=None, help="a file listing the image names (one a line, relative to --data) to fit on instead of a split")
    p.add_argument("--level", type=float, nargs="+", default=[DEFAULT_LEVEL], help="interval coverage(s) to fit (default 0.9)")
    p.add_argument("--base-level", default="auto",
                   help="level of the raw interval that is conformalized: a number, or auto (default: the narrowest by cross-fitting)")
    p.add_argument("--over", type=int, nargs="+", default=[18], help="ages N to fit over-N policies for (default 18)")
    p.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR, help="largest share of people aged N-5..N-1 that may pass (default 0.01)")
    p.add_argument("--challenge", type=float, nargs="*", default=list(DEFAULT_CHALLENGES), help="challenge ages measured beside each policy")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto", help="auto: onnx when the model has model.onnx")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--describe", default=None, help="what the faces are, stored with the calibration (default: the data, split and count)")
    p.add_argument("--dry-run", action="store_true", help="fit and print, but do not write config.json")
    return p


def _records(args: argparse.Namespace) -> list[Any]:
    from faceage.data.readers import read_dataset
    from faceage.evaluation.report import select_records

    records, report = read_dataset(args.dataset, args.data)
    if report.n_skipped or report.dropped:
        print(f"warning: {report.summary()}", file=sys.stderr)
    if args.names:
        wanted = {line.strip() for line in Path(args.names).read_text().splitlines() if line.strip()}
        root = Path(args.data)
        chosen = [r for r in records if Path(r.path).name in wanted or str(Path(r.path).relative_to(root)) in wanted]
        missing = len(wanted) - len(chosen)
        if missing > 0:
            print(f"warning: {args.names}: {missing} listed name(s) not found in {args.data}", file=sys.stderr)
        return chosen
    return select_records(records, args.split_name, split_file=args.split)


def main(argv: list[str] | None = None) -> int:
    """``faceage calibrate``. Exit status 0 on success, 2 on bad arguments or unusable inputs."""
    parser = _parser()
    args = parser.parse_args(argv)
    if any(not 0 < v < 1 for v in args.level) or not 0 <= args.max_fpr < 1:
        parser.error("--level must be in (0, 1) and --max-fpr in [0, 1)")
    if args.base_level != "auto":
        try:
            args.base_level = float(args.base_level)
        except ValueError:
            parser.error(f"--base-level must be a number or auto, got {args.base_level!r}")
        if not 0 < args.base_level < 1:
            parser.error("--base-level must be in (0, 1)")
    from faceage.inference.predictor import Predictor

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"error: {model_dir}: not a model directory (no config.json)", file=sys.stderr)
        return 2
    engine = args.engine if args.engine != "auto" else ("onnx" if (model_dir / "model.onnx").exists() else "torch")
    try:
        records = [r for r in _records(args) if r.age is not None]
        if not records:
            raise ValueError(f"{args.data}: no labelled faces selected")
        predictor = Predictor(model_dir, engine=engine, detect=False, batch_size=args.batch_size, workers=args.workers, calibrated=False)
        dist, ages, true, problems = collect(predictor, [r.path for r in records], [r.age for r in records])
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        config = predictor.config
        what = f"{args.dataset} {args.data} " + (f"names {args.names}" if args.names else f"{args.split_name} split" + (f" of {args.split}" if args.split else ""))
        cal = fit_calibration(dist, ages, true, int(config.get("min_age", 0)), int(config.get("max_age", 110)), args.level, args.over,
                              args.max_fpr, base_level=args.base_level, challenges=args.challenge,
                              data=f"{args.describe or what} ({len(true)} faces, engine {engine})")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in _table_lines(cal):
        print(line)
    if not args.dry_run:
        print(f"wrote the calibration into {write_calibration(model_dir, cal)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
