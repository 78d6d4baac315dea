"""Pairwise comparators: two face images -> logit of P(left face is older) (seed 003).

Five kinds, all registered in :data:`PAIR_MODELS` and built by :func:`create_pair_model`:

* ``siamese``: one shared backbone embeds both faces; an MLP reads ``[f1, f2, f1 - f2]``;
* ``six_channel``: both faces stacked on the channel axis go through one backbone whose first convolution is
  widened to 6 input channels (pretrained weights copied, halved, into both halves);
* ``age_feature``: a trained :class:`AgeModel`, frozen, embeds both faces; an MLP reads ``[f1, f2, f1 - f2]``;
* ``age_difference``: no training at all; P(left older) from the age model's two predicted age distributions,
  ``P(A > B) = sum_{i>j} pA_i pB_j + 0.5 sum_i pA_i pB_i``, or from a logistic on the predicted age difference
  when the head has no distribution;
* ``age_ranking``: the same P(left older) from two predicted distributions, but the age model is fine-tuned end
  to end on pairs (BCE), so training starts exactly at the ``age_difference`` baseline.

Every model has ``input_config`` (the same keys as ``AgeModel.input_config``, so transforms and inference
preprocessing are built alike) and a plain ``config`` that rebuilds it; ``save_pretrained`` writes safetensors +
``config.json`` as ``AgeModel`` does, and :func:`load_pair_model` reads them back (an age-model directory gives
the ``age_difference`` comparator over it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceage._registry import Registry
from faceage.models.age_model import DEFAULT_ALIGNMENT, AgeModel, load_model
from faceage.models.backbones import create_backbone
from faceage.models.config import PairModelConfig
from faceage.models.files import builder, load_directory, model_directory, model_from_checkpoint, model_kind, read_checkpoint, read_directory_config

PAIR_MODELS: Registry[type[PairModel]] = Registry("pair model")
_EPS = 1e-6


# ----------------------------------------------------------------------------------------------------------
# P(A older than B) from age predictions
# ----------------------------------------------------------------------------------------------------------


# torch-free, so that the ONNX path of `faceage compare` needs no torch import; re-exported here
from faceage.models.pair_scores import p_older_from_ages, p_older_from_distributions  # noqa: E402


# ----------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------


def comparison_mlp(in_features: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout`` per hidden layer, then ``Linear(.., 1)`` (the logit); dropout also before
    the last layer when there are no hidden layers."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def make_input_config(
    default_input: dict, image_size: int | None = None, crop: float = 1.0, mean=None, std=None, alignment: dict | None = None
) -> dict:
    """The ``input_config`` dict ``AgeModel`` builds from a backbone's ``default_input`` and the overrides."""
    return {
        "image_size": int(image_size or default_input["image_size"]),
        "mean": [float(v) for v in (mean or default_input["mean"])],
        "std": [float(v) for v in (std or default_input["std"])],
        "crop": float(crop),
        "alignment": dict(alignment or DEFAULT_ALIGNMENT),
    }


