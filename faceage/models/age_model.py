"""``AgeModel``: backbone + age head (+ optional gender head), with the config that rebuilds it and its inputs.

The config is plain JSON and is stored beside the weights (``save_pretrained``: safetensors + ``config.json``,
the Hugging Face Hub layout) and inside Lightning checkpoints, so inference rebuilds the exact preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceage.data.records import RACES
from faceage.models.backbones import apply_transfer_mode, create_backbone
from faceage.models.config import AgeModelConfig
from faceage.models.files import checkpoint_kind, load_directory, model_directory, model_from_checkpoint, read_checkpoint, save_module
from faceage.models.heads import create_head
from faceage.models.outputs import flip_average

# UTKFace's chips are dlib get_face_chip crops from 68-point landmarks at padding 0.2 (measured by
# benchmarks/studies/calibrate_alignment.py); the Cydral net was trained on the same geometry.
DEFAULT_ALIGNMENT = {"method": "dlib68", "chip_size": 200, "padding": 0.2}


class AgeModel(nn.Module):
    """Face image -> age (and gender, race).

    ``AgeModel(config)`` with an :class:`~faceage.models.config.AgeModelConfig`, or ``AgeModel("resnet18", "dldl",
    image_size=64, gender=True, ...)`` with that config's fields as arguments (the input fields ``image_size``,
    ``crop``, ``mean``, ``std``, ``alignment`` flat beside the others); ``pretrained`` starts the backbone from
    pretrained weights (hub weights for timm, bundled for cydral). :attr:`config` is the resolved config as a plain
    dict (the backbone's own input defaults filled in): what ``config.json`` stores.
    """

    def __init__(self, backbone: str | AgeModelConfig = "resnet18", head: str = "dldl", pretrained: bool = False, **kwargs) -> None:
        super().__init__()
        cfg = backbone if isinstance(backbone, AgeModelConfig) else AgeModelConfig.from_kwargs(backbone=backbone, head=head, **kwargs)
        inp = cfg.input
        self.backbone = create_backbone(cfg.backbone, pretrained=pretrained, image_size=inp.get("image_size"))
        default = self.backbone.default_input
        self.input_config = {
            "image_size": int(inp.get("image_size") or default["image_size"]),
            "mean": [float(v) for v in (inp.get("mean") or default["mean"])],
            "std": [float(v) for v in (inp.get("std") or default["std"])],
            "crop": float(inp.get("crop", 1.0)),
            "alignment": dict(inp.get("alignment") or DEFAULT_ALIGNMENT),
        }
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()
        self.head = create_head(cfg.head, self.backbone.num_features, min_age=cfg.min_age, max_age=cfg.max_age, **cfg.head_kwargs)
        self.gender_head = nn.Linear(self.backbone.num_features, 1) if cfg.gender and not cfg.gender_net else None
        self.gender_net = None
        if cfg.gender_net:
            from faceage.models.cydral import CydralGenderNet

            self.gender_net = CydralGenderNet(pretrained=pretrained)
        self.race_head = nn.Linear(self.backbone.num_features, len(RACES)) if cfg.race else None
        self.config = {**cfg.to_dict(), "input": self.input_config}

    def set_transfer(self, mode: str, unfreeze_last: int = 0) -> None:
        """Transfer-learning mode of the backbone (see :func:`apply_transfer_mode`); heads always train."""
        apply_transfer_mode(self.backbone, mode, unfreeze_last)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images ``(B, 3, S, S)`` normalised -> ``{"age_logits": (B, K), "gender_logit": (B,)?, "race_logits": (B, 5)?,
        "features": (B, F)}``."""
        return self.forward_heads(self.backbone(images), images)

    def forward_heads(self, features: torch.Tensor, images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The heads on backbone ``features`` ``(B, F)``: :meth:`forward`'s outputs; ``images`` only for
        ``gender_net``, which reads them."""
        dropped = self.dropout(features)
        out = {"features": features, "age_logits": self.head(dropped)}
        if self.gender_head is not None:
            out["gender_logit"] = self.gender_head(dropped)[:, 0]
        elif self.gender_net is not None:
            out["gender_logit"] = self.gender_net(images)
        if self.race_head is not None:
            out["race_logits"] = self.race_head(dropped)
        return out

    @property
    def output_names(self) -> list[str]:
        """Names of :meth:`decode`'s outputs, in export order."""
        return ["age"] + (["distribution"] if self.head.has_distribution else []) + (["gender_prob"] if self.config["gender"] else []) + (
            ["race_probs"] if self.race_head is not None else []
        )

    def loss(
        self,
        out: dict[str, torch.Tensor],
        ages: torch.Tensor,
        genders: torch.Tensor | None = None,
        gender_weight: float = 1.0,
        races: torch.Tensor | None = None,
        race_weight: float = 1.0,
        age_lows: torch.Tensor | None = None,
        age_highs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Age loss plus (multitask) masked gender BCE and race cross-entropy; ``genders``/``races`` use -1 for
        unknown; ``age_lows``/``age_highs`` ``(B,)`` are age-group bounds (equal to ``ages`` for exact ages, see
        :meth:`~faceage.models.heads.base.AgeHead.label_loss`). Returns named terms and ``loss``."""
        terms = {"age_loss": self.head.label_loss(out["age_logits"], ages, age_lows, age_highs)}
        total = terms["age_loss"]
        if "gender_logit" in out and genders is not None:
            known = genders >= 0
            if known.any():
                terms["gender_loss"] = F.binary_cross_entropy_with_logits(out["gender_logit"][known], genders[known].float())
                total = total + gender_weight * terms["gender_loss"]
        if self.race_head is not None and races is not None:
            known = races >= 0
            if known.any():
                terms["race_loss"] = F.cross_entropy(out["race_logits"][known], races[known].long())
                total = total + race_weight * terms["race_loss"]
        terms["loss"] = total
        return terms

    @torch.no_grad()
    def decode(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward output -> ``{"age": (B,), "distribution": (B, K)?, "gender_prob": (B,)? (P(female)),
        "race_probs": (B, 5)?}``. Decoded in float32 even under bf16 autocast (bf16 expectations move ages by up to
        a quarter of a year)."""
        with torch.autocast(out["age_logits"].device.type, enabled=False):
            return self._decode({k: v.float() for k, v in out.items()})

    def _decode(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        result = {"age": self.head.predict(out["age_logits"])}
        dist = self.head.distribution(out["age_logits"])
        if dist is not None:
            result["distribution"] = dist
        if "gender_logit" in out:
            result["gender_prob"] = out["gender_logit"].sigmoid()
        if "race_logits" in out:
            result["race_probs"] = out["race_logits"].softmax(dim=1)
        return result

    @torch.no_grad()
    def predict(self, images: torch.Tensor, flip: bool = False) -> dict[str, torch.Tensor]:
        """:meth:`decode` of the forward pass, averaged with the mirrored batch's when ``flip`` (flip TTA)."""
        decoded = lambda batch: self.decode(self(batch))  # noqa: E731
        return flip_average(decoded, images) if flip else decoded(images)

    # ---- persistence -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> AgeModel:
        """Rebuilds the architecture (random weights) from :attr:`config` (``config.json``)."""
        return cls(AgeModelConfig.from_dict(config))

    def save_pretrained(self, directory: str | Path, extra: dict | None = None, dtype: str = "float32") -> Path:
        """Writes ``model.safetensors`` + ``config.json`` (plus ``extra`` keys such as metrics) to ``directory``;
        ``dtype="float16"`` halves the file (weights are computed in float32 again when loaded)."""
        return save_module(self, self.config, directory, extra, dtype)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AgeModel:
        """Loads a model saved by :meth:`save_pretrained` (safetensors: no code runs from the file)."""
        return load_directory(directory, cls.from_config)


def load_model(source: str | Path | None = None) -> AgeModel:
    """Loads an ``AgeModel`` (or an ``AgeEnsemble``, which decodes the same way) from a model directory, a
    ``.safetensors`` file beside its ``config.json``, or a Lightning ``.ckpt`` (read with
    ``torch.load(weights_only=True)``); ``None`` gives the bundled default model."""
    if source is None:
        from faceage.models.pretrained import bundled_model_dir

        source = bundled_model_dir()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if path.is_dir() or path.suffix == ".safetensors":
        return load_directory(model_directory(path))
    ckpt = read_checkpoint(path)
    if checkpoint_kind(ckpt) != "age":
        raise ValueError(f"{path}: not a faceage checkpoint (no 'model_config' entry)")
    return model_from_checkpoint(ckpt, path)
