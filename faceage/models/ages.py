"""The age a model reports, from its decoded expectation. Free of PyTorch: the ONNX engine's predictor uses it too."""

from __future__ import annotations


def reported_age(age, round_ages: bool):
    """The age a model reports for its decoded expectation ``age`` (tensor or array): rounded to whole years when
    ``round_ages`` (the model config's ``round_ages``, or the predictor's override), else unchanged. Applied once, after every average (ensemble members, flip TTA), by the
    predictor and by validation/test metrics, so that users and metrics see the same number.

    Why round: the labels are whole years (completed years, as the datasets record them), the point estimate that
    minimises absolute error against whole-number labels is itself a whole number (a median), and CS@k counts
    whole-number errors. Measured on our validation split, rounding changed MAE by -0.00 to -0.04 and CS@5 by
    +0.01 to +0.04 for every model and ensemble tested (benchmarks/RESULTS.md, "Whole-year ages").
    """
    return age.round() if round_ages else age
