"""Weight-space ensembling of a fine-tuned model with the network it started from (WiSE-FT, Wortsman et al. 2022).

Fine-tuning the Cydral net on one or two datasets teaches it their faces and makes it forget some of what it learnt
from its ~110k training faces. Interpolating every weight between the start and the fine-tuned model,
``(1 - alpha) * start + alpha * tuned``, keeps much of both at one model's cost, because the two share one
architecture and, with ``head.init: backbone``, one head start. The interpolation is a few lines of tensor
arithmetic that no installed library offers for faceage's model layout; ``benchmarks/per_dataset.py`` measures it
(``wise:ALPHA:DIR`` models).
"""

from __future__ import annotations

import copy

import torch

from faceage.models.age_model import AgeModel
from faceage.models.config import AgeModelConfig

# the architecture of configs/default.yaml: the start of the bundled model
START_CONFIG = {
    "backbone": "cydral_resnet10", "head": "dldl", "head_kwargs": {"sigma": 2.0, "l1_weight": 1.0}, "min_age": 0, "max_age": 110,
    "gender": True, "gender_net": "cydral", "race": True, "tta_flip": True, "round_ages": True,
    "input": {"image_size": 64, "crop": 0.9},
}
# keys that have no pretrained start: taken from the fine-tuned model as they are
UNSHARED = ("race_head.",)


def start_model(config: dict | None = None) -> AgeModel:
    """The untuned Cydral age and gender networks with the age classifier as the head
    (:func:`faceage.models.cydral.init_head_from_cydral`) in the architecture of ``config`` (default
    :data:`START_CONFIG`): what a ``cydral_resnet10`` recipe with ``head.init: backbone`` starts from.

    Raises:
        ValueError: for a backbone other than ``cydral_resnet10`` or a head without an age distribution.
    """
    from faceage.models.cydral import init_head_from_cydral

    config = copy.deepcopy(config or START_CONFIG)
    if config.get("backbone") != "cydral_resnet10":
        raise ValueError(f"a pretrained start exists for cydral_resnet10 only, not {config.get('backbone')!r}")
    model = AgeModel(AgeModelConfig.from_dict(config), pretrained=True)
    init_head_from_cydral(model.head)
    return model.eval()


def wise_ft(tuned: AgeModel, alpha: float, start: AgeModel | None = None) -> AgeModel:
    """``(1 - alpha) * start + alpha * tuned`` for every floating tensor both have (``alpha`` 1: the tuned model;
    0: the start); the race head, which has no start, stays as tuned.

    Args:
        tuned: a fine-tuned ``cydral_resnet10`` model (its config gives the start's architecture).
        alpha: weight of the fine-tuned model, in [0, 1].
        start: the start (default :func:`start_model` of the tuned config).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    if hasattr(tuned, "members"):
        raise ValueError("wise_ft takes one model, not an ensemble: interpolate each member")
    start = start if start is not None else start_model(tuned.config)
    mixed = copy.deepcopy(tuned)
    a, b = start.state_dict(), tuned.state_dict()
    state = {}
    for key, value in b.items():
        if value.is_floating_point() and key in a and a[key].shape == value.shape and not key.startswith(UNSHARED):
            state[key] = torch.lerp(a[key].to(value.dtype), value, alpha)
        else:
            state[key] = value
    mixed.load_state_dict(state)
    return mixed.eval()
