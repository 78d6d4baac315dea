"""What every metric takes in: checked age vectors, group labels as integer codes, and true-age bands.

Group codes follow ``faceage.data.records``: gender 0 male, 1 female; race 0..4 (``RACES``). A group value
may be ``None``, ``-1``, NaN or anything outside the code range: such samples count as *unknown* (code ``-1``)
and are left out of that group's table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 9), (10, 19), (20, 29), (30, 44), (45, 59), (60, 200))
AGE_BAND_LABELS: tuple[str, ...] = ("0-9", "10-19", "20-29", "30-44", "45-59", "60+")

ArrayLike = Sequence[Any] | np.ndarray


def check_ages(values: ArrayLike, name: str) -> np.ndarray:
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
    p, t = check_ages(pred, "pred"), check_ages(true, "true")
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
