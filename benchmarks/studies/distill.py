"""Distil an ensemble into the bundle's members: trains teachers, then students that also fit the teachers' soft
predictions (``faceage fit --model.teacher``), every run through ``faceage fit --config configs/default.yaml``.

Two parts, each on the same saved split: ``t`` trains on the training faces only (its validation scores choose),
``tv`` refits on training + validation faces (what a bundle would ship). Per part: teachers at each ``--sizes`` x
``--teacher-seeds``, then students at 64 px (the bundle's size and speed) for ``--student-seeds``, taught by all
that part's teachers (with flip averaging). Runs go ``--parallel`` at a time (one GPU takes many of these small
fits at once; on a CPU use 1). Afterwards the ``t`` models' val/test outputs are cached for
``benchmarks/studies/ensembles.py`` and the ensembles that matter are scored.

    python -m benchmarks.studies.distill --split-file RUN/split.json --out runs/distill --parallel 12
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, read_split, split_parser
from benchmarks.studies.ensembles import combine, model_outputs, pair_accuracy, truth_by_part

ROOT = REPO  # the checkout: configs/ and the faceage package the fits run


def fit_command(args, name: str, seed: int, size: int, part: str, teachers: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "faceage.cli", "fit", "--config", str(ROOT / "configs" / "default.yaml"),
           "--seed_everything", str(seed), "--model.backbone.image_size", str(size), "--data.root", args.data,
           "--data.split_file", args.split_file, "--data.num_workers", str(args.workers),
           "--trainer.default_root_dir", str(Path(args.out) / name), "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false"]
    if part == "tv":
        cmd += ["--data.train_splits", "[train,val]"]
    if teachers:
        cmd += ["--model.teacher", "[" + ",".join(teachers) + "]", "--model.teacher_weight", str(args.teacher_weight)]
    return cmd + args.extra


def model_dir(out: Path, name: str) -> Path | None:
    found = sorted((out / name).glob("lightning_logs/version_*/model/config.json"))
    return found[-1].parent if found else None


def run_all(jobs: list[tuple[str, list[str]]], out: Path, parallel: int, max_time: str | None) -> dict[str, float]:
    """Runs the fits ``parallel`` at a time; returns each one's wall seconds (a failed fit is reported, not fatal)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    (out / "logs").mkdir(parents=True, exist_ok=True)
    pending, running, walls = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            if max_time:
                cmd = cmd + ["--trainer.max_time", max_time]
            log = open(out / "logs" / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), time.time(), log)
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                walls[name] = time.time() - start
                status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see logs/{name}.log)"
                print(f"{name}: {status} in {walls[name]:.0f} s", flush=True)
                del running[name]
        time.sleep(1)
    return walls


def score(outputs: dict[str, dict], records: list, split: dict, combos: dict[str, list[str]]) -> list[str]:
    """Markdown rows: val/test MAE (whole years) and CS@5, gender, and val pair accuracy of each named ensemble."""
    truth = truth_by_part(records, split)
    rows = ["| models | flip | val MAE | val CS@5 | val gender | test MAE | test CS@5 | test gender | val pairs (all / gap<=5) |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, names in combos.items():
        outs = [outputs[n] for n in names if n in outputs]
        if len(outs) != len(names):
            continue
        for flip in (False, True):
            cells = []
            for part in ("val", "test"):
                dist = combine(outs, part, flip, "dist")
                ages, gender, _ = truth[part]
                err = np.abs(np.round(dist @ np.arange(dist.shape[1])) - ages)
                g = combine(outs, part, flip, "gender")
                known = gender >= 0
                gacc = f"{((g[known] >= 0.5) == (gender[known] == 1)).mean():.3f}" if g is not None else "–"
                cells += [f"{err.mean():.3f}", f"{(err <= 5).mean():.3f}", gacc]
                if part == "val":
                    pairs = "{:.3f} / {:.3f}".format(*pair_accuracy(dist, ages))
            rows.append(f"| {label} | {'on' if flip else 'off'} | " + " | ".join(cells) + f" | {pairs} |")
    return rows


def main() -> None:
    p = split_parser(__doc__, split=None)
    p.add_argument("--out", required=True)
    p.add_argument("--parts", nargs="+", default=["t", "tv"], choices=["t", "tv"])
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 80], help="teacher image sizes")
    p.add_argument("--teacher-seeds", nargs="+", type=int, default=[10, 11, 12])
    p.add_argument("--student-seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--teacher-weight", type=float, default=0.5)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="data loader workers per fit")
    p.add_argument("--teacher-max-time", default=None, help="Lightning max_time of each teacher fit (DD:HH:MM:SS)")
    p.add_argument("--student-max-time", default=None)
    p.add_argument("--extra", default="", help="further `faceage fit` arguments for every run, as one string")
    args = p.parse_args()
    args.extra = shlex.split(args.extra)
    args.data, args.split_file = str(Path(args.data).resolve()), str(Path(args.split_file).resolve())  # fits run in the repo root
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    teachers = {part: [(f"{part}_teach{size}_s{seed}", seed, size) for size in args.sizes for seed in args.teacher_seeds] for part in args.parts}
    walls = run_all([(n, fit_command(args, n, seed, size, part)) for part in args.parts for n, seed, size in teachers[part]], out, args.parallel, args.teacher_max_time)
    print(f"teachers done at {time.time() - start:.0f} s", flush=True)
    students = []
    for part in args.parts:
        dirs = [str(d) for n, _, _ in teachers[part] if (d := model_dir(out, n)) is not None]
        if dirs:
            students += [(f"{part}_student_s{seed}", fit_command(args, f"{part}_student_s{seed}", seed, 64, part, dirs)) for seed in args.student_seeds]
    walls.update(run_all(students, out, args.parallel, args.student_max_time))
    print(f"students done at {time.time() - start:.0f} s", flush=True)

    summary = {"walls_s": walls, "best_val_mae": {}}
    for name in walls:
        if (d := model_dir(out, name)) is not None:
            summary["best_val_mae"][name] = json.loads((d / "config.json").read_text()).get("training", {}).get("best_val_mae")
    if "t" in args.parts:
        records, split = read_split(args)
        outputs = {}
        for name in walls:
            if name.startswith("t_") and (d := model_dir(out, name)) is not None:
                outputs[name] = model_outputs(str(d), records, split)
        np.savez_compressed(out / "outputs_t.npz", **{f"{n}/{k}": v.astype(np.float16) for n, o in outputs.items() for k, v in o.items()})
        t64 = [f"t_teach64_s{s}" for s in args.teacher_seeds]
        combos = {**{n: [n] for n in outputs}, "teachers 64": t64, "all teachers": [n for n, _, _ in teachers["t"]],
                  "students": [f"t_student_s{s}" for s in args.student_seeds]}
        rows = score(outputs, records, split, combos)
        print("\n".join(rows), flush=True)
        summary["table"] = rows
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"all done at {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
