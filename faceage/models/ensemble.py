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


def main(argv: list[str]) -> int:
    """``faceage ensemble MODEL MODEL [...] --output DIR``: saves the ensemble and its ONNX graph."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="faceage ensemble", description="Average several trained age models into one model directory (+ model.onnx).")
    p.add_argument("models", nargs="+", help="two or more model dirs / checkpoints with the same input config")
    p.add_argument("--output", required=True, help="directory for model.safetensors, config.json and model.onnx")
    p.add_argument("--tta-flip", choices=["keep", "on", "off"], default="keep", help="flip test-time augmentation of the ensemble")
    p.add_argument("--round-ages", choices=["keep", "on", "off"], default="keep", help="report whole-year ages (keep: the first member's setting)")
    p.add_argument("--no-onnx", action="store_true", help="skip writing model.onnx")
    p.add_argument("--float16", action="store_true", help="store the weights as float16 (half the size; computed in float32)")
    p.add_argument("--quantize", choices=["int8"], default=None, help="write model.onnx as a static int8 graph (needs --calibration)")
    p.add_argument("--calibration", nargs="+", default=None, metavar="PATH", help="aligned face chips for int8 calibration")
    args = p.parse_args(argv)
    if args.quantize and (args.no_onnx or not args.calibration):
        p.error("--quantize int8 writes model.onnx and needs --calibration with face images like the model's inputs")
    from faceage.models.age_model import load_model

    try:
        members = [load_model(m) for m in args.models]
        flip = None if args.tta_flip == "keep" else args.tta_flip == "on"
        rounding = None if args.round_ages == "keep" else args.round_ages == "on"
        ensemble = AgeEnsemble(members, tta_flip=flip, round_ages=rounding)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = ensemble.save_pretrained(args.output, extra={"members_from": [str(m) for m in args.models]}, dtype="float16" if args.float16 else "float32")
    print(f"wrote {out} ({len(members)} members; outputs {', '.join(ensemble.output_names)})")
    if args.no_onnx:
        return 0
    from faceage.cli import export_main

    return export_main([str(out), *(["--quantize", args.quantize, "--calibration", *args.calibration] if args.quantize else [])])
