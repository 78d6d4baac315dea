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

The search-space file and its distributions: :mod:`faceage.training.search_space`; the command line:
:mod:`faceage.cli.tune`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from faceage.training.search_space import SWITCH_SUFFIX, SearchSpace, load_search_space, resolve_params, to_ray_space

DEFAULT_MONITOR = ("val/mae", "min")
REPORT_CALLBACK = "ray.tune.integration.pytorch_lightning.TuneReportCheckpointCallback"
FIT_SECTIONS = ("trainer", "model", "data", "seed_everything", "optimizer", "lr_scheduler", "ckpt_path", "weights", "lr_find")


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

    from faceage.training.lightning_cli import run_cli

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
                 *(cell(r.values.get(k)) for k in params), *(cell(r.sampled.get(k + SWITCH_SUFFIX)) for k in switches),
                 *(f"{r.metrics[k]:.6g}" if k in r.metrics else "" for k in other), r.model, r.error]
            )


# ----------------------------------------------------------------------------------------------------------
# Runner
# ----------------------------------------------------------------------------------------------------------


@dataclass
class TunePlan:
    """What a search runs: the base fit config with the extra fit arguments, the space, the metric and the epochs."""

    config: str
    search: str
    base: dict
    extra: list[str]
    overrides: list[tuple[str, Any]]
    space: SearchSpace
    metric: str
    mode: str
    max_epochs: int


def _config_max_epochs(config: dict) -> int:
    trainer = config.get("trainer") or {}
    return int(trainer.get("max_epochs") or 20)


def plan_tune(config: str, search: str, extra: list[str], metric: str | None = None, mode: str | None = None,
              max_epochs: int | None = None) -> TunePlan:
    """Reads the base config and the search space; the metric and mode come from ``metric``/``mode``, else the search
    file, else the model class (:func:`infer_monitor`); the epochs from ``max_epochs``, else the config's (20).

    Raises:
        OSError, ValueError, yaml.YAMLError: for an unreadable or malformed config, search file or fit argument.
        ImportError, AttributeError: for a model class that cannot be imported.
    """
    overrides = parse_overrides(extra)
    base = yaml.safe_load(Path(config).read_text()) or {}
    space = load_search_space(search)
    model_metric, model_mode = infer_monitor(best_config(base, overrides, {}))
    return TunePlan(config, search, base, list(extra), overrides, space, metric or space.metric or model_metric,
                    mode or space.mode or model_mode, max_epochs or _config_max_epochs(best_config(base, overrides, {})))


def run_tune(plan: TunePlan, output: str | Path, num_samples: int = 10, grace_period: int = 1,
             reduction_factor: float = 3.0, address: str | None = None, cpus: int = 2, cpus_per_trial: float = 1.0,
             gpus_per_trial: float = 0.0, seed: int = 0) -> list[TrialRow]:
    """Runs the search (a local Ray of ``cpus``, or the cluster at ``address``) and writes ``OUTPUT/results.csv``.

    Returns:
        The trials, best first (a trial that reported no metric last, with its ``error``).
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False)
        started = True
    context = {
        "config": str(Path(plan.config).resolve()),
        "extra": list(plan.extra),
        "max_epochs": plan.max_epochs,
        "params": plan.space.params,
        "output": str(output),
        "cwd": os.getcwd(),
        "callback": _report_callback_class(),
    }
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    # max_t one past the last epoch: ASHA stops losing trials at its rungs, the others finish their fit normally
    # (and export their best model) instead of being stopped inside their last report
    scheduler = ASHAScheduler(max_t=plan.max_epochs + 1, grace_period=min(grace_period, plan.max_epochs), reduction_factor=reduction_factor)
    tuner = tune.Tuner(
        trainable,
        param_space=to_ray_space(plan.space.params),
        tune_config=tune.TuneConfig(
            metric=plan.metric, mode=plan.mode, scheduler=scheduler, num_samples=num_samples,
            search_alg=BasicVariantGenerator(random_state=seed),
        ),
        run_config=tune.RunConfig(name="ray", storage_path=str(output), verbose=1),
    )
    try:
        result_grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows = _trial_rows(result_grid, plan.metric, plan.mode, plan.space.params, output)
    write_results(output / "results.csv", rows, plan.metric, plan.space.params)
    return rows


def write_best_config(plan: TunePlan, best: TrialRow, n_trials: int, path: str | Path) -> Path:
    """``best_config.yaml``: the base config with the extra arguments and the best trial's values, ready for
    ``faceage fit --config``, under a header naming the search (written atomically)."""
    from faceage._io import write_text_atomic

    header = f"# faceage tune: best of {n_trials} trials by {plan.metric} ({plan.mode}) = {best.score:.6g}, trial {best.trial}\n"
    header += f"# search space: {plan.search}; base config: {plan.config}\n"
    write_text_atomic(path, header + yaml.safe_dump(best_config(plan.base, plan.overrides, best.values), sort_keys=False))
    return Path(path)


def cell(value: Any) -> str:
    """A sampled value as text (JSON for lists, dicts, booleans and ``None``), as in ``results.csv``."""
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
