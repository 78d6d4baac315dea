"""Knowledge distillation: a student ``AgeModel`` learns from the soft predictions of trained teacher models.

An ensemble (and flip test-time augmentation) is more accurate than one model but costs its members' compute at
every prediction. Distillation (Hinton et al., 2015) moves that accuracy into training: the student, same size and
speed as before, also fits the teachers' averaged age distribution, gender probability and race probabilities on
each (augmented) training batch. Lightning has no distillation API and torchvision/timm ship none for this task's
outputs (distributions over ages, masked multitask labels), so the few lines are here.

Teachers are any saved faceage models (model directories, ensembles included) with the student's age range; their
input may differ from the student's only in image size (the batch is resized for them). The teacher ``start`` is
the student as it was before training (for ``cydral_resnet10`` with ``head.init: backbone``, the untuned Cydral age
and gender networks): distilling toward it on every training face keeps what the pretrained network knew while the
student learns the new labels ("learning without forgetting", Li & Hoiem 2017). Its randomly started race head
gives no targets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.age_model import AgeModel
from faceage.models.config import config_difference
from faceage.models.files import load_directory

TEACHER_OUTPUTS = ("distribution", "age", "gender_prob", "race_probs")
START_TEACHER = "start"


class Teacher(nn.Module):
    """Frozen teacher models whose decoded outputs, averaged (and over the mirrored image when ``flip``), are the
    soft targets of :func:`soft_target_loss`.

    Args:
        sources: model directories (an ``AgeEnsemble`` directory adds all its members).
        student_config: the student's ``AgeModel.config``; teachers must share its age range and its input crop
            and normalisation.
        flip: also average each teacher over the mirrored batch.

    Raises:
        FileNotFoundError / ValueError: naming the teacher directory that is missing or incompatible.
    """

    def __init__(self, sources: Sequence[str | Path], student_config: dict, flip: bool = True, start: AgeModel | None = None) -> None:
        super().__init__()
        if not sources:
            raise ValueError("distillation needs at least one teacher model directory")
        members: list[AgeModel] = []
        for source in sources:
            if str(source) == START_TEACHER:
                if start is None:
                    raise ValueError("teacher 'start' needs the student's starting weights")
                member = copy.deepcopy(start)
                member.race_head = None  # randomly started: no knowledge to keep
                members.append(member)
                continue
            loaded = load_directory(source)
            for m in getattr(loaded, "members", [loaded]):
                _check_compatible(m.config, student_config, source)
                members.append(m)
        self.members = nn.ModuleList(members).eval().requires_grad_(False)
        self.sizes = [m.config["input"]["image_size"] for m in members]
        self.flip = flip

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # always in eval mode: batch-norm statistics and dropout stay fixed

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised student-size batch -> averaged ``distribution`` / ``age`` / ``gender_prob`` / ``race_probs``
        (those that every teacher, or for gender and race any teacher, gives)."""
        outputs: dict[str, list[torch.Tensor]] = {}
        for member, size in zip(self.members, self.sizes):
            x = images if size == images.shape[-1] else F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            pred = member.predict(x, flip=self.flip)
            for name in TEACHER_OUTPUTS:
                if name in pred:
                    outputs.setdefault(name, []).append(pred[name])
        n = len(self.members)
        return {k: torch.stack(v).mean(dim=0) for k, v in outputs.items() if k in ("gender_prob", "race_probs") or len(v) == n}


def _check_compatible(teacher: dict, student: dict, source) -> None:
    difference = config_difference(teacher, student)
    if difference is not None:
        name, theirs, ours = difference
        hint = " (teachers may differ from the student in image size only)" if name.startswith("input") else ""
        raise ValueError(f"teacher {source}: {name} {theirs} differs from the student's {ours}{hint}")


def soft_target_loss(model: AgeModel, out: dict[str, torch.Tensor], soft: dict[str, torch.Tensor], gender_weight: float = 1.0, race_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The student's loss against the teacher's soft targets, term by term (``age_soft``, ``gender_soft``,
    ``race_soft``) and their weighted sum ``soft_loss``.

    Age: KL(teacher || student) between the age distributions plus the L1 gap of their expected ages (the DLDL-v2
    loss with the teacher's distribution as the label); a head without a distribution fits the teacher's expected
    age by L1. Gender: binary cross-entropy to the teacher's probability; race: cross-entropy to its probabilities.
    Soft targets exist for every face, also those whose gender or race label is missing.
    """
    logits = out["age_logits"]
    dist = model.head.distribution(logits)
    if dist is not None and "distribution" in soft:
        age_soft = F.kl_div(model.head.log_distribution(logits), soft["distribution"], reduction="batchmean") + (dist @ model.head.age_values - soft["age"]).abs().mean()
    else:
        age_soft = (model.head.predict(logits) - soft["age"]).abs().mean()
    terms = {"age_soft": age_soft}
    total = age_soft
    if "gender_logit" in out and "gender_prob" in soft:
        terms["gender_soft"] = F.binary_cross_entropy_with_logits(out["gender_logit"], soft["gender_prob"])
        total = total + gender_weight * terms["gender_soft"]
    if "race_logits" in out and "race_probs" in soft:
        terms["race_soft"] = -(soft["race_probs"] * out["race_logits"].log_softmax(dim=1)).sum(dim=1).mean()
        total = total + race_weight * terms["race_soft"]
    terms["soft_loss"] = total
    return terms
