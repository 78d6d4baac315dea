"""The model-file layer: every faceage model on disk is read and written here, and nowhere else.

Two forms exist:

* a **model directory** (the Hugging Face Hub layout): ``config.json`` (the model's config, see
  :mod:`faceage.models.config`) + ``model.safetensors`` (weights; no code runs from the file), and, once exported,
  ``model.onnx`` beside them. Its *kind* (:func:`model_kind`) is ``age`` (an ``AgeModel``), ``ensemble``
  (an ``AgeEnsemble``: ``config["ensemble"]`` lists the members) or ``pair`` (a comparator: ``config["kind"]``);
* a **Lightning checkpoint** (``.ckpt``) of ``AgeModule`` / ``PairModule``: ``model_config`` or ``pair_model_config``
  (plain dicts) and a ``state_dict`` whose model weights are prefixed ``model.``. Checkpoints are read with
  ``torch.load(weights_only=True)`` (:func:`load_checkpoint_file`): never unpickled unless the user trusts the file.

Writes are atomic (temp file in the same directory, then ``os.replace``): a killed save leaves the old model or the
new one, never half of one. Importing this module does not import PyTorch (the ONNX engine reads configs through it).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from faceage._io import atomic_target
from faceage.models.config import ModelConfigError, read_model_config, validate_model_config

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
STATE_PREFIX = "model."  # AgeModule / PairModule keep the model as ``self.model``
TRUST_PICKLE_ENV = "FACEAGE_TRUST_PICKLE"  # "1": checkpoints may be unpickled (runs code from the file)

# model kind -> "module:callable" rebuilding the architecture from a config (imported on use: no torch at import)
BUILDERS = {
    "age": "faceage.models.age_model:AgeModel.from_config",
    "ensemble": "faceage.models.ensemble:AgeEnsemble.from_config",
    "pair": "faceage.models.pairs:PairModel.from_config",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (damaged, or one that would need unpickling); the message names the file."""


# ---- model directories --------------------------------------------------------------------------------------------
def model_kind(config: dict) -> str:
    """``"ensemble"``, ``"pair"`` or ``"age"`` for a model config (``config.json`` or a checkpoint's config)."""
    if "ensemble" in config:
        return "ensemble"
    if "kind" in config:
        return "pair"
    return "age"


def builder(kind: str) -> Callable[[dict], Any]:
    """The function that rebuilds a model of ``kind`` (random weights) from its config."""
    import importlib

    module, _, attr = BUILDERS[kind].partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def model_directory(source: str | Path) -> Path:
    """The directory of a model given as its directory or as its ``.safetensors`` / ``.onnx`` file."""
    path = Path(source)
    return path.parent if path.suffix in (".safetensors", ".onnx") else path


def export_dir(model: str | Path) -> Path:
    """The folder holding a model's exported graphs (``model.onnx`` + ``config.json``): a model directory itself,
    the folder of a ``.safetensors`` / ``.onnx`` file, and for a checkpoint ``run/checkpoints/last.ckpt`` the folder
    ``run/checkpoints/last/`` beside it (one per checkpoint: ``faceage export`` writes there, the ONNX engine reads
    there)."""
    path = Path(model)
    if path.suffix in (".safetensors", ".onnx"):
        return model_directory(path)
    if path.suffix == ".ckpt" or (path.is_file() and not path.is_dir()):
        return path.with_suffix("")
    return path


def read_directory_config(directory: str | Path, what: str = "model") -> dict:
    """The validated ``config.json`` of a model directory; ``FileNotFoundError`` naming the directory when it is not
    one (``what`` names the expected kind in that message)."""
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory}: not a faceage {what} directory (missing {name})")
    return read_model_config(directory / CONFIG_NAME)


