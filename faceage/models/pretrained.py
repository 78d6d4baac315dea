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
