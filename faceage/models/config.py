"""Validation of model configs (``config.json`` and checkpoint ``model_config``): one function, called wherever a
config is loaded, so that an absurd or hostile config fails with one line naming the file and the key.

Bounds: ``input.image_size`` within :data:`IMAGE_SIZE_RANGE` (a 100000 px side would allocate tens of GB),
``0 <= min_age < max_age <= 150``, finite ``mean``, positive finite ``std`` (a zero std turns every age into NaN),
``crop`` in (0, 1]. Free of PyTorch: the ONNX engine uses it too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

IMAGE_SIZE_RANGE = (8, 1024)
MAX_AGE_LIMIT = 150
MAX_CONFIG_BYTES = 1 << 20  # a model config is a few kB; a larger file is not one


class ModelConfigError(ValueError):
    """An unusable model config; ``str()`` is one line naming the file (or source) and the key."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_input(inp: Any, where: str) -> None:
    if not isinstance(inp, dict):
        raise ModelConfigError(f"{where}: input must be an object, got {type(inp).__name__}")
    lo, hi = IMAGE_SIZE_RANGE
    size = inp.get("image_size")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and lo <= size <= hi):
        raise ModelConfigError(f"{where}: input.image_size must be an integer within {lo}..{hi}, got {size!r}")
    for key, positive in (("mean", False), ("std", True)):
        values = inp.get(key)
        if values is None:
            continue
        if not (isinstance(values, list) and len(values) == 3 and all(_number(v) for v in values)):
            raise ModelConfigError(f"{where}: input.{key} must be a list of 3 finite numbers, got {values!r}")
        if positive and not all(v > 0 for v in values):
            raise ModelConfigError(f"{where}: input.std must be positive, got {values!r}")
    crop = inp.get("crop")
    if crop is not None and not (_number(crop) and 0 < crop <= 1):
        raise ModelConfigError(f"{where}: input.crop must be within (0, 1], got {crop!r}")


def validate_ages(min_age: Any, max_age: Any, where: str) -> None:
    """``0 <= min_age < max_age <= 150``, whole numbers; :class:`ModelConfigError` naming ``where`` otherwise."""
    whole = all(_number(v) and float(v).is_integer() for v in (min_age, max_age))
    if not (whole and 0 <= min_age < max_age <= MAX_AGE_LIMIT):
        raise ModelConfigError(f"{where}: min_age/max_age must be whole numbers with 0 <= min_age < max_age <= {MAX_AGE_LIMIT}, "
                               f"got {min_age!r}/{max_age!r}")


def validate_model_config(config: Any, source: str | Path) -> dict:
    """Checks an age, ensemble or pair model config; returns it unchanged, or raises :class:`ModelConfigError`
    whose message starts with ``source`` (the file the config came from)."""
    where = str(source)
    if not isinstance(config, dict):
        raise ModelConfigError(f"{where}: a model config must be a JSON object, got {type(config).__name__}")
    if "input" in config:
        _check_input(config["input"], where)
    if "min_age" in config or "max_age" in config:
        validate_ages(config.get("min_age", 0), config.get("max_age", 110), where)
    members = config.get("ensemble")
    if members is not None:
        if not (isinstance(members, list) and members):
            raise ModelConfigError(f"{where}: ensemble must be a non-empty list of member configs")
        for i, member in enumerate(members):
            validate_model_config(member, f"{where}: ensemble[{i}]")
    for key in ("age_model_config", "model_config"):  # pair models carry their age model's config
        if isinstance(config.get(key), dict):
            validate_model_config(config[key], f"{where}: {key}")
    return config


