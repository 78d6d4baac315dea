"""``AgeModel``: backbone + age head (+ optional gender head), with the config that rebuilds it and its inputs.

The config is plain JSON and is stored beside the weights (``save_pretrained``: safetensors + ``config.json``,
the Hugging Face Hub layout) and inside Lightning checkpoints, so inference rebuilds the exact preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceage.data.records import RACES
from faceage.models.backbones import apply_transfer_mode, create_backbone
from faceage.models.config import read_model_config, validate_model_config
from faceage.models.heads import create_head

# UTKFace's chips are dlib get_face_chip crops from 68-point landmarks at padding 0.2 (measured by
# benchmarks/calibrate_alignment.py); the Cydral net was trained on the same geometry.
DEFAULT_ALIGNMENT = {"method": "dlib68", "chip_size": 200, "padding": 0.2}
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class AgeModel(nn.Module):
    """Face image -> age (and gender).

    Args:
        backbone: faceage backbone name or timm model name.
        head: age head name (``faceage.models.heads.HEADS``).
        head_kwargs: extra head arguments (e.g. ``{"sigma": 2.0}`` for ``dldl``).
        min_age: youngest age the head can output.
        max_age: oldest age the head can output.
        pretrained: start the backbone from pretrained weights (hub weights for timm, bundled for cydral).
        image_size: network input side; default the backbone's own.
        crop: central fraction of the aligned chip fed to the network.
        mean: per-channel normalisation mean (default: the backbone's).
        std: per-channel normalisation std (default: the backbone's).
        alignment: how raw photos are aligned into chips like the training ones.
        gender: add a binary gender head (multitask).
        gender_net: ``"cydral"`` predicts gender with its own small network (dlib's pretrained Cydral gender classifier,
            fine-tuned) instead of a linear head on the age features; needs ``gender``.
        race: add a race head over ``faceage.data.records.RACES`` (5 classes, multitask).
        dropout: dropout before the heads.
        tta_flip: at inference, average the outputs for the image and its mirror (exported graphs included).
        round_ages: report ages in whole years (the expectation rounded, see
            :func:`faceage.models.ages.reported_age`); for labels in whole years, as UTKFace, AFAD, CACD, FG-NET and
            All-Age-Faces have.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        head: str = "dldl",
        head_kwargs: dict | None = None,
        min_age: int = 0,
        max_age: int = 110,
        pretrained: bool = False,
        image_size: int | None = None,
        crop: float = 1.0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        alignment: dict | None = None,
        gender: bool = False,
        dropout: float = 0.0,
        tta_flip: bool = False,
        race: bool = False,
        gender_net: str | None = None,
        round_ages: bool = False,
    ) -> None:
        super().__init__()
        validate_model_config({"min_age": min_age, "max_age": max_age, "input": {"image_size": image_size, "mean": mean, "std": std, "crop": crop}}, "model")
        self.backbone = create_backbone(backbone, pretrained=pretrained, image_size=image_size)
        default = self.backbone.default_input
        self.input_config = {
            "image_size": int(image_size or default["image_size"]),
            "mean": [float(v) for v in (mean or default["mean"])],
            "std": [float(v) for v in (std or default["std"])],
            "crop": float(crop),
            "alignment": dict(alignment or DEFAULT_ALIGNMENT),
        }
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = create_head(head, self.backbone.num_features, min_age=min_age, max_age=max_age, **(head_kwargs or {}))
        if gender_net not in (None, "cydral"):
            raise ValueError(f"gender_net must be null or 'cydral', got {gender_net!r}")
        if gender_net and not gender:
            raise ValueError("gender_net needs gender: true")
        self.gender_head = nn.Linear(self.backbone.num_features, 1) if gender and not gender_net else None
        self.gender_net = None
        if gender_net:
            from faceage.models.cydral import CydralGenderNet

            self.gender_net = CydralGenderNet(pretrained=pretrained)
        self.race_head = nn.Linear(self.backbone.num_features, len(RACES)) if race else None
        self.config = {
            "backbone": backbone,
            "head": head,
            "head_kwargs": dict(head_kwargs or {}),
            "min_age": int(min_age),
            "max_age": int(max_age),
            "gender": bool(gender),
            "gender_net": gender_net,
            "race": bool(race),
            "dropout": float(dropout),
            "tta_flip": bool(tta_flip),
            "round_ages": bool(round_ages),
            "input": self.input_config,
        }

    def set_transfer(self, mode: str, unfreeze_last: int = 0) -> None:
        """Transfer-learning mode of the backbone (see :func:`apply_transfer_mode`); heads always train."""
        apply_transfer_mode(self.backbone, mode, unfreeze_last)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images ``(B, 3, S, S)`` normalised -> ``{"age_logits": (B, K), "gender_logit": (B,)?, "race_logits": (B, 5)?,
        "features": (B, F)}``."""
        features = self.backbone(images)
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
    ) -> dict[str, torch.Tensor]:
        """Age loss plus (multitask) masked gender BCE and race cross-entropy; ``genders``/``races`` use -1 for
        unknown. Returns named terms and ``loss``."""
        terms = {"age_loss": self.head.loss(out["age_logits"], ages)}
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
        "race_probs": (B, 5)?}``."""
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
        pred = self.decode(self(images))
        if flip:
            mirrored = self.decode(self(images.flip(-1)))
            pred = {k: (v + mirrored[k]) / 2 for k, v in pred.items()}
        return pred

    # ---- persistence -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> AgeModel:
        """Rebuilds the architecture (random weights) from :attr:`config`."""
        known = {"backbone", "head", "head_kwargs", "min_age", "max_age", "gender", "gender_net", "race", "dropout", "tta_flip", "round_ages", "input"}
        unknown = set(config) - known - {"faceage_version", "metrics", "training", "weights_dtype", "onnx", "calibration"}
        if unknown:
            raise ValueError(f"model config has unknown keys: {sorted(unknown)}")
        inp = config.get("input", {})
        return cls(
            backbone=config["backbone"],
            head=config["head"],
            head_kwargs=config.get("head_kwargs"),
            min_age=config.get("min_age", 0),
            max_age=config.get("max_age", 110),
            pretrained=False,
            image_size=inp.get("image_size"),
            crop=inp.get("crop", 1.0),
            mean=inp.get("mean"),
            std=inp.get("std"),
            alignment=inp.get("alignment"),
            gender=config.get("gender", False),
            race=config.get("race", False),
            gender_net=config.get("gender_net"),
            dropout=config.get("dropout", 0.0),
            tta_flip=config.get("tta_flip", False),
            round_ages=config.get("round_ages", False),
        )

    def save_pretrained(self, directory: str | Path, extra: dict | None = None, dtype: str = "float32") -> Path:
        """Writes ``model.safetensors`` + ``config.json`` (plus ``extra`` keys such as metrics) to ``directory``;
        ``dtype="float16"`` halves the file (weights are computed in float32 again when loaded)."""
        return save_module(self, self.config, directory, extra, dtype)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AgeModel:
        """Loads a model saved by :meth:`save_pretrained` (safetensors: no code runs from the file)."""
        return load_directory(directory, cls.from_config)


def save_module(module: nn.Module, config: dict, directory: str | Path, extra: dict | None = None, dtype: str = "float32") -> Path:
    """The Hub layout shared by ``AgeModel`` and ``AgeEnsemble``: ``model.safetensors`` + ``config.json``; floating
    tensors stored as ``dtype`` (``float32`` or ``float16``)."""
    from safetensors.torch import save_file

    from faceage import __version__

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cast = getattr(torch, dtype)
    state = {k: (v.to(cast) if v.is_floating_point() else v).detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME))
    meta = {"faceage_version": __version__, **({"weights_dtype": dtype} if dtype != "float32" else {})}
    (directory / CONFIG_NAME).write_text(json.dumps({**config, **meta, **(extra or {})}, indent=2))
    return directory


