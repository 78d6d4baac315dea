"""``faceage compare --pairs`` against predicting the pairs' distinct faces (the target: at most 2x the time).

Draws ``--pairs`` random pairs (seeded) of distinct faces from one split of the saved UTKFace split, writes them as a
pairs CSV (absolute paths) and a folder of links to the split's chips, then times, in fresh subprocesses (whole
process, start-up included), ``faceage predict DIR --no-detect`` on the chips and ``faceage compare --pairs CSV
--no-detect`` on the pairs, alternating, ``--repeat`` times each. Reports wall seconds and their ratio (medians).

    python -m benchmarks.compare_pairs --split-file benchmarks/utkface_split_seed0.json --split test --pairs 20000 \\
        --repeat 2 --json benchmarks/compare_pairs.json
"""

from __future__ import annotations

import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, read_split, split_parser, write_json


def run(cmd: list[str]) -> float:
    """Wall seconds of ``cmd`` in a fresh subprocess; exits with one line and its stderr's tail on failure."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    p = split_parser(__doc__, split="test")
    p.add_argument("--pairs", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)
    records, split = read_split(args)
    files = sorted(str(Path(records[i].path).resolve()) for i in split[args.split])
    rng = random.Random(args.seed)
    faceage = [sys.executable, "-m", "faceage.cli"]
    runs: dict[str, list] = {"predict": [], "compare": []}
    with tempfile.TemporaryDirectory(prefix="faceage_pairs_") as tmp:
        chips = Path(tmp) / "chips"
        chips.mkdir()
        for f in files:
            (chips / Path(f).name).symlink_to(f)
        pairs = Path(tmp) / "pairs.csv"
        drawn = (rng.sample(files, 2) for _ in range(args.pairs))
        pairs.write_text("left,right\n" + "".join(f"{a},{b}\n" for a, b in drawn))
        quiet = ["--no-detect", "--quiet", "--output"]
        commands = {
            "predict": [*faceage, "predict", str(chips), *quiet, str(Path(tmp) / "p.csv")],
            "compare": [*faceage, "compare", "--pairs", str(pairs), *quiet, str(Path(tmp) / "c.csv")],
        }
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(run(cmd))
    given = sys.argv[1:] if argv is None else argv
    result = {
        "command": shlex.join([sys.executable, "-m", "benchmarks.compare_pairs", *given]),
        "machine": machine_info(("onnxruntime", "numpy", "pillow")),
        "data": str(args.data), "split": args.split, "faces": len(files), "pairs": args.pairs, "seed": args.seed,
        "wall_s": runs,
    }
    med = {k: statistics.median(v) for k, v in result["wall_s"].items()}
    result["ratio_compare_to_predict"] = med["compare"] / med["predict"]
    print(f"{len(files)} {args.split} faces, {args.pairs} pairs: predict {med['predict']:.2f} s, compare "
          f"{med['compare']:.2f} s wall (medians of {args.repeat}): {result['ratio_compare_to_predict']:.2f}x")
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
