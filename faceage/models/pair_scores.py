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