def _first_conv_name(backbone: nn.Module) -> str:
    """Dotted name of the backbone's first 3-channel convolution (timm's ``first_conv`` when it says so)."""
    cfg = getattr(getattr(backbone, "model", None), "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    if isinstance(first, str):
        name = f"model.{first}"
        try:
            if isinstance(backbone.get_submodule(name), nn.Conv2d):
                return name
        except AttributeError:
            pass
    for name, m in backbone.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return name
    raise ValueError(f"{type(backbone).__name__}: no 3-channel first convolution to widen")


def widen_first_conv(backbone: nn.Module, copies: int = 2, copy_weights: bool = True) -> str:
    """Replaces the first convolution with one taking ``3 * copies`` channels, in place.

    With ``copy_weights`` the old kernel is copied into every 3-channel slice divided by ``copies``, so a
    pretrained backbone fed the same image in every slice computes what it computed before.

    Returns:
        The dotted name of the replaced convolution.
    """
    name = _first_conv_name(backbone)
    old: nn.Conv2d = backbone.get_submodule(name)
    if old.groups != 1:
        raise ValueError(f"cannot widen grouped convolution {name} (groups={old.groups})")
    new = nn.Conv2d(
        old.in_channels * copies, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
        dilation=old.dilation, bias=old.bias is not None, padding_mode=old.padding_mode,
    )
    if copy_weights:
        with torch.no_grad():
            new.weight.copy_(torch.cat([old.weight / copies] * copies, dim=1))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    parent_name, _, child = name.rpartition(".")
    setattr(backbone.get_submodule(parent_name) if parent_name else backbone, child, new)
    return name


def _freeze(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad = False
    return model.eval()


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------


class PairModel(nn.Module):
    """Base class: ``forward(left, right)`` -> logits ``(B,)`` of P(left older); images ``(B, 3, S, S)``
    normalised with :attr:`input_config`. Subclasses set ``kind``, ``input_config`` and ``config``."""

    kind: str = ""
    input_config: dict
    config: dict

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy against labels (1 = left older)."""
        return F.binary_cross_entropy_with_logits(logits, labels.float())

    @torch.no_grad()
    def predict_proba(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """P(left older) ``(B,)``."""
        return torch.sigmoid(self(left, right))

    def _base_config(self, **extra) -> dict:
        """The model's :class:`PairModelConfig` as its plain dict."""
        return PairModelConfig(kind=self.kind, input=self.input_config, **extra).to_dict()

    # ---- persistence (the AgeModel layout: model.safetensors + config.json) ---------------------------------
    save_pretrained = AgeModel.save_pretrained

    @classmethod
    def from_config(cls, config: dict) -> PairModel:
        """Rebuilds the architecture (random weights, no download) from a ``config``; dispatches on ``kind``."""
        if cls is PairModel:
            return PAIR_MODELS.get(PairModelConfig.from_dict(config).kind).from_config(config)
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PairModel:
        """Loads a model saved by :meth:`save_pretrained` (safetensors: no code runs from the file)."""
        return load_directory(directory, PairModel.from_config, what="pair-model")


def _backbone_kwargs(config: dict) -> dict:
    inp = config.get("input", {})
    keys = ("image_size", "mean", "std", "alignment")
    return {"crop": inp.get("crop", 1.0), **{k: inp.get(k) for k in keys}}


@PAIR_MODELS.register("siamese")
class SiameseComparator(PairModel):
    """Shared backbone on both faces; MLP on ``[f1, f2, f1 - f2]``.

    Args:
        backbone: faceage backbone or timm model name.
        pretrained: start the backbone from pretrained weights.
        hidden: MLP hidden layer widths (empty: one linear layer).
        dropout: dropout in the MLP (0 disables).
        image_size: network input side; default the backbone's.
        crop: central fraction of the aligned chip fed to the network.
        mean: normalisation mean (default: the backbone's).
        std: normalisation std (default: the backbone's).
        alignment: how raw photos are aligned into chips.
    """

    kind = "siamese"

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
        image_size: int | None = None,
        crop: float = 1.0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        alignment: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=pretrained, image_size=image_size)
        self.input_config = make_input_config(self.backbone.default_input, image_size, crop, mean, std, alignment)
        self.head = comparison_mlp(3 * self.backbone.num_features, hidden, dropout)
        self.config = self._base_config(backbone=backbone, hidden=[int(h) for h in hidden], dropout=float(dropout))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.backbone(torch.cat([left, right])).chunk(2)
        return self.head(torch.cat([f1, f2, f1 - f2], dim=1))[:, 0]

    @classmethod
    def from_config(cls, config: dict) -> SiameseComparator:
        return cls(config["backbone"], False, config.get("hidden", ()), config.get("dropout", 0.0), **_backbone_kwargs(config))


@PAIR_MODELS.register("six_channel")
class SixChannelComparator(PairModel):
    """Both faces stacked on channels ``(B, 6, S, S)`` into one backbone with a widened first convolution; MLP on
    its features. Arguments as :class:`SiameseComparator`."""

    kind = "six_channel"

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
        image_size: int | None = None,
        crop: float = 1.0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        alignment: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=pretrained, image_size=image_size)
        widen_first_conv(self.backbone, copies=2, copy_weights=pretrained)
        self.input_config = make_input_config(self.backbone.default_input, image_size, crop, mean, std, alignment)
        self.head = comparison_mlp(self.backbone.num_features, hidden, dropout)
        self.config = self._base_config(backbone=backbone, hidden=[int(h) for h in hidden], dropout=float(dropout))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(torch.cat([left, right], dim=1)))[:, 0]

    @classmethod
    def from_config(cls, config: dict) -> SixChannelComparator:
        return cls(config["backbone"], False, config.get("hidden", ()), config.get("dropout", 0.0), **_backbone_kwargs(config))


