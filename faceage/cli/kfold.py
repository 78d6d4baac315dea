"""``faceage kfold``: fit + test every fold (k-fold / subject-exclusive) and print mean ± std
(:func:`faceage.training.kfold.run_kfold`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """``faceage kfold``: fit + test every fold of a k-fold (or leave-one-subject-out) protocol and report mean ± std.

Each fold is an ordinary ``faceage fit`` / ``faceage test`` of the same config with ``--data.split.n_folds`` and
``--data.split.fold`` set, so folds are subject-exclusive whenever the dataset has subject ids (FG-NET 5-fold or
LOSO, All-Age-Faces 3-fold, as seed 004). The number of folds is the recipe's ``data.split.n_folds`` (5 when it
has none); ``--folds`` or ``--data.split.n_folds`` change it, and -1 runs one fold per subject.
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage kfold", description=DESCRIPTION,
                                epilog="Other --key value arguments are passed to every fold's fit and test.")
    p.add_argument("--config", required=True)
    p.add_argument("--folds", type=int, default=None,
                   help="number of folds; -1 = leave one subject out (default: the recipe's data.split.n_folds, else 5)")
    p.add_argument("--only", type=int, nargs="*", default=None, help="run just these folds")
    p.add_argument("--output", default="runs/kfold")
    p.add_argument("--resume", action="store_true",
                   help="keep the folds already done in --output; a fold that was stopped goes on from its last.ckpt")
    args, overrides = p.parse_known_args(argv)
    if not Path(args.config).is_file():
        print(f"error: {args.config}: config file not found", file=sys.stderr)
        return 2
    from faceage.cli._common import set_interrupt_note
    from faceage.training.kfold import finished_folds, recipe_folds, run_kfold

    n_folds = args.folds if args.folds is not None else recipe_folds(args.config, overrides)
    out = Path(args.output)
    total = len(args.only) if args.only is not None else n_folds if n_folds > 0 else None

    def note() -> str:
        return (f"{len(finished_folds(out))}{f' of {total}' if total else ''} folds done in {out}; rerun the same command "
                "with --resume (the fold that stopped goes on from its last.ckpt)")

    try:
        summary = run_kfold(args.config, n_folds, out, overrides, args.only, resume=args.resume)
    except BaseException:
        set_interrupt_note(note)  # after a stop: this, not the fold's own fit line (which names --ckpt_path)
        raise
    s = summary["summary"]
    n = len(summary["folds"])
    print(f"{n} folds: MAE {s['mae']['mean']:.3f} ± {s['mae']['std']:.3f}, CS@5 {s['cs@5']['mean']:.3f} ± {s['cs@5']['std']:.3f}"
          f"; over all {summary['pooled']['n']} test faces MAE {summary['pooled']['mae']:.3f}")
    print(f"results: {out / 'kfold_results.json'} ({summary['wall_seconds']['total'] / 60:.1f} min)")
    return 0
