"""``faceage tune``: hyper-parameter search with Ray Tune (ASHA) over any ``faceage fit`` config (seed 003's AutoSolver).

    faceage tune --config configs/pairs_siamese_resnet18.yaml --search configs/search/pairs.yaml --num-samples 20

Every trial is a ``faceage fit`` run in a Ray worker with the sampled values set on dotted config keys (as on
the command line, e.g. ``model.init_args.optim.lr``) and a Ray report callback at the end of each epoch (after
its validation), so ASHA stops poor trials early. The metric comes from the model class: ``PairModule.monitor`` (``val/acc``, max) for
pair models, ``val/mae`` (min) otherwise; the search file or ``--metric``/``--mode`` may override it.
Arguments that ``faceage tune`` does not know (``--data.init_args.root DIR``) are passed to every trial's fit.

Ray runs locally by default (``ray.init(num_cpus=2, include_dashboard=False)``); ``--address`` joins a running
cluster (``ray start --head`` / ``auto``). Writes to ``--output``:

* ``results.csv``: one row per trial, best first: metric (best epoch), epochs run, time, sampled values, the
  trial's model (the exported model directory of a trial that finished; for a trial ASHA stopped, its best
  checkpoint from the epochs before the stop, if any);
* ``best_config.yaml``: the base config with the extra arguments and the best trial's values applied, ready
  for ``faceage fit --config``;
* ``trials/<trial>/``: each trial's Lightning logs; ``ray/``: Ray Tune's own records.

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

import argparse
import csv
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml

DEFAULT_MONITOR = ("val/mae", "min")
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")
SWITCH_SUFFIX, VALUE_SUFFIX = ":on", ":value"
REPORT_CALLBACK = "ray.tune.integration.pytorch_lightning.TuneReportCheckpointCallback"
FIT_SECTIONS = ("trainer", "model", "data", "seed_everything", "optimizer", "lr_scheduler", "ckpt_path", "weights", "lr_find")


# ----------------------------------------------------------------------------------------------------------
# Search space
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------------


def infer_monitor(config: dict) -> tuple[str, str]:
    """``(metric, mode)`` of the config's model class (its ``monitor`` attribute), else ``("val/mae", "min")``."""
    model = config.get("model") if isinstance(config, dict) else None
    class_path = model.get("class_path") if isinstance(model, dict) else None
    if not class_path:
        return DEFAULT_MONITOR
    import importlib

    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return tuple(getattr(cls, "monitor", DEFAULT_MONITOR))  # type: ignore[return-value]


def set_dotted(config: dict, key: str, value: Any) -> None:
    """Sets ``a.b.c`` in nested dicts, creating levels; a level with a ``class_path`` is entered through its
    ``init_args`` when the key does not name ``init_args`` itself (``model.optim.lr`` == ``model.init_args.optim.lr``)."""
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, dict) and "class_path" in node and part not in ("init_args", "class_path"):
            node = node.setdefault("init_args", {})
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    if "class_path" in node and parts[-1] not in ("init_args", "class_path"):
        node = node.setdefault("init_args", {})
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """``["--a.b", "1", "--c=x"]`` -> ``[("a.b", 1), ("c", "x")]`` (values parsed as YAML).

    Raises:
        ValueError: for an argument that is not ``--key value`` or ``--key=value``.
    """
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument {arg!r}: fit overrides must be --key value or --key=value")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"{arg} needs a value")
            key, text = arg[2:], args[i + 1]
            i += 2
        if key.split(".")[0] not in FIT_SECTIONS:
            raise ValueError(f"unknown option --{key}: neither a faceage tune option nor a fit config key ({', '.join(FIT_SECTIONS)})")
        out.append((key, yaml.safe_load(text)))
    return out


def best_config(base: dict, overrides: list[tuple[str, Any]], params: dict[str, Any]) -> dict:
    """The base config with the extra fit overrides and a trial's values applied (a deep copy)."""
    config = json.loads(json.dumps(base))
    for key, value in [*overrides, *params.items()]:
        set_dotted(config, key, value)
    return config


# ----------------------------------------------------------------------------------------------------------
# Trials
# ----------------------------------------------------------------------------------------------------------


def _report_callback_class() -> str:
    """Ray's Lightning report callback when this Ray has it, else :class:`TuneReport`."""
    try:
        from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback  # noqa: F401

        return REPORT_CALLBACK
    except ImportError:
        return f"{__name__}.TuneReport"


