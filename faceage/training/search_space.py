"""The search-space file of ``faceage tune``: dotted fit-config keys -> distributions, and Ray Tune's form of it.

Search space file (YAML)::

    metric: val/acc            # optional
    mode: max                  # optional
    space:
      model.init_args.optim.lr: {loguniform: [1.0e-4, 1.0e-1]}
      data.init_args.batch_size: {choice: [16, 32, 64]}
      model.init_args.model.dropout:          # on or off per trial; off_value is used when off
        switch: {choice: [true, false]}
        value: {uniform: [0.1, 0.7]}
        off_value: 0.0

Distributions: ``loguniform``, ``uniform``, ``randint`` (``[lo, hi)``), ``choice``, ``grid``; a plain value is
fixed for every trial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")
SWITCH_SUFFIX, VALUE_SUFFIX = ":on", ":value"




@dataclass
class SearchSpace:
    """A parsed search-space file: dotted config key -> distribution spec, and the optional metric/mode."""

    params: dict[str, Any]
    metric: str | None = None
    mode: str | None = None


def _check_spec(key: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        return  # a fixed value
    if "switch" in spec:
        unknown = set(spec) - {"switch", "value", "off_value"}
        if unknown or "value" not in spec:
            raise ValueError(f"search space {key}: a switch needs 'switch' and 'value' (and optionally 'off_value'), got {sorted(map(str, spec))}")
        _check_spec(key, spec["switch"])
        _check_spec(key, spec["value"])
        return
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1 or len(spec) != 1:
        raise ValueError(f"search space {key}: expected one of {', '.join(DISTRIBUTIONS)} (or a switch), got {spec}")
    args = spec[kinds[0]]
    if not isinstance(args, list) or not args:
        raise ValueError(f"search space {key}: {kinds[0]} needs a non-empty list, got {args!r}")
    if kinds[0] in ("loguniform", "uniform", "randint") and (len(args) != 2 or not args[0] < args[1]):
        raise ValueError(f"search space {key}: {kinds[0]} needs [low, high] with low < high, got {args}")
    if kinds[0] == "loguniform" and args[0] <= 0:
        raise ValueError(f"search space {key}: loguniform bounds must be > 0, got {args}")


def load_search_space(path: str | os.PathLike) -> SearchSpace:
    """Reads a search-space YAML (see the module docstring).

    Raises:
        ValueError: for an unknown distribution or malformed bounds, naming the key.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or not data["space"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'space' of dotted config keys")
    for key, spec in data["space"].items():
        _check_spec(key, spec)
    mode = data.get("mode")
    if mode not in (None, "min", "max"):
        raise ValueError(f"{path}: mode must be min or max, got {mode!r}")
    return SearchSpace(dict(data["space"]), data.get("metric"), mode)


def _domain(spec: Any):
    from ray import tune

    if not isinstance(spec, dict):
        return spec
    (kind, args), = spec.items()
    if kind == "loguniform":
        return tune.loguniform(float(args[0]), float(args[1]))
    if kind == "uniform":
        return tune.uniform(float(args[0]), float(args[1]))
    if kind == "randint":
        return tune.randint(int(args[0]), int(args[1]))
    if kind == "choice":
        return tune.choice(list(args))
    return tune.grid_search(list(args))


def to_ray_space(params: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune ``param_space``: one entry per key; a switch becomes ``KEY:on`` and ``KEY:value``."""
    space: dict[str, Any] = {}
    for key, spec in params.items():
        if isinstance(spec, dict) and "switch" in spec:
            space[key + SWITCH_SUFFIX] = _domain(spec["switch"])
            space[key + VALUE_SUFFIX] = _domain(spec["value"])
        else:
            space[key] = _domain(spec)
    return space


def resolve_params(sampled: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled values -> dotted config key -> value (a switched-off key takes its ``off_value``)."""
    out: dict[str, Any] = {}
    for key, spec in params.items():
        if isinstance(spec, dict) and "switch" in spec:
            out[key] = sampled[key + VALUE_SUFFIX] if sampled[key + SWITCH_SUFFIX] else spec.get("off_value", 0.0)
        else:
            out[key] = sampled[key]
    return out
