"""``faceage kfold``: fit + test every fold (k-fold / subject-exclusive) and print mean ± std
(:func:`faceage.training.kfold.run_kfold`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """``faceage kfold``: fit + test every fold of a k-fold (or leave-one-subject-out) protocol and report mean ± std.

Each fold is an ordinary ``faceage fit`` / ``faceage test`` of the same config with ``--data.split.n_folds`` and
``--data.split.fold`` set, so folds are subject-exclusive whenever the dataset has subject ids (FG-NET 5-fold or
LOSO, All-Age-Faces 3-fold, as seed 004).
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage kfold", description=DESCRIPTION,
                                epilog="Other --key value arguments are passed to every fold's fit and test.")
    p.add_argument("--config", required=True)
    p.add_argument("--folds", type=int, default=5, help="number of folds; -1 = leave one subject out")
    p.add_argument("--only", type=int, nargs="*", default=None, help="run just these folds")
    p.add_argument("--output", default="runs/kfold")
    args, overrides = p.parse_known_args(argv)
    from faceage.training.kfold import run_kfold

    out = Path(args.output)
    if args.folds < 0 and args.only is None:
        out.mkdir(parents=True, exist_ok=True)
        print("error: leave-one-subject-out has one fold per subject: name the folds to run with --only", flush=True)
        return 2
    summary = run_kfold(args.config, args.folds, out, overrides, args.only)
    s = summary["summary"]
    n = len(summary["folds"])
    print(f"{n} folds: MAE {s['mae']['mean']:.3f} ± {s['mae']['std']:.3f}, CS@5 {s['cs@5']['mean']:.3f} ± {s['cs@5']['std']:.3f}")
    print(f"results: {out / 'kfold_results.json'}")
    return 0