def load_directory(directory: str | Path, build: Callable[[dict], Any] | None = None, what: str = "model"):
    """Loads a model directory: rebuilds the architecture from ``config.json`` (with ``build``, default the builder
    of the config's :func:`model_kind`), then loads the safetensors weights; returns the model in eval mode. A
    ``calibration`` fitted by ``faceage calibrate`` and the ``lineage`` are kept in ``model.config`` (:data:`CARRIED`)
    so saving and export carry them."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_directory_config(directory, what)
    model = _built(build or builder(model_kind(config)), config, directory / CONFIG_NAME)
    _carry(config, model)
    model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    return model.eval()


def _built(build: Callable[[dict], Any], config: dict, source: str | Path):
    """``build(config)``, with any config problem it finds (an unknown key or backbone, a bad value) as one
    :class:`ModelConfigError` line that names ``source``, the file the config came from."""
    try:
        return build(config)
    except ModelConfigError as e:
        if str(e).startswith(str(source)):
            raise
        raise ModelConfigError(f"{source}: {e}") from None
    except (ValueError, KeyError) as e:
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) would add quotes
        raise ModelConfigError(f"{source}: {reason}") from None


def save_module(module, config: dict, directory: str | Path, extra: dict | None = None, dtype: str = "float32") -> Path:
    """Writes ``module`` in the model-directory layout: ``model.safetensors`` (floating tensors as ``dtype``,
    ``float32`` or ``float16``) + ``config.json`` (``config``, the faceage version, ``extra`` keys such as metrics).
    Each file is written atomically."""
    import torch
    from safetensors.torch import save_file

    from faceage._version import __version__

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cast = getattr(torch, dtype)
    state = {k: (v.to(cast) if v.is_floating_point() else v).detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_target(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    meta = {"faceage_version": __version__, **({"weights_dtype": dtype} if dtype != "float32" else {})}
    write_config(directory, {**config, **meta, **(extra or {})})
    return directory


def write_config(directory: str | Path, config: dict) -> Path:
    """Writes (atomically) a model directory's ``config.json``: the one writer of that file (save, export,
    calibrate and the bundling script all go through it)."""
    target = Path(directory) / CONFIG_NAME
    with atomic_target(target) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return target


# ---- checkpoints --------------------------------------------------------------------------------------------------
def trust_pickle() -> bool:
    """Whether the user explicitly trusts checkpoint files enough to unpickle them (``faceage ... --trust_pickle``)."""
    return os.environ.get(TRUST_PICKLE_ENV, "") == "1"


def local_checkpoint_path(path: str | os.PathLike) -> Path | None:
    """``path`` as a local file path (plain, relative, ``file://`` URL; symlinks resolved), ``None`` for a remote URL."""
    text = os.fspath(path)
    if "://" in text:
        url = urlparse(text)
        if url.scheme != "file":
            return None
        text = unquote(url.path)
    return Path(text).expanduser().resolve()


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where the previous good copy of an overwritten checkpoint is kept: ``last.ckpt`` -> ``last.prev.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
    """``torch.load`` of a local checkpoint that never unpickles unless :func:`trust_pickle`.

    ``weights_only=False`` alone is ignored (with a warning): unpickling runs code from the file and needs the
    separate trust setting. A damaged file raises :class:`CheckpointError` naming it and its previous good copy.
    """
    import torch

    local = local_checkpoint_path(path)
    if local is None:
        raise CheckpointError(f"{path}: only local checkpoint files are supported")
    if not local.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    if weights_only is False and not trust_pickle():
        warnings.warn(f"{path}: weights_only=false ignored: faceage never unpickles checkpoints unless trusted "
                      f"(--trust_pickle or {TRUST_PICKLE_ENV}=1)", stacklevel=2)
    trusted = trust_pickle() and weights_only is not True
    if trusted:
        warnings.warn(f"{path}: unpickling a checkpoint (trusted): this runs any code the file holds", stacklevel=2)
    try:
        return torch.load(local, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused: loading it needs unpickling, which runs code from the file ({first}); "
                              f"pass --trust_pickle only for a file you trust") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        prev = previous_checkpoint(local)
        offer = f"; the previous good checkpoint is {prev} (resume with --ckpt_path {prev})" if prev.is_file() and prev != local else ""
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: damaged or incomplete checkpoint ({type(e).__name__}: {reason}){offer}") from None


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents for building a model from it (never unpickled unless trusted); ``ValueError``
    ``"<path>: not a readable faceage checkpoint (<why>)"`` otherwise."""
    try:
        ckpt = load_checkpoint_file(path, map_location="cpu", weights_only=True)
    except CheckpointError as e:
        why = str(e).removeprefix(f"{path}: ")
        raise ValueError(f"{path}: not a readable faceage checkpoint ({why})") from None
    except Exception as e:  # noqa: BLE001 - any other unpickler failure (e.g. struct.error) means an unusable file
        why = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: not a readable faceage checkpoint ({type(e).__name__}: {why})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a faceage checkpoint (not a dict)")
    return ckpt


def checkpoint_kind(ckpt: dict) -> str | None:
    """``"pair"`` for a ``PairModule`` checkpoint, ``"age"`` for an ``AgeModule`` one, ``None`` otherwise."""
    if "pair_model_config" in ckpt:
        return "pair"
    return "age" if "model_config" in ckpt else None


def model_state(state_dict: dict, prefix: str = STATE_PREFIX) -> dict:
    """The model's own weights in a LightningModule's ``state_dict`` (keys ``model.…`` without the prefix)."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def model_from_checkpoint(ckpt: dict, source: str | Path):
    """Rebuilds and loads the model a checkpoint holds (an age model, an ensemble, or a pair model), eval mode."""
    kind = checkpoint_kind(ckpt)
    if kind is None:
        raise ValueError(f"{source}: not a faceage checkpoint (no 'model_config' or 'pair_model_config' entry)")
    key = "pair_model_config" if kind == "pair" else "model_config"
    config = validate_model_config(ckpt[key], f"{source}: {key}")
    model = _built(builder(model_kind(config)), config, f"{source}: {key}")
    _carry(config, model)
    model.load_state_dict(model_state(ckpt["state_dict"]))
    return model.eval()


# metadata a loaded model keeps in its config, so that saving or exporting it writes them again
CARRIED = ("calibration", "lineage")


def _carry(config: dict, model) -> None:
    for key in CARRIED:
        if key in config and isinstance(getattr(model, "config", None), dict):
            model.config[key] = config[key]


def source_kind(source: str | Path) -> str | None:
    """The kind (``age``/``ensemble``/``pair``) of a model directory or checkpoint without loading its weights;
    ``None`` when it is not a readable faceage model (the loaders then say why)."""
    path = model_directory(source)
    try:
        if path.is_dir():
            return model_kind(read_model_config(path / CONFIG_NAME)) if (path / CONFIG_NAME).exists() else None
        if path.is_file():
            kind = checkpoint_kind(read_checkpoint(path))
            return kind
    except ValueError:
        return None
    return None
