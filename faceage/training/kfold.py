"""``faceage kfold``: fit + test every fold of a k-fold (or leave-one-subject-out) protocol and report mean ± std.

Each fold is an ordinary ``faceage fit`` / ``faceage test`` of the same config with ``--data.split.n_folds`` and
``--data.split.fold`` set, so folds are subject-exclusive whenever the dataset has subject ids (FG-NET 5-fold or
LOSO, All-Age-Faces 3-fold: the published protocols of those datasets).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _latest_run(root: Path) -> Path:
    runs = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise FileNotFoundError(f"{root}: no run was written")
    return runs[-1]


def run_fold(config: str, fold: int, n_folds: int, out: Path, overrides: list[str]) -> dict:
    """Fits and tests one fold; returns its ``test_results.json`` content."""
    from faceage.training.cli import run_cli

    fold_args = ["--config", config, "--data.split.n_folds", str(n_folds), "--data.split.fold", str(fold), *overrides]
    fit_root = out / f"fold_{fold}"
    run_cli(["fit", *fold_args, "--trainer.default_root_dir", str(fit_root)])
    run = _latest_run(fit_root)
    best = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
    test_root = out / f"fold_{fold}_test"
    run_cli(["test", *fold_args, "--data.split_file", str(run / "split.json"), "--ckpt_path", str(best[-1]),
             "--trainer.default_root_dir", str(test_root)])
    return json.loads((_latest_run(test_root) / "test" / "test_results.json").read_text())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage kfold", description=__doc__,
                                epilog="Other --key value arguments are passed to every fold's fit and test.")
    p.add_argument("--config", required=True)
    p.add_argument("--folds", type=int, default=5, help="number of folds; -1 = leave one subject out")
    p.add_argument("--only", type=int, nargs="*", default=None, help="run just these folds")
    p.add_argument("--output", default="runs/kfold")
    args, overrides = p.parse_known_args(argv)
    from faceage.evaluation.metrics import save_json, summarize_folds

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.folds < 0 and args.only is None:
        print("error: leave-one-subject-out has one fold per subject: name the folds to run with --only", flush=True)
        return 2
    folds = args.only if args.only is not None else list(range(args.folds))
    results = [run_fold(args.config, k, args.folds, out, overrides) for k in folds]
    summary = {"folds": folds, "per_fold": [r["overall"] for r in results], "summary": summarize_folds(results)}
    save_json(summary, out / "kfold_results.json")
    s = summary["summary"]
    print(f"{len(folds)} folds: MAE {s['mae']['mean']:.3f} ± {s['mae']['std']:.3f}, CS@5 {s['cs@5']['mean']:.3f} ± {s['cs@5']['std']:.3f}")
    print(f"results: {out / 'kfold_results.json'}")
    return 0