class TuneReport(L.Callback):
    """Reports Lightning's logged metrics to Ray Tune at the end of every training epoch (after its validation);
    used when this Ray has no ``ray.tune.integration.pytorch_lightning``."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from ray import tune

        tune.report({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit_arguments(context: dict, values: dict[str, Any], root_dir: str) -> list[str]:
    """The ``faceage fit`` argument list of one trial."""
    # reported at the end of each training epoch, after its validation; ASHA may stop a trial inside its report
    callback = {"class_path": context["callback"]}
    if context["callback"] == REPORT_CALLBACK:
        callback["init_args"] = {"save_checkpoints": False, "on": "train_epoch_end"}
    argv = [
        "fit", "--config", context["config"], *context["extra"],
        "--trainer.default_root_dir", root_dir,
        "--trainer.enable_progress_bar", "false",
        f"--trainer.callbacks+={json.dumps(callback)}",
    ]
    if context.get("max_epochs"):
        argv += ["--trainer.max_epochs", str(context["max_epochs"])]
    for key, value in values.items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return argv


def run_trial(sampled: dict[str, Any], context: dict) -> None:
    """Ray trainable: one ``faceage fit`` with the sampled values (Ray reports through the callback)."""
    from ray import tune

    from faceage.training.cli import run_cli

    os.chdir(context["cwd"])  # Ray starts trials in their own folder; config paths are relative to ours
    values = resolve_params(sampled, context["params"])
    root_dir = str(Path(context["output"]) / "trials" / tune.get_context().get_trial_name())
    run_cli(fit_arguments(context, values, root_dir))


# ----------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------


@dataclass
class TrialRow:
    """One trial's outcome for ``results.csv``."""

    trial: str
    score: float
    epochs: int
    seconds: float
    values: dict[str, Any]
    sampled: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    model: str = ""


def trial_model(output: Path, trial: str) -> str:
    """The trial's exported model directory (trials that ran to the end), else its best checkpoint, else ``""``."""
    runs = sorted((output / "trials" / trial).glob("lightning_logs/version_*"))
    for run in reversed(runs):
        if (run / "model" / "config.json").exists():
            return str(run / "model")
        best = sorted((run / "checkpoints").glob("best-*.ckpt"))
        if best:
            return str(best[-1])
    return ""


def trial_name(folder: str) -> str:
    """Ray's trial name (``<trainable>_<5 hex experiment id>_<5-digit index>``, the trial's ``get_trial_name()``) from
    its result folder name ``<trial name>_<count>_<values>_<date>``; the folder name itself when it does not match.
    The experiment id is matched as hex: an id of five digits must not end the name early."""
    match = re.match(r".*?_[0-9a-f]{5}_\d{5}(?=_|$)", folder)
    return match.group(0) if match else folder


def _trial_rows(result_grid, metric: str, mode: str, params: dict[str, Any], output: Path) -> list[TrialRow]:
    rows = []
    for result in result_grid:
        history = result.metrics_dataframe
        sampled = {k: v for k, v in (result.config or {}).items()}
        values = resolve_params(sampled, params) if sampled else {}
        trial = trial_name(Path(result.path).name if result.path else "?")
        error = _last_line(str(result.error)) if result.error else ""
        if history is None or metric not in history or history[metric].isna().all():
            rows.append(TrialRow(trial, math.nan, 0, 0.0, values, sampled, error=error or f"no {metric} reported"))
            continue
        best = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
        metrics = {
            k: float(best[k])
            for k in history.columns
            if k.startswith(("val/", "train/")) and isinstance(best[k], (int, float)) and not math.isnan(best[k])
        }
        seconds = float(history["time_total_s"].iloc[-1]) if "time_total_s" in history else 0.0
        rows.append(TrialRow(trial, float(best[metric]), int(len(history)), seconds, values, sampled, metrics, error, trial_model(output, trial)))
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: (math.isnan(r.score), sign * r.score if not math.isnan(r.score) else 0.0))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def write_results(path: Path, rows: list[TrialRow], metric: str, params: dict[str, Any]) -> None:
    """``results.csv``: rank, trial, metric, epochs, seconds, each resolved value (and switch state), other metrics."""
    switches = [k for k, s in params.items() if isinstance(s, dict) and "switch" in s]
    other = sorted({k for r in rows for k in r.metrics} - {metric})
    header = ["rank", "trial", metric, "epochs", "seconds", *params, *(k + SWITCH_SUFFIX for k in switches), *other, "model", "error"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for rank, r in enumerate(rows, 1):
            writer.writerow(
                [rank, r.trial, "" if math.isnan(r.score) else f"{r.score:.6g}", r.epochs, f"{r.seconds:.1f}",
                 *(_cell(r.values.get(k)) for k in params), *(_cell(r.sampled.get(k + SWITCH_SUFFIX)) for k in switches),
                 *(f"{r.metrics[k]:.6g}" if k in r.metrics else "" for k in other), r.model, r.error]
            )


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faceage tune",
        description="Hyper-parameter search with Ray Tune (ASHA). Unknown --key value arguments go to every trial's fit.",
        allow_abbrev=False,
    )
    p.add_argument("--config", required=True, help="faceage fit config (YAML) the trials start from")
    p.add_argument("--search", required=True, help="search space YAML (e.g. configs/search/pairs.yaml)")
    p.add_argument("--num-samples", type=int, default=10, help="trials to sample")
    p.add_argument("--max-epochs", type=int, default=None, help="epochs per trial (ASHA's max_t); default the config's")
    p.add_argument("--grace-period", type=int, default=1, help="epochs every trial runs before ASHA may stop it")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor")
    p.add_argument("--metric", default=None, help="metric to optimise (default: from the model class)")
    p.add_argument("--mode", choices=["min", "max"], default=None)
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto or HOST:6379); default: a local Ray")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the random search")
    p.add_argument("--output", default="runs/tune", help="folder for results.csv, best_config.yaml and the trials")
    return p