def model_from_config(config: dict):
    """``AgeModel.from_config``, or ``AgeEnsemble.from_config`` for an ensemble config (random weights)."""
    if "ensemble" in config:
        from faceage.models.ensemble import AgeEnsemble

        return AgeEnsemble.from_config(config)
    return AgeModel.from_config(config)


def load_directory(directory: str | Path, build=model_from_config):
    """The one loader of the layout :func:`save_module` writes: checks both files, rebuilds the architecture from
    ``config.json`` with ``build`` (default: an ``AgeModel`` or ``AgeEnsemble`` as the config says), then loads the
    safetensors weights (no code runs from the file); returns the model in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory}: not a faceage model directory (missing {name})")
    config = read_model_config(directory / CONFIG_NAME)
    model = build(config)
    if "calibration" in config:  # fitted by `faceage calibrate`; kept so that save_pretrained, export and engines carry it
        model.config["calibration"] = config["calibration"]
    model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    return model.eval()


def checkpoint_problem(e: Exception) -> str:
    """One line for a failed ``torch.load(weights_only=True)``: a refused pickle says so (torch's message runs to
    a dozen lines), anything else is the error's first line."""
    import pickle

    if isinstance(e, pickle.UnpicklingError):
        return "refused: it holds objects that only unpickling could rebuild, which could run code from the file"
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


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
    if path.is_dir():
        return load_directory(path)
    if path.suffix == ".safetensors":
        return load_directory(path.parent)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is not a usable checkpoint
        raise ValueError(f"{path}: not a readable faceage checkpoint ({checkpoint_problem(e)})") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise ValueError(f"{path}: not a faceage checkpoint (no 'model_config' entry)")
    model = AgeModel.from_config(validate_model_config(ckpt["model_config"], f"{path}: model_config"))
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    model.eval()
    return model