def _age_model(source: str | Path | AgeModel | None) -> tuple[AgeModel, str | None]:
    """An ``AgeModel`` from a model dir/checkpoint (``None``: the bundled model), with the path it came from."""
    if hasattr(source, "decode"):  # an AgeModel or AgeEnsemble object
        return source, None
    if source is None:
        from faceage.models.pretrained import bundled_model_dir

        source = bundled_model_dir()
    return load_model(source), str(source)


class _AgeModelComparator(PairModel):
    """Shared plumbing of the comparators built on a trained :class:`AgeModel`: adopting it (its input config, and
    its config stored so that the comparator rebuilds without the original directory) and rebuilding it."""

    def _set_age_model(self, age_model: str | Path | AgeModel | None, frozen: bool = True) -> dict:
        model, path = _age_model(age_model)
        self.age_model = _freeze(model) if frozen else model
        self.input_config = json.loads(json.dumps(model.input_config))
        return {"age_model": path, "age_model_config": json.loads(json.dumps(model.config))}

    @staticmethod
    def _rebuild_age_model(config: dict) -> AgeModel:
        if "age_model_config" in config:
            age_config = config["age_model_config"]
            return builder(model_kind(age_config))(age_config)
        return _age_model(config.get("age_model"))[0]


class _FrozenAgeModelComparator(_AgeModelComparator):
    """Shared plumbing of the comparators over a frozen :class:`AgeModel` (kept in eval mode)."""

    def train(self, mode: bool = True) -> _FrozenAgeModelComparator:
        super().train(mode)
        self.age_model.eval()  # frozen: batch-norm statistics and dropout stay as trained
        return self


@PAIR_MODELS.register("age_feature")
class AgeFeatureComparator(_FrozenAgeModelComparator):
    """A trained age model, frozen, embeds both faces (backbone features); an MLP reads ``[f1, f2, f1 - f2]``.

    Args:
        age_model: age model directory / checkpoint / ``AgeModel``; ``None`` for the bundled default model.
        hidden: MLP hidden layer widths.
        dropout: dropout in the MLP.
    """

    kind = "age_feature"

    def __init__(self, age_model: str | Path | AgeModel | None = None, hidden: Sequence[int] = (), dropout: float = 0.0) -> None:
        super().__init__()
        source = self._set_age_model(age_model)
        # an AgeEnsemble embeds with all its members, features concatenated
        self._backbones = [m.backbone for m in getattr(self.age_model, "members", [self.age_model])]
        self.head = comparison_mlp(3 * sum(b.num_features for b in self._backbones), hidden, dropout)
        self.config = self._base_config(**source, hidden=[int(h) for h in hidden], dropout=float(dropout))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            both = torch.cat([left, right])
            f1, f2 = torch.cat([b(both) for b in self._backbones], dim=1).chunk(2)
        return self.head(torch.cat([f1, f2, f1 - f2], dim=1))[:, 0]

    @classmethod
    def from_config(cls, config: dict) -> AgeFeatureComparator:
        model = cls(cls._rebuild_age_model(config), config.get("hidden", ()), config.get("dropout", 0.0))
        model.config["age_model"] = config.get("age_model")
        return model


