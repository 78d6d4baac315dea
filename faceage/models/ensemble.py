"""``AgeEnsemble``: several trained :class:`AgeModel` members that read the same input, outputs averaged.

Averaging the members' age distributions (and gender / race probabilities) is the classic cheap win of deep
ensembles; with a label-distribution head the ensemble's age (the expectation of the mean distribution) is the mean
of the members' ages. The ensemble is a drop-in ``AgeModel`` for inference: same ``input_config``, ``decode`` and
``output_names``, saved in the same layout (one ``model.safetensors`` + ``config.json`` whose ``ensemble`` key
lists the member configs), exported to one ONNX graph, loaded by :func:`faceage.models.age_model.load_model`.

    faceage ensemble runs/a/model runs/b/model --output models/ab
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from faceage.models.age_model import AgeModel
from faceage.models.files import load_directory, save_module

# members must agree on these to share one preprocessing and one output layout
_SHARED_KEYS = ("input", "min_age", "max_age")


class AgeEnsemble(nn.Module):
    """Mean of the members' decoded outputs; gender and race are averaged over the members that predict them.

    Args:
        members: trained age models with identical input config and age range.
        tta_flip: flip test-time augmentation for the whole ensemble (default: the first member's setting).
        round_ages: report whole-year ages (see :func:`faceage.models.ages.reported_age`; default: the first
            member's setting).

    Raises:
        ValueError: with fewer than two members, or members whose input config or age range differ.
    """

    def __init__(self, members: Sequence[AgeModel], tta_flip: bool | None = None, round_ages: bool | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        first = members[0].config
        for i, m in enumerate(members[1:], start=1):
            for key in _SHARED_KEYS:
                if m.config[key] != first[key]:
                    raise ValueError(f"ensemble member {i} has a different {key!r} ({m.config[key]!r}) than member 0 ({first[key]!r})")
        self.members = nn.ModuleList(members)
        names = [m.output_names for m in members]
        # every output comes from the members that have it: age (and its distribution, when all members give one)
        # from all; gender / race from those with such a head
        self.output_names = [n for n in ("age", "distribution") if all(n in other for other in names)] + [
            n for n in ("gender_prob", "race_probs") if any(n in other for other in names)
        ]
        self._sources = {n: [i for i, other in enumerate(names) if n in other] for n in self.output_names}
        flip = bool(first.get("tta_flip", False)) if tta_flip is None else bool(tta_flip)
        self.config = {
            "ensemble": [json.loads(json.dumps(m.config)) for m in members],
            "backbone": "+".join(m.config["backbone"] for m in members),
            "head": "+".join(m.config["head"] for m in members),
            "min_age": first["min_age"],
            "max_age": first["max_age"],
            "gender": "gender_prob" in self.output_names,
            "race": "race_probs" in self.output_names,
            "tta_flip": flip,
            "round_ages": bool(first.get("round_ages", False)) if round_ages is None else bool(round_ages),
            "input": json.loads(json.dumps(first["input"])),
        }
        self.input_config = self.config["input"]  # one copy: what export, the predictor and save_pretrained read

    def forward(self, images: torch.Tensor) -> dict[str, list[dict[str, torch.Tensor]]]:
        return {"members": [m(images) for m in self.members]}

    @torch.no_grad()
    def decode(self, out: dict[str, list[dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
        decoded = [m.decode(o) for m, o in zip(self.members, out["members"])]
        return {name: torch.stack([decoded[i][name] for i in self._sources[name]]).mean(dim=0) for name in self.output_names}

    # ---- persistence (the AgeModel layout) ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> AgeEnsemble:
        return cls([AgeModel.from_config(c) for c in config["ensemble"]], tta_flip=config.get("tta_flip"), round_ages=config.get("round_ages"))

    def save_pretrained(self, directory: str | Path, extra: dict | None = None, dtype: str = "float32") -> Path:
        """One ``model.safetensors`` (keys ``members.<i>.…``) and ``config.json`` in ``directory``."""
        return save_module(self, self.config, directory, extra, dtype)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AgeEnsemble:
        return load_directory(directory, cls.from_config)


def build_ensemble(models: Sequence[str | Path], tta_flip: bool | None = None, round_ages: bool | None = None) -> AgeEnsemble:
    """Loads the member models (dirs / checkpoints, :func:`faceage.models.age_model.load_model`) into one ensemble.

    Raises:
        FileNotFoundError: for a member that is not there.
        ValueError: for an unusable member, or members that cannot be averaged (see :class:`AgeEnsemble`).
    """
    from faceage.models.age_model import load_model

    return AgeEnsemble([load_model(m) for m in models], tta_flip=tta_flip, round_ages=round_ages)
