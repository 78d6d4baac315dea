"""k-fold cross-validation (``faceage kfold``, :mod:`faceage.cli.kfold`): fit + test every fold of a k-fold (or
leave-one-subject-out) protocol and summarise them as mean ± std.

Each fold is an ordinary ``faceage fit`` / ``faceage test`` of the same config with ``--data.split.n_folds`` and
``--data.split.fold`` set, so folds are subject-exclusive whenever the dataset has subject ids (FG-NET 5-fold or
LOSO, All-Age-Faces 3-fold: the published protocols of those datasets).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

# tests run in float32 whatever the recipe trains in: bfloat16's 8-bit mantissa moves a predicted age by up to
# 0.25 year (ages 32-64), enough to change its whole-year rounding
FULL_PRECISION = ["--trainer.precision", "32-true"]


def _latest_run(root: Path) -> Path:
    runs = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise FileNotFoundError(f"{root}: no run was written")
    return runs[-1]


def recipe_section(config: str | Path, overrides: list[str], section: str) -> dict:
    """One top-level section (``data``, ``model``, ...) of a recipe with the ``--section.key value`` (or
    ``--section.key=value``) overrides applied, values parsed as YAML, as LightningCLI would read them; a pair recipe's
    ``class_path`` / ``init_args`` form is unwrapped."""
    recipe = yaml.safe_load(Path(config).read_text()) or {}
    node = recipe.get(section) or {}
    if isinstance(node, dict) and "init_args" in node:
        node = node["init_args"] or {}
    node = json.loads(json.dumps(node))  # a private copy
    items = list(overrides)
    i = 0
    while i < len(items):
        arg = items[i]
        key, value = (arg.split("=", 1) + [None])[:2] if "=" in arg else (arg, None)
        if value is None and i + 1 < len(items) and not items[i + 1].startswith("--"):
            value, i = items[i + 1], i + 1
        i += 1
        prefix = f"--{section}."
        if value is None or not key.startswith(prefix):
            continue
        path = key[len(prefix):].split(".")
        if path[0] == "init_args":
            path = path[1:]
        target = node
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = yaml.safe_load(value)
    return node


def recipe_folds(config: str | Path, overrides: list[str], default: int = 5) -> int:
    """The recipe's ``data.split.n_folds`` (after the overrides), or ``default`` when it asks for no folds."""
    n = (recipe_section(config, overrides, "data").get("split") or {}).get("n_folds") or 0
    return int(n) if n else default


def count_subjects(config: str | Path, overrides: list[str]) -> int:
    """Leave-one-subject-out folds of the recipe's dataset: its subjects, once its photos are read (and aligned: the
    aligned chips are cached for the folds' runs)."""
    from faceage.data.datamodule import AgeDataModule, SplitConfig
    from faceage.data.splits import leave_one_subject_out
    from faceage.data.transforms import AugmentConfig

    data = recipe_section(config, overrides, "data")
    split = SplitConfig(**{**(data.pop("split", None) or {}), "n_folds": 0})
    augment = AugmentConfig(**(data.pop("augment", None) or {}))
    module = AgeDataModule(split=split, augment=augment, **data)
    module.prepare_records()
    return len(leave_one_subject_out(module.records))


def _tested(root: Path, after: float) -> Path | None:
    """The newest ``test_results.json`` under ``root`` written after ``after`` (a timestamp), else ``None``."""
    found = [p for p in (root / "lightning_logs").glob("version_*/test/test_results.json") if p.stat().st_mtime > after]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def finished_folds(out: str | Path) -> list[int]:
    """The folds under ``out`` whose fit and test both finished (what ``--resume`` keeps)."""
    done = []
    for root in Path(out).glob("fold_*"):
        if root.name.removeprefix("fold_").isdigit():
            models = list((root / "lightning_logs").glob("version_*/model"))
            if models and _tested(root.with_name(f"{root.name}_test"), max(m.stat().st_mtime for m in models)):
                done.append(int(root.name.removeprefix("fold_")))
    return sorted(done)


def run_fold(config: str, fold: int, n_folds: int, out: Path, overrides: list[str], resume: bool = False) -> dict:
    """Fits and tests one fold; returns its ``test_results.json`` content. ``resume``: a fold whose fit and test
    finished is read back, and a fit that was stopped goes on from its ``last.ckpt`` (in its own run folder, so
    the resumed fit is the uninterrupted one)."""
    from faceage.training.lightning_cli import run_cli

    fold_args = ["--config", config, "--data.split.n_folds", str(n_folds), "--data.split.fold", str(fold), *overrides]
    fit_root = out / f"fold_{fold}"
    test_root = out / f"fold_{fold}_test"
    previous = _latest_run(fit_root) if resume and (fit_root / "lightning_logs").is_dir() else None
    if previous is not None and (previous / "model").is_dir():  # fitted: the test may be done too
        tested = _tested(test_root, (previous / "model").stat().st_mtime)
        if tested is not None:
            return json.loads(tested.read_text())
    elif previous is not None and (previous / "checkpoints" / "last.ckpt").is_file():
        run_cli(["fit", *fold_args, "--trainer.default_root_dir", str(fit_root),
                 "--ckpt_path", str(previous / "checkpoints" / "last.ckpt")])
    else:
        run_cli(["fit", *fold_args, "--trainer.default_root_dir", str(fit_root)])
    run = _latest_run(fit_root)
    best = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
    run_cli(["test", *fold_args, "--data.split_file", str(run / "split.json"), "--ckpt_path", str(best[-1]),
             *FULL_PRECISION, "--trainer.default_root_dir", str(test_root)])
    return json.loads((_latest_run(test_root) / "test" / "test_results.json").read_text())


def run_kfold(config: str, n_folds: int, out: str | Path, overrides: list[str], folds: list[int] | None = None,
              resume: bool = False) -> dict:
    """Fits and tests the ``folds`` (default: all ``n_folds``; with ``n_folds=-1``, one per subject) and writes
    ``OUT/kfold_results.json``.

    Args:
        config: the ``faceage fit`` config of every fold.
        n_folds: number of folds; ``-1``: leave one subject out.
        out: output folder (``fold_K/``, ``fold_K_test/``, ``kfold_results.json``).
        overrides: extra ``--key value`` arguments for every fold's fit and test.
        folds: the folds to run.
        resume: keep the folds that finished, and go on with a stopped fit from its ``last.ckpt``
            (:func:`run_fold`).

    Returns:
        ``{"folds", "per_fold", "summary", "pooled", "wall_seconds"}``: ``summary`` is the mean ± std over folds
        (:func:`faceage.evaluation.metrics.summarize_folds`), ``pooled`` the MAE over every test face of the folds
        together (leave-one-subject-out's usual figure), ``wall_seconds`` each fold's and the total.
    """
    from faceage.evaluation.metrics import save_json, summarize_folds

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if folds is None:
        folds = list(range(count_subjects(config, overrides) if n_folds < 0 else n_folds))
    results, walls = [], []
    for k in folds:
        t = time.perf_counter()
        results.append(run_fold(config, k, n_folds, out, overrides, resume))
        walls.append(round(time.perf_counter() - t, 1))
    per_fold = [r["overall"] for r in results]
    n = sum(f["n"] for f in per_fold)
    pooled = {"mae": sum(f["mae"] * f["n"] for f in per_fold) / n if n else None, "n": n}
    summary = {"folds": folds, "per_fold": per_fold, "summary": summarize_folds(results), "pooled": pooled,
               "wall_seconds": {"per_fold": walls, "total": round(time.perf_counter() - start, 1)}}
    save_json(summary, out / "kfold_results.json")
    return summary
