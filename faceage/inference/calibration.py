"""Age assurance at inference: calibrated age intervals, ``P(age >= N)`` and over-N decisions, read from the
``"calibration"`` key of a model's ``config.json`` (written by ``faceage calibrate``,
:mod:`faceage.evaluation.calibration`). NumPy only, so the ONNX engine's predictor and the app use it without torch.

Intervals: split-conformal quantile regression (CQR, Romano, Patterson & Candès, "Conformalized Quantile
Regression", NeurIPS 2019) on the central quantile interval of the head's age distribution, made *Mondrian*
(Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World", 2005, ch. 4; Vovk et al. 2003 "Mondrian
confidence machine"): one conformal offset per band of the *predicted* age, so that coverage holds for children
and adults alike instead of only on average. For a face whose predicted age falls in band ``b`` the interval is
``[q_lo - Q_b, q_hi + Q_b]`` where ``[q_lo, q_hi]`` is the distribution's central ``base_level`` interval and
``Q_b`` the fitted offset (negative offsets narrow the interval). With ``"scale": "std"`` the offsets are in units of
the distribution's standard deviation (:func:`spread`): ``[q_lo - Q_b s, q_hi + Q_b s]``, wider where the head is
unsure.

Over-N decisions: ``pass`` when ``P(age >= N) >= threshold`` (the policy's threshold, fitted so that at most a
stated share of calibration faces aged ``N-5..N-1`` pass), else ``refer`` (check ID); or, in challenge-age mode,
``pass`` when the estimated age is at least the challenge age (the retail "Challenge 25" rule).

Models without a calibration behave as before: the interval is read straight off the raw distribution.

Stored form (``config["calibration"]``)::

    {"method": "mondrian-cqr", "bands": [[0, 9], [10, 19], ...], "band_by": "predicted_age",
     "intervals": {"0.9": {"level": 0.9, "base_level": 0.9, "offsets": {"0-9": 13, ...}, "n": {...},
                           "fitted_coverage": {...}, "fitted_width": {...}}},
     "verify": {"18": {"over": 18, "threshold": 0.97, "fpr": 0.009, "fpr_upper95": 0.03, "n_minors": 120,
                       "minor_ages": [13, 17], "adult_pass": 0.6, "n_adults": 3000, ...}},
     "data": "what it was fitted on"}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CALIBRATION_KEY = "calibration"
DEFAULT_LEVEL = 0.9
DEFAULT_OVER = 18


def interval_from_distribution(dist: np.ndarray, min_age: int, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """``(B, K)`` probabilities over ``min_age..`` -> central ``level`` interval bounds ``(B,)``, ``(B,)``."""
    cdf = np.cumsum(dist, axis=1)
    k = dist.shape[1] - 1
    lo = np.minimum((cdf < (1 - level) / 2).sum(axis=1), k)
    hi = np.minimum((cdf < 1 - (1 - level) / 2).sum(axis=1), k)
    return lo + min_age, hi + min_age


def interval_key(level: float) -> str:
    """The key of a level in ``calibration["intervals"]``: ``0.9 -> "0.9"``."""
    return f"{float(level):g}"


def band_labels(bands: list[list[int]] | list[tuple[int, int]]) -> list[str]:
    """``[[0, 9], [60, 200]] -> ["0-9", "60+"]`` (an upper end of 120 or more reads as open)."""
    return [f"{lo}+" if hi >= 120 else f"{lo}-{hi}" for lo, hi in bands]


def band_of(ages: np.ndarray, bands: list[list[int]] | list[tuple[int, int]]) -> np.ndarray:
    """Band index of each age (rounded to whole years; below the first band -> 0, above the last -> last)."""
    starts = np.array([lo for lo, _ in bands[1:]], dtype=np.float64)
    return np.searchsorted(starts, np.round(np.asarray(ages, dtype=np.float64)), side="right")


def p_over(dist: np.ndarray, min_age: int, age: float) -> np.ndarray:
    """``(B, K)`` probabilities over ``min_age..`` -> ``P(age >= N)`` ``(B,)`` (the mass of the ages ``N`` and
    over; ``N`` is rounded up to a whole year, since the distribution is over whole years)."""
    dist = np.asarray(dist, dtype=np.float64)
    start = int(np.ceil(age)) - int(min_age)
    if start <= 0:
        return np.ones(dist.shape[0])
    return np.clip(dist[:, start:].sum(axis=1), 0.0, 1.0)


def spread(dist: np.ndarray, min_age: int = 0, floor: float = 1.0) -> np.ndarray:
    """Standard deviation of each ``(B, K)`` age distribution, at least ``floor`` years: how unsure the head is.
    Normalised conformal scores divide by it, so intervals widen where the model is unsure (e.g. on faces unlike
    its training faces) and narrow where it is sure (Papadopoulos et al. 2008, "normalized nonconformity")."""
    dist = np.asarray(dist, dtype=np.float64)
    ages = np.arange(dist.shape[1], dtype=np.float64) + min_age
    mean = dist @ ages
    var = np.clip(dist @ ages**2 - mean**2, 0.0, None)
    return np.maximum(np.sqrt(var), floor)


def base_interval(dist: np.ndarray, min_age: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The raw central ``level`` interval (what uncalibrated models report); see
    :func:`interval_from_distribution`."""
    return interval_from_distribution(np.asarray(dist, dtype=np.float64), min_age, level)


