"""``faceage tune``: hyper-parameter search with Ray Tune (ASHA) over a ``faceage fit`` config
(:mod:`faceage.training.tune`); prints the best trial and writes ``results.csv`` and ``best_config.yaml``."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path


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


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 when at least one trial reported the metric, 1 when none did, 2 for bad arguments."""
    import os

    import yaml

    from faceage.training.tune import cell, plan_tune, run_tune, write_best_config

    # Ctrl-C / SIGTERM stop the search at once through faceage's handler (Ray Tune's own SIGINT handler would let the
    # trials run on to a final checkpoint and return as if the search had ended)
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

    parser = _parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = plan_tune(args.config, args.search, extra, args.metric, args.mode, args.max_epochs)
    except (OSError, ValueError, yaml.YAMLError, ImportError, AttributeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.num_samples < 1:
        parser.error("--num-samples must be >= 1")
    output = Path(args.output).resolve()
    metric, mode = plan.metric, plan.mode
    print(f"tuning {metric} ({mode}) over {', '.join(plan.space.params)}: {args.num_samples} trials, up to {plan.max_epochs} epochs each")
    start = time.time()
    rows = run_tune(plan, output, args.num_samples, args.grace_period, args.reduction_factor, args.address, args.cpus,
                    args.cpus_per_trial, args.gpus_per_trial, args.seed)
    print(f"{len(rows)} trials in {time.time() - start:.0f} s; results: {output / 'results.csv'}")
    for r in rows:
        if r.error:
            print(f"warning: trial {r.trial}: {r.error}", file=sys.stderr)
    best = rows[0] if rows and not math.isnan(rows[0].score) else None
    if best is None:
        print(f"error: no trial reported {metric}", file=sys.stderr)
        return 1
    write_best_config(plan, best, len(rows), output / "best_config.yaml")
    print(f"best {metric} = {best.score:.6g} ({best.trial}): " + ", ".join(f"{k}={cell(v)}" for k, v in best.values.items()))
    if best.model:
        print(f"best trial's model: {best.model}")
    print(f"best config: {output / 'best_config.yaml'}")
    return 0