def read_model_config(path: str | Path) -> dict:
    """Reads and validates a ``config.json``: invalid JSON, an oversized file or bad values give one
    :class:`ModelConfigError` line naming ``path``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ModelConfigError(f"{path}: {size} bytes is too large for a model config (limit {MAX_CONFIG_BYTES})")
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelConfigError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise ModelConfigError(f"{path}: not valid JSON (not UTF-8 text: {e.reason})") from None
    except OSError as e:
        raise ModelConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    return validate_model_config(config, path)


def config_difference(other: dict, mine: dict, keys: tuple[str, ...] = ("min_age", "max_age")) -> tuple[str, Any, Any] | None:
    """The first place where a model config ``other`` cannot stand in for ``mine`` (a teacher for its student, a
    starting model for a recipe): one of ``keys``, or the input's crop, mean or std (compared as floats).

    Returns:
        ``(name, other's value, mine)`` with input keys named ``input <key>``, or ``None`` when they agree.
    """
    for key in keys:
        if other[key] != mine[key]:
            return key, other[key], mine[key]
    for key in ("crop", "mean", "std"):
        theirs, ours = other["input"].get(key), mine["input"].get(key)
        if [float(v) for v in _as_list(theirs)] != [float(v) for v in _as_list(ours)]:
            return f"input {key}", theirs, ours
    return None


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---- the typed config of an age model ------------------------------------------------------------------------------
# keys config.json may carry besides the model's own: written by save_pretrained, fit, calibrate, export
METADATA_KEYS = ("faceage_version", "metrics", "training", "weights_dtype", "onnx", "calibration", "members_from",
                 "lineage")
INPUT_KEYS = ("image_size", "mean", "std", "crop", "alignment")


@dataclass
class AgeModelConfig:
    """What rebuilds an ``AgeModel`` and its preprocessing: ``config.json`` is :meth:`to_dict` of it (plus the
    :data:`METADATA_KEYS`), and a Lightning checkpoint carries the same dict as ``model_config``.

    Attributes:
        backbone: faceage backbone name or timm model name.
        head: age head name (``faceage.models.heads.HEADS``).
        head_kwargs: extra head arguments (e.g. ``{"sigma": 2.0}`` for ``dldl``).
        min_age: youngest age the head can output.
        max_age: oldest age the head can output.
        gender: a binary gender head (multitask).
        gender_net: ``"cydral"``: gender from its own small network (the Cydral gender classifier) instead of a
            linear head on the age features; needs ``gender``.
        race: a race head over ``faceage.data.records.RACES`` (5 classes, multitask).
        dropout: dropout before the heads.
        tta_flip: at inference, average the outputs for the image and its mirror (exported graphs included).
        round_ages: report whole-year ages (see :func:`faceage.models.ages.reported_age`).
        input: ``image_size`` (network input side; ``None``: the backbone's), ``mean``/``std`` (normalisation;
            ``None``: the backbone's), ``crop`` (central fraction of the aligned chip), ``alignment`` (how photos are
            aligned into chips like the training ones).
    """

    backbone: str = "resnet18"
    head: str = "dldl"
    head_kwargs: dict = field(default_factory=dict)
    min_age: int = 0
    max_age: int = 110
    gender: bool = False
    gender_net: str | None = None
    race: bool = False
    dropout: float = 0.0
    tta_flip: bool = False
    round_ages: bool = False
    input: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.input) - set(INPUT_KEYS)
        if unknown:
            raise ModelConfigError(f"model config: unknown input keys {sorted(unknown)}")
        if self.gender_net not in (None, "cydral"):
            raise ValueError(f"gender_net must be null or 'cydral', got {self.gender_net!r}")
        if self.gender_net and not self.gender:
            raise ValueError("gender_net needs gender: true")
        validate_model_config(self.to_dict(), "model")

    @classmethod
    def from_dict(cls, config: dict, source: str | Path = "model config") -> AgeModelConfig:
        """From ``config.json`` / ``model_config`` (metadata keys ignored); one-line error naming ``source`` for an
        unknown key or a bad value."""
        validate_model_config(config, source)
        names = {f.name for f in fields(cls)}
        unknown = set(config) - names - set(METADATA_KEYS)
        if unknown:
            raise ValueError(f"model config has unknown keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in config.items() if k in names})

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> AgeModelConfig:
        """From flat keyword arguments, the input keys (``image_size``, ``crop``, ...) beside the others."""
        inp = {k: kwargs.pop(k) for k in INPUT_KEYS if k in kwargs and kwargs[k] is not None}
        kwargs.pop("input", None)
        return cls(**{k: v for k, v in kwargs.items() if v is not None}, input=inp)

    def to_dict(self) -> dict:
        """The plain JSON dict (what ``config.json`` and checkpoints store)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class PairModelConfig:
    """What rebuilds a pair model ("who is older"): its ``config.json`` / checkpoint ``pair_model_config`` is
    :meth:`to_dict` of it. One typed config for every kind; a kind uses the fields it needs.

    Attributes:
        kind: the registered pair model (``faceage.models.pairs.PAIR_MODELS``).
        input: the preprocessing (the same keys as :attr:`AgeModelConfig.input`).
        backbone: the image backbone (``siamese``, ``six_channel``).
        hidden: MLP widths after the features (``siamese``, ``six_channel``, ``age_feature``).
        dropout: dropout in that MLP.
        age_model: where the age model came from (``age_*`` kinds; ``None``: the bundled model or an object).
        age_model_config: that age model's config, so the pair model rebuilds without the original files.
        age_scale: years per logit unit without an age distribution (``age_difference``).
    """

    kind: str
    input: dict = field(default_factory=dict)
    backbone: str | None = None
    hidden: list = field(default_factory=list)
    dropout: float = 0.0
    age_model: str | None = None
    age_model_config: dict | None = None
    age_scale: float | None = None

    @classmethod
    def from_dict(cls, config: dict, source: str | Path = "pair model config") -> PairModelConfig:
        """From a pair model's config (metadata keys ignored); one-line error naming ``source`` otherwise."""
        validate_model_config(config, source)
        names = {f.name for f in fields(cls)}
        unknown = set(config) - names - set(METADATA_KEYS)
        if unknown:
            raise ModelConfigError(f"{source}: pair model config has unknown keys: {sorted(unknown)}")
        if not isinstance(config.get("kind"), str):
            raise ModelConfigError(f"{source}: a pair model config needs a 'kind'")
        return cls(**{k: v for k, v in config.items() if k in names})

    def to_dict(self) -> dict:
        """The plain dict, without the fields this kind leaves unset."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return json.loads(json.dumps(out))
