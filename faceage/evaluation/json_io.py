"""Metric results as JSON: numpy values to plain types (NaN -> ``null``) and one atomic writer."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceage._io import write_text_atomic


def to_jsonable(obj: Any) -> Any:
    """Converts numpy scalars/arrays, tuples and paths to JSON types; NaN and infinities become ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Writes a result dict as indented JSON (atomically), creating parent folders.

    Args:
        result: e.g. the output of :func:`evaluate_predictions` or :func:`summarize_folds`.
        path: destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")
    return path
