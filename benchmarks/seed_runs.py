"""The seeds' experiments on real data: runs a ``faceage kfold`` (or ``crossdata``) command as a user would, times it,
and writes ``benchmarks/<name>.json`` with the command, the wall time, the machine and the figures beside the seed's.

    python -m benchmarks.seed_runs --seed-figure 5.517 seeds_aaf_3fold -- \
        faceage kfold --config configs/seeds/004_aaf_mean_variance.yaml --output runs/seeds/004_aaf

A run already made is recorded without running it again: ``--results DIR/kfold_results.json --wall-seconds S`` (or
a ``faceage test`` run's ``test_results.json``, age or pair model).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, machine_info, write_json


def _output_dir(command: list[str]) -> Path | None:
    return Path(command[command.index("--output") + 1]) if "--output" in command else None


def summarise(results: dict) -> dict:
    """The figures worth a table row from ``kfold_results.json``, ``crossdata.json`` or a ``test_results.json``."""
    if "summary" in results:  # kfold
        s = results["summary"]
        return {"mae_mean": s["mae"]["mean"], "mae_std": s["mae"]["std"], "cs5_mean": s["cs@5"]["mean"],
                "mae_per_fold": [f["mae"] for f in results["per_fold"]], "n_per_fold": [f["n"] for f in results["per_fold"]],
                "mae_pooled": results.get("pooled", {}).get("mae")}
    if "n_pairs" in results:  # faceage test of a pair model
        return {"acc": results["overall"]["acc"], "auc": results["overall"]["auc"], "n_pairs": results["n_pairs"]}
    if "overall" in results:  # faceage test of an age model
        o = results["overall"]
        return {"mae": o["mae"], "rmse": o["rmse"], "cs5": o["cs@5"], "n": o["n"]}
    return {"trained_on": results["trained_on"], "tested_on": results["tested_on"], "mae": results["mae"], "n": results["n"]}


def start_lineage(output: Path) -> list | None:
    """The lineage the run's first saved model records (its start's links and its own fit), if any."""
    for config in sorted(output.glob("**/model/config.json")):
        return json.loads(config.read_text()).get("lineage")
    return None


def seen_before(lineage: list | None) -> list[str] | None:
    """The datasets whose ages the run's start had learnt before this run (every link but the run's own fit)."""
    from faceage.models.lineage import seen_with_ages

    return None if lineage is None else seen_with_ages(lineage[:-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="benchmarks/<name>.json (options go before it: what follows is the command)")
    p.add_argument("--seed-figure", type=float, default=None, help="the seed's own figure for this experiment")
    p.add_argument("--note", default="", help="what else a reader needs (data, machine load)")
    p.add_argument("--results", type=Path, default=None, help="record this finished run's results instead of running")
    p.add_argument("--wall-seconds", type=float, default=None, help="the finished run's wall time")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- faceage kfold|crossdata ...")
    args = p.parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else list(args.command)
    if not command:
        p.error("give the command after --")
    wall = args.wall_seconds
    results_path = args.results
    if results_path is None:
        start = time.perf_counter()
        code = subprocess.call(command, cwd=REPO)
        wall = time.perf_counter() - start
        if code != 0:
            print(f"{shlex.join(command)}: exit status {code}", file=sys.stderr)
            return code
        out = _output_dir(command)
        name = "kfold_results.json" if command[1:2] == ["kfold"] else "crossdata.json"
        results_path = (REPO / out / name) if out is not None and not out.is_absolute() else (out / name if out else None)
    results = json.loads(Path(results_path).read_text())
    lineage = start_lineage(Path(results_path).parent)
    record = {"command": shlex.join(command), "wall_seconds": round(wall, 1) if wall is not None else None,
              "seed_figure": args.seed_figure, **summarise(results), "note": args.note,
              "lineage": lineage, "ages_seen_before": seen_before(lineage),
              "machine": machine_info(("torch", "lightning", "dlib")), "results": results}
    path = write_json(record, REPO / "benchmarks" / f"{args.name}.json")
    print(f"{path}: {json.dumps(summarise(results))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
