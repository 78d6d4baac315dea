"""P(A older than B) from two age predictions, for torch tensors and NumPy arrays alike, without importing torch
(so ``faceage compare`` on the ONNX engine starts without PyTorch); :mod:`faceage.models.pairs` re-exports both."""

from __future__ import annotations


def p_older_from_distributions(pa, pb):
    """P(A > B) for independent ages with distributions ``pa``, ``pb`` ``(..., K)`` over the same ascending ages:
    ``sum_{i>j} pa_i pb_j + 0.5 sum_i pa_i pb_i`` (ties count half). Works on torch tensors and numpy arrays."""
    below = pb.cumsum(-1) - pb  # P(B < age_i)
    return (pa * (below + 0.5 * pb)).sum(-1)


def p_older_from_ages(age_a, age_b, scale: float = 2.0):
    """``sigmoid((age_a - age_b) / scale)``: P(A older) from point estimates (torch tensors or numpy arrays)."""
    diff = (age_a - age_b) / scale
    if hasattr(diff, "sigmoid"):  # a torch tensor (checked by duck type: no torch import here)
        return diff.sigmoid()
    import numpy as np

    return 1.0 / (1.0 + np.exp(-diff))


DEFAULT_AGE_SCALE = 2.0  # years per logit unit of p_older_from_ages, for heads without a distribution


def p_older(left: dict, right: dict, age_scale: float = DEFAULT_AGE_SCALE):
    """The one P(left older) of two age predictions (dicts of ``age`` ``(...)`` and, where the head gives one,
    ``distribution`` ``(..., K)``; NumPy or torch): :func:`p_older_from_distributions` when both have a
    distribution, else :func:`p_older_from_ages` with ``age_scale``. ``faceage compare``, the app's "Who is older?"
    tab and its ``/compare`` API all use it, so they agree."""
    if "distribution" in left and "distribution" in right:
        p = p_older_from_distributions(_float64(left["distribution"]), _float64(right["distribution"]))
        return p.clip(0.0, 1.0)
    return p_older_from_ages(_float64(left["age"]), _float64(right["age"]), age_scale)


def p_older_method(outputs: dict, age_scale: float = DEFAULT_AGE_SCALE) -> str:
    """How :func:`p_older` scores predictions like ``outputs``, in words (shown by the app)."""
    return "age distributions" if "distribution" in outputs else f"ages (logistic on the age gap, {age_scale:g} years per unit)"


def _float64(x):
    if hasattr(x, "double"):  # a torch tensor
        return x.double()
    import numpy as np

    return np.asarray(x, dtype=np.float64)
