"""Backbones, age heads and the models built from them.

Attributes are imported on first use, so ``faceage.models.pretrained`` (the bundled model's location) can be read by
the ONNX engine without importing PyTorch.

May import: ``faceage.data`` only. The model files (names, loading, saving) are :mod:`faceage.models.files`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgeModel": "faceage.models.age_model",
    "load_model": "faceage.models.age_model",
    "BACKBONES": "faceage.models.backbones",
    "create_backbone": "faceage.models.backbones",
    "HEADS": "faceage.models.heads",
    "create_head": "faceage.models.heads",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'faceage.models' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
