"""k-fold cross-validation (``faceage kfold``, :mod:`faceage.cli.kfold`): fit + test every fold of a k-fold (or
leave-one-subject-out) protocol and summarise them as mean ± std.

Each fold is an ordinary ``faceage fit`` / ``faceage test`` of the same config with ``--data.split.n_folds`` and
``--data.split.fold`` set, so folds are subject-exclusive whenever the dataset has subject ids (FG-NET 5-fold or
LOSO, All-Age-Faces 3-fold: the published protocols of those datasets).
"""

from __future__ import annotations

import json
from pathlib import Path


def _latest_run(root: Path) -> Path:
    runs = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise FileNotFoundError(f"{root}: no run was written")
    return runs[-1]


def run_fold(config: str, fold: int, n_folds: int, out: Path, overrides: list[str]) -> dict:
    """Fits and tests one fold; returns its ``test_results.json`` content."""
    from faceage.training.lightning_cli import run_cli

    fold_args = ["--config", config, "--data.split.n_folds", str(n_folds), "--data.split.fold", str(fold), *overrides]
    fit_root = out / f"fold_{fold}"
    run_cli(["fit", *fold_args, "--trainer.default_root_dir", str(fit_root)])
    run = _latest_run(fit_root)
    best = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
    test_root = out / f"fold_{fold}_test"
    run_cli(["test", *fold_args, "--data.split_file", str(run / "split.json"), "--ckpt_path", str(best[-1]),
             "--trainer.default_root_dir", str(test_root)])
    return json.loads((_latest_run(test_root) / "test" / "test_results.json").read_text())


def run_kfold(config: str, n_folds: int, out: str | Path, overrides: list[str], folds: list[int] | None = None) -> dict:
    """Fits and tests the ``folds`` (default: all ``n_folds``) and writes ``OUT/kfold_results.json``.

    Args:
        config: the ``faceage fit`` config of every fold.
        n_folds: number of folds; ``-1``: leave one subject out (then ``folds`` must be given).
        out: output folder (``fold_K/``, ``fold_K_test/``, ``kfold_results.json``).
        overrides: extra ``--key value`` arguments for every fold's fit and test.
        folds: the folds to run.

    Returns:
        ``{"folds", "per_fold", "summary"}`` (:func:`faceage.evaluation.metrics.summarize_folds`).

    Raises:
        ValueError: leave-one-subject-out without ``folds``.
    """
    from faceage.evaluation.metrics import save_json, summarize_folds

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if n_folds < 0 and folds is None:
        raise ValueError("leave-one-subject-out has one fold per subject: name the folds to run with --only")
    folds = list(folds) if folds is not None else list(range(n_folds))
    results = [run_fold(config, k, n_folds, out, overrides) for k in folds]
    summary = {"folds": folds, "per_fold": [r["overall"] for r in results], "summary": summarize_folds(results)}
    save_json(summary, out / "kfold_results.json")
    return summary
