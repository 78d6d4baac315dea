"""The bundled default model, shipped inside the package (safetensors + config.json + model.onnx + MODEL_CARD.md)."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


def bundled_model_dir() -> Path:
    """Directory of the default model; ``FACEAGE_MODEL`` overrides it."""
    override = os.environ.get("FACEAGE_MODEL")
    path = Path(override) if override else BUNDLED_DIR
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: the default model is missing (expected config.json and model.safetensors); pass --model")
    return path


def start_from(model, source: str | Path) -> list[str]:
    """Copies a trained faceage model's weights into ``model`` (an :class:`~faceage.models.age_model.AgeModel`), the
    usual start for fine-tuning on a new dataset: pretrained on others (``default``: the bundled model).

    Every tensor whose name and shape match is copied; the model's tensors the source lacks (a head it did not have)
    keep their own start, and the source's extra tensors are left. Only ``model.safetensors`` is read (no code runs
    from a file).

    Returns:
        The names of ``model``'s tensors that kept their own start.

    Raises:
        FileNotFoundError: ``source`` is not a model folder.
        ValueError: naming ``source`` and the difference, when it is an ensemble or a pair model, or its backbone,
            age range, input crop or normalisation, or a tensor's shape, differ from ``model``'s.
    """
    from safetensors.torch import load_file

    from faceage.models.config import config_difference
    from faceage.models.files import WEIGHTS_NAME, model_kind, read_directory_config

    directory = bundled_model_dir() if str(source) == "default" else Path(source)
    config = read_directory_config(directory)
    if model_kind(config) != "age":
        raise ValueError(f"{directory}: a {model_kind(config)} model; start from one age model (an ensemble's member)")
    difference = config_difference(config, model.config, ("backbone", "min_age", "max_age"))
    if difference is not None:
        name, theirs, ours = difference
        raise ValueError(f"{directory}: {name} {theirs!r} differs from the recipe's {ours!r}")
    weights = load_file(str(directory / WEIGHTS_NAME))
    state = model.state_dict()
    for name, tensor in weights.items():
        if name in state and state[name].shape != tensor.shape:
            raise ValueError(f"{directory}: {name} has shape {tuple(tensor.shape)}, the recipe's model "
                             f"{tuple(state[name].shape)}")
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in weights.items() if k in state}, strict=False)
    from faceage.models.lineage import lineage_of

    model.config["lineage"] = lineage_of(config, str(source))  # what the start has seen, carried on
    return [name for name in state if name not in weights]