@dataclass
class AgeDecision:
    """An over-N decision for one face.

    Attributes:
        face: index of the face in its image.
        age: estimated age.
        over: the age ``N`` checked.
        decision: ``"pass"`` (confidently ``N`` or over) or ``"refer"`` (check ID).
        p_over: ``P(age >= N)`` from the model's distribution (``None`` for a model without one).
        rule: ``"p_over>=0.9671"`` or ``"age>=25"``: what was compared.
        policy: short name of the policy (``"fpr<=0.01@13-17"``, ``"challenge25"``).
    """

    face: int
    age: float
    over: int
    decision: str
    p_over: float | None
    rule: str
    policy: str

    def to_dict(self) -> dict:
        return asdict(self)


class Calibration:
    """The stored calibration of a model, applied.

    Args:
        config: the ``"calibration"`` dict of a model config.
        min_age: the model's youngest age.
        max_age: the model's oldest age (intervals are clipped to ``min_age..max_age``).
    """

    def __init__(self, config: dict[str, Any], min_age: int = 0, max_age: int = 110) -> None:
        self.config = config
        self.min_age = int(min_age)
        self.max_age = int(max_age)
        self.bands = [list(b) for b in config["bands"]]
        self.labels = band_labels(self.bands)

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> Calibration | None:
        """The calibration of a model config, or ``None`` when it has none."""
        cal = config.get(CALIBRATION_KEY)
        return None if not cal else cls(cal, int(config.get("min_age", 0)), int(config.get("max_age", 110)))

    @property
    def levels(self) -> list[float]:
        return sorted(float(v["level"]) for v in self.config.get("intervals", {}).values())

    def has_level(self, level: float) -> bool:
        return interval_key(level) in self.config.get("intervals", {})

    def intervals(self, dist: np.ndarray, ages: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated ``level`` interval bounds ``(B,)``, ``(B,)`` from distributions ``(B, K)`` and the predicted
        ages ``(B,)`` (which choose the band). Raises ``KeyError`` when ``level`` was not fitted."""
        fit = self.config["intervals"][interval_key(level)]
        lo, hi = base_interval(dist, self.min_age, float(fit.get("base_level", level)))
        offsets = np.array([float(fit["offsets"][label]) for label in self.labels])
        q = offsets[band_of(ages, self.bands)]
        if fit.get("scale") == "std":  # offsets in units of the distribution's spread
            q = q * spread(dist, self.min_age)
        return np.clip(lo - q, self.min_age, self.max_age), np.clip(hi + q, self.min_age, self.max_age)

    def policy(self, over: int = DEFAULT_OVER) -> dict[str, Any] | None:
        """The fitted over-``over`` policy (threshold and measured error rates), or ``None``."""
        return self.config.get("verify", {}).get(str(int(over)))


def decide(p: np.ndarray | None, ages: np.ndarray, over: int, threshold: float | None = None, challenge: float | None = None) -> tuple[np.ndarray, str]:
    """Pass (``True``) / refer (``False``) per face and the rule text. ``challenge``: pass when the estimated age is
    at least ``challenge``; else pass when ``P(age >= over) >= threshold``."""
    if challenge is not None:
        return np.asarray(ages, dtype=np.float64) >= challenge, f"age>={challenge:g}"
    if threshold is None or p is None:
        raise ValueError(f"no over-{over} policy: give a challenge age, or fit one with `faceage calibrate --over {over}`")
    return np.asarray(p) >= threshold, f"p_over>={threshold:.4g}"


def policy_text(policy: dict[str, Any] | None, over: int, challenge: float | None = None) -> str:
    """One line stating a policy and its measured error rates (what ``faceage verify`` and the app print)."""
    if challenge is not None:
        measured = (policy or {}).get("challenge", {}).get(interval_key(challenge))
        text = f"policy: over {over} by challenge age {challenge:g} (pass when the estimated age is >= {challenge:g})"
        return text + "; " + (_rates_text(measured, policy) if measured else "error rates not measured for this model (`faceage calibrate`)")
    if policy is None:
        return f"policy: none fitted for over {over}"
    lo, hi = policy.get("minor_ages", [over - 5, over - 1])
    return (f"policy: over {over} when P(age >= {over}) >= {policy['threshold']:.4g}, chosen so that at most "
            f"{policy.get('max_fpr', 0.01):.0%} of calibration faces aged {lo}-{hi} pass; " + _rates_text(policy, policy))


def _rates_text(rates: dict[str, Any], policy: dict[str, Any] | None) -> str:
    lo, hi = (policy or rates).get("minor_ages", ["?", "?"])
    if rates.get("fpr") is None or rates.get("adult_pass") is None:
        return "error rates not measured"
    return (f"measured on the calibration data: {rates['n_minors']} faces aged {lo}-{hi}: {rates['fpr']:.2%} pass (95% upper bound "
            f"{rates['fpr_upper95']:.2%}); {rates['adult_pass']:.1%} of {rates['n_adults']} faces aged "
            f"{(policy or rates).get('adult_age', 25)}+ pass (referral {1 - rates['adult_pass']:.1%})")
