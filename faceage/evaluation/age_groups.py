"""Scores for faces labelled with an age *group* (FairFace's ``20-29``, Adience's ``(25, 32)``, ``70+``).

A group ``[low, high]`` names whole years, so a predicted age is *inside* it when it rounds to one of them:
``low - 0.5 <= age < high + 0.5``. Everything else is measured against that same span: ``years_outside`` is the
distance from the predicted age to it (0 inside), the signed distance is negative below the group and positive above.
An open group ("70+") has ``high = MAX_VALID_AGE`` (:mod:`faceage.data.records`), so no age is above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from faceage.data.records import group_name
from faceage.evaluation.groups import ArrayLike, check_ages

T = TypeVar("T")


def signed_years_outside(ages: T, lows: T, highs: T) -> T:
    """Signed distance in years from each age to its group's span ``[low - 0.5, high + 0.5]``.

    Works on numpy arrays and torch tensors alike (elementwise arithmetic and ``clip`` only).

    Args:
        ages: predicted ages, shape (N,).
        lows: groups' first years, shape (N,).
        highs: groups' last years, shape (N,).

    Returns:
        Shape (N,): 0 inside, ``age - (high + 0.5)`` above, ``age - (low - 0.5)`` (negative) below.

    >>> signed_years_outside(np.array([25.0, 31.0, 17.0]), np.array([20.0, 20.0, 20.0]), np.array([29.0, 29.0, 29.0]))
    array([ 0. ,  1.5, -2.5])
    """
    return (ages - (highs + 0.5)).clip(min=0) - ((lows - 0.5) - ages).clip(min=0)


def inside_group(ages: T, lows: T, highs: T) -> T:
    """Whether each age rounds into its group: ``low - 0.5 <= age < high + 0.5`` (numpy arrays or torch tensors).

    >>> inside_group(np.array([19.5, 29.49, 29.5]), np.array([20.0, 20.0, 20.0]), np.array([29.0, 29.0, 29.0]))
    array([ True,  True, False])
    """
    return (ages >= lows - 0.5) & (ages < highs + 0.5)


def _summary(ages: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> dict[str, float | int]:
    signed = signed_years_outside(ages, lows, highs)
    inside = inside_group(ages, lows, highs)
    return {
        "n": int(ages.size),
        "inside": float(np.mean(inside)),
        "years_outside": float(np.mean(np.abs(signed))),
        "bias": float(np.mean(signed)),
    }


def group_metrics(
    ages: ArrayLike, lows: ArrayLike, highs: ArrayLike, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """How well predicted ages fall into the true age groups, overall and by group.

    An age is inside its group ``[low, high]`` (inclusive whole years) when it rounds into it:
    ``low - 0.5 <= age < high + 0.5``. Distances are to that span.

    Args:
        ages: predicted ages, shape (N,), N >= 1.
        lows: each face's group's first year, shape (N,).
        highs: each face's group's last year, shape (N,) (``MAX_VALID_AGE`` for an open group such as "70+").
        names: each face's group name, shape (N,); by default the name
            :func:`faceage.data.records.group_name` gives its bounds, such as ``20-29`` or ``70+``.

    Returns:
        Plain Python values: ``{"n", "inside", "years_outside", "bias", "by_group"}`` where ``inside`` is the fraction
        of ages inside their group, ``years_outside`` the mean distance in years from the age to the group (0 inside),
        ``bias`` the mean signed distance (negative: below the group), and ``by_group`` maps each group name to the
        same four keys for its faces, in the order of the groups' ``low`` (then ``high``).

    Raises:
        ValueError: on empty input, different lengths, non-finite values or ``low > high``.

    Examples:
        >>> m = group_metrics([25.0, 31.0, 17.0, 80.0], [20, 20, 20, 70], [29, 29, 29, 120])
        >>> m["n"], m["inside"], m["years_outside"], m["bias"]
        (4, 0.5, 1.0, -0.25)
        >>> m["by_group"]["20-29"]
        {'n': 3, 'inside': 0.3333333333333333, 'years_outside': 1.3333333333333333, 'bias': -0.3333333333333333}
        >>> list(m["by_group"])
        ['20-29', '70+']
    """
    a = check_ages(ages, "ages")
    lo = check_ages(lows, "lows")
    hi = check_ages(highs, "highs")
    if not a.size == lo.size == hi.size:
        raise ValueError(f"ages, lows and highs differ in length: {a.size}, {lo.size}, {hi.size}")
    if a.size == 0:
        raise ValueError("group_metrics needs at least one sample")
    if np.any(lo > hi):
        raise ValueError("age groups have low > high")
    if names is None:
        labels = [group_name(float(low), float(high)) for low, high in zip(lo, hi)]
    else:
        labels = [str(name) for name in names]
        if len(labels) != a.size:
            raise ValueError(f"names has {len(labels)} entries for {a.size} ages")
    label_array = np.asarray(labels, dtype=object)
    order = sorted(set(labels), key=lambda g: (lo[label_array == g].min(), hi[label_array == g].min(), g))
    result: dict[str, Any] = _summary(a, lo, hi)
    result["by_group"] = {g: _summary(a[label_array == g], lo[label_array == g], hi[label_array == g]) for g in order}
    return result