@PAIR_MODELS.register("age_difference")
class AgeDifferenceComparator(_FrozenAgeModelComparator):
    """No training: P(left older) from the age model's predictions (see :func:`p_older_from_distributions`,
    :func:`p_older_from_ages`); mirrored-image averaging when the age model's config asks for it (``tta_flip``).

    Args:
        age_model: age model directory / checkpoint / ``AgeModel``; ``None`` for the bundled default model.
        age_scale: years of difference per logit unit when the head gives no distribution.
    """

    kind = "age_difference"

    def __init__(self, age_model: str | Path | AgeModel | None = None, age_scale: float = 2.0) -> None:
        super().__init__()
        from faceage.models.outputs import InferenceWrapper

        source = self._set_age_model(age_model)
        # not a registered submodule: it shares the age model's tensors, which are stored once, as age_model.*
        self.__dict__["wrapper"] = InferenceWrapper(self.age_model)
        self.age_scale = float(age_scale)
        self.config = self._base_config(**source, age_scale=self.age_scale)

    @torch.no_grad()
    def p_older(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """P(left older) ``(B,)``."""
        outs = dict(zip(self.wrapper.output_names, self.wrapper(torch.cat([left, right]))))
        if "distribution" in outs:
            pa, pb = outs["distribution"].chunk(2)
            return p_older_from_distributions(pa, pb).clamp(0.0, 1.0)
        a, b = outs["age"].chunk(2)
        return p_older_from_ages(a, b, self.age_scale)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.p_older(left, right), eps=_EPS)

    @classmethod
    def from_config(cls, config: dict) -> AgeDifferenceComparator:
        model = cls(cls._rebuild_age_model(config), config.get("age_scale", 2.0))
        model.config["age_model"] = config.get("age_model")
        return model


@PAIR_MODELS.register("age_ranking")
class AgeRankingComparator(_AgeModelComparator):
    """The age-difference comparator made trainable: a trained age model (one, with an age distribution) whose
    P(left older) comes from its two predicted distributions (:func:`p_older_from_distributions`), fine-tuned end
    to end with the pair loss. Before any step it scores exactly what :class:`AgeDifferenceComparator` does over the
    same model (without flip averaging), so pair training starts from that baseline rather than from scratch.

    Args:
        age_model: age model directory / checkpoint / ``AgeModel``; ``None`` for the bundled default model.

    Raises:
        ValueError: for an ensemble, or an age head without a distribution.
    """

    kind = "age_ranking"

    def __init__(self, age_model: str | Path | AgeModel | None = None) -> None:
        super().__init__()
        source = self._set_age_model(age_model, frozen=False)
        model = self.age_model
        if not isinstance(model, AgeModel):
            raise ValueError(f"age_ranking fine-tunes one age model, not a {type(model).__name__}; pick one member")
        if not model.head.has_distribution:
            raise ValueError(f"age_ranking needs an age head with a distribution, not {model.config['head']!r}")
        for p in model.parameters():
            p.requires_grad = True
        model.train()  # loaded for inference (eval mode); Lightning keeps submodules' modes
        self.config = self._base_config(**source)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        logits = self.age_model(torch.cat([left, right]))["age_logits"]
        pa, pb = self.age_model.head.distribution(logits).chunk(2)
        return torch.logit(p_older_from_distributions(pa, pb).clamp(0.0, 1.0), eps=_EPS)

    @classmethod
    def from_config(cls, config: dict) -> AgeRankingComparator:
        model = cls(cls._rebuild_age_model(config))
        model.config["age_model"] = config.get("age_model")
        return model


def create_pair_model(kind: str, **kwargs) -> PairModel:
    """Builds the comparator registered as ``kind`` (``PAIR_MODELS.names()``) with its own arguments."""
    cls = PAIR_MODELS.get(kind)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"pair model {kind!r}: {e}") from None


def load_pair_model(source: str | Path | None = None, age_scale: float = 2.0) -> PairModel:
    """Loads a comparator from a pair-model directory, a ``.safetensors`` beside its ``config.json``, or a
    ``PairModule`` checkpoint (``torch.load(weights_only=True)``). An *age* model (directory or checkpoint, ``None``
    for the bundled one) gives the :class:`AgeDifferenceComparator` over it.

    Raises:
        FileNotFoundError: when ``source`` does not exist.
        ValueError: when it is neither a pair model nor an age model.
    """
    if source is None:
        return AgeDifferenceComparator(None, age_scale)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if path.is_dir() or path.suffix == ".safetensors":
        path = model_directory(path)
        if model_kind(read_directory_config(path)) == "pair":
            return PairModel.from_pretrained(path)
        return AgeDifferenceComparator(load_model(path), age_scale).eval()
    ckpt = read_checkpoint(path)
    if "pair_model_config" in ckpt:
        return model_from_checkpoint(ckpt, path)
    if "model_config" in ckpt:
        return AgeDifferenceComparator(load_model(path), age_scale).eval()
    raise ValueError(f"{path}: not a faceage checkpoint (no 'pair_model_config' or 'model_config' entry)")