def _config_max_epochs(config: dict) -> int:
    trainer = config.get("trainer") or {}
    return int(trainer.get("max_epochs") or 20)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 when at least one trial reported the metric, 1 when none did, 2 for bad arguments."""
    parser = _parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        overrides = parse_overrides(extra)
        base = yaml.safe_load(Path(args.config).read_text()) or {}
        space = load_search_space(args.search)
        metric, mode = infer_monitor(best_config(base, overrides, {}))
    except (OSError, ValueError, yaml.YAMLError, ImportError, AttributeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metric = args.metric or space.metric or metric
    mode = args.mode or space.mode or mode
    if args.num_samples < 1:
        parser.error("--num-samples must be >= 1")
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    max_epochs = args.max_epochs or _config_max_epochs(best_config(base, overrides, {}))

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    started = False
    if not ray.is_initialized():
        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=args.cpus, include_dashboard=False)
        started = True
    context = {
        "config": str(Path(args.config).resolve()),
        "extra": list(extra),
        "max_epochs": max_epochs,
        "params": space.params,
        "output": str(output),
        "cwd": os.getcwd(),
        "callback": _report_callback_class(),
    }
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    # max_t one past the last epoch: ASHA stops losing trials at its rungs, the others finish their fit normally
    # (and export their best model) instead of being stopped inside their last report
    scheduler = ASHAScheduler(max_t=max_epochs + 1, grace_period=min(args.grace_period, max_epochs), reduction_factor=args.reduction_factor)
    tuner = tune.Tuner(
        trainable,
        param_space=to_ray_space(space.params),
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, scheduler=scheduler, num_samples=args.num_samples,
            search_alg=BasicVariantGenerator(random_state=args.seed),
        ),
        run_config=tune.RunConfig(name="ray", storage_path=str(output), verbose=1),
    )
    print(f"tuning {metric} ({mode}) over {', '.join(space.params)}: {args.num_samples} trials, up to {max_epochs} epochs each")
    start = time.time()
    try:
        result_grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows = _trial_rows(result_grid, metric, mode, space.params, output)
    write_results(output / "results.csv", rows, metric, space.params)
    print(f"{len(rows)} trials in {time.time() - start:.0f} s; results: {output / 'results.csv'}")
    for r in rows:
        if r.error:
            print(f"warning: trial {r.trial}: {r.error}", file=sys.stderr)
    best = rows[0] if rows and not math.isnan(rows[0].score) else None
    if best is None:
        print(f"error: no trial reported {metric}", file=sys.stderr)
        return 1
    header = f"# faceage tune: best of {len(rows)} trials by {metric} ({mode}) = {best.score:.6g}, trial {best.trial}\n"
    header += f"# search space: {args.search}; base config: {args.config}\n"
    (output / "best_config.yaml").write_text(header + yaml.safe_dump(best_config(base, overrides, best.values), sort_keys=False))
    print(f"best {metric} = {best.score:.6g} ({best.trial}): " + ", ".join(f"{k}={_cell(v)}" for k, v in best.values.items()))
    if best.model:
        print(f"best trial's model: {best.model}")
    print(f"best config: {output / 'best_config.yaml'}")
    return 0
