"""Age models judged on every dataset at once: MAE, CS@5, MAE by age band, gender accuracy, 90% interval coverage and
the over-18 decision rates, per dataset and split, in one run.

A model is a model directory, ``start`` (the untuned Cydral age and gender networks through faceage's pipeline: the
network every ``cydral_resnet10`` recipe starts from, its own classifier as the head), or ``wise:ALPHA:DIR`` (the
weight-space interpolation of ``start`` and ``DIR``, :func:`faceage.models.soup.wise_ft`). Predictions run on the
datasets' aligned chips (``--no-detect``), torch engine unless ``--engine onnx``, and are cached per model, dataset
and split, so a sweep over calibration choices reads them again for free.

    python -m benchmarks.per_dataset start faceage/weights/default --split val --json benchmarks/per_dataset_val.json
    python -m benchmarks.per_dataset wise:0.7:runs/x/model --split val test

Datasets (``--datasets``, default both): ``utkface`` (``../shared/data/utkface``, split
``benchmarks/utkface_split_seed0.json``) and ``aaf`` (``../shared/data/aaf``, ``benchmarks/aaf_split_seed0.json``);
one that is absent is skipped with one line. ``--old-photos`` also scores each split as old prints would show it:
every chip turned greyscale, shrunk to 48 px and back, and re-saved as JPEG at quality 40 (copies in the cache
folder), the conditions of scanned family photos (FG-NET) that aligned dataset chips lack. A model that learned "a
grey, soft photo is an old person" shows it there as a positive bias on the young.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, default_cache, write_json

DATASETS = {
    "utkface": (REPO.parent / "shared" / "data" / "utkface", REPO / "benchmarks" / "utkface_split_seed0.json"),
    "aaf": (REPO.parent / "shared" / "data" / "aaf", REPO / "benchmarks" / "aaf_split_seed0.json"),
}
BANDS = ((0, 9), (10, 19), (20, 29), (30, 44), (45, 59), (60, 200))


def build_model(spec: str):
    """A model from a spec: ``start``, ``wise:ALPHA:DIR`` or a model directory (returned as a path)."""
    if spec == "start":
        from faceage.models.soup import start_model

        return start_model()
    if spec.startswith("wise:"):
        from faceage.models.age_model import load_model
        from faceage.models.soup import wise_ft

        _, alpha, directory = spec.split(":", 2)
        return wise_ft(load_model(directory), float(alpha))
    return spec


def _key(spec: str, engine: str, dataset: str, split: str) -> str:
    stamp = ""
    path = Path(spec.split(":", 2)[-1])
    for name in ("model.safetensors", "model.onnx", "config.json"):
        if (path / name).exists():
            stamp += f"{(path / name).stat().st_mtime_ns}"
    return hashlib.sha1(f"{spec}|{path.resolve() if path.exists() else ''}|{stamp}|{engine}|{dataset}|{split}".encode()).hexdigest()[:16]


def old_photo(path: str, folder: Path) -> str:
    """A copy of the chip at ``path`` as an old print (greyscale, 48 px and back, JPEG quality 40), made once."""
    from PIL import Image

    target = folder / (hashlib.sha1(path.encode()).hexdigest()[:16] + ".jpg")
    if not target.exists():
        with Image.open(path) as img:
            size = img.size
            grey = img.convert("L").resize((48, 48), Image.BILINEAR).resize(size, Image.BILINEAR).convert("RGB")
        folder.mkdir(parents=True, exist_ok=True)
        grey.save(target, quality=40)
    return str(target)


def predictions(spec: str, dataset: str, split: str, engine: str = "torch", cache: Path | None = None, old: bool = False) -> dict[str, np.ndarray]:
    """``{"true", "age", "dist", "gender", "gender_p", "low", "high"}`` arrays over the split's faces (cached)."""
    cache = cache or default_cache() / "per_dataset"
    path = cache / f"{_key(spec, engine, dataset + ('-old' if old else ''), split)}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    from faceage.data.readers import read_dataset
    from faceage.evaluation.predictions import select_records
    from faceage.inference.predictor import Predictor

    root, split_file = DATASETS[dataset]
    records, _ = read_dataset(dataset, root, check_images=False)
    chosen = select_records([r for r in records if r.age is not None], split, split_file=split_file)
    predictor = Predictor(build_model(spec), engine=engine, detect=False)
    rows: dict[str, list] = {k: [] for k in ("true", "age", "dist", "gender", "gender_p", "low", "high")}
    files = [old_photo(r.path, cache / "old_photos") if old else r.path for r in chosen]
    for rec, result in zip(chosen, predictor.predict_files(files), strict=True):
        if result.error or not result.faces:
            print(f"error: {result.path}: {result.error or 'no face found'}", file=sys.stderr)
            continue
        face = result.faces[0]
        rows["true"].append(float(rec.age))
        rows["age"].append(face.age)
        rows["dist"].append(np.asarray(face.distribution, dtype=np.float32))
        rows["gender"].append(-1 if rec.gender is None else int(rec.gender))
        p_female = np.nan if face.gender is None else (face.gender_p if face.gender == "female" else 1 - face.gender_p)
        rows["gender_p"].append(p_female)
        rows["low"].append(face.age_low)
        rows["high"].append(face.age_high)
    predictor.close()
    out = {k: np.asarray(v, dtype=np.float32 if k != "gender" else np.int64) for k, v in rows.items()}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def scores(p: dict[str, np.ndarray], policy_threshold: float | None = None, over: int = 18) -> dict[str, Any]:
    """Figures of one model on one dataset split."""
    from faceage.inference.calibration import p_over

    true, age = p["true"].astype(np.float64), p["age"].astype(np.float64)
    err = np.abs(age - true)
    out: dict[str, Any] = {"n": len(true), "mae": round(float(err.mean()), 3), "cs5": round(float((err <= 5).mean()), 3),
                           "bias": round(float((age - true).mean()), 2)}
    out["mae_by_band"] = {f"{lo}-{hi}" if hi < 200 else f"{lo}+": round(float(err[(true >= lo) & (true <= hi)].mean()), 2)
                          for lo, hi in BANDS if ((true >= lo) & (true <= hi)).any()}
    known = (p["gender"] >= 0) & ~np.isnan(p["gender_p"])
    if known.any():
        out["gender_acc"] = round(float(((p["gender_p"][known] > 0.5).astype(int) == p["gender"][known]).mean()), 4)
    if not np.isnan(p["low"]).all():
        out["coverage90"] = round(float(((true >= p["low"]) & (true <= p["high"])).mean()), 3)
        out["width90"] = round(float((p["high"] - p["low"]).mean()), 2)
    if policy_threshold is not None:
        passed = p_over(p["dist"].astype(np.float64), 0, over) >= policy_threshold
        minors, adults = (true >= over - 5) & (true < over), true >= 25
        out[f"over{over}"] = {"threshold": policy_threshold, "minors_n": int(minors.sum()), "minors_pass": round(float(passed[minors].mean()), 4),
                              "adults25_n": int(adults.sum()), "adults25_pass": round(float(passed[adults].mean()), 4)}
    return out


def policy_threshold(spec: str, over: int = 18) -> float | None:
    """The over-``over`` threshold stored in a model directory's calibration, if any."""
    config = Path(spec.split(":", 2)[-1]) / "config.json"
    if spec.startswith("wise:") or not config.exists():
        return None
    policy = json.loads(config.read_text()).get("calibration", {}).get("verify", {}).get(str(over))
    return None if policy is None else float(policy["threshold"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model dirs, 'start' or 'wise:ALPHA:DIR'")
    parser.add_argument("--split", nargs="+", default=["val"], choices=["val", "test"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--engine", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--old-photos", action="store_true", help="also score every split as old prints (see above)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"command": "python -m benchmarks.per_dataset " + " ".join(argv if argv is not None else sys.argv[1:]), "models": {}}
    for spec in args.models:
        per = result["models"].setdefault(spec, {})
        for dataset in args.datasets:
            if not DATASETS[dataset][0].is_dir():
                print(f"{DATASETS[dataset][0]}: dataset not found; {dataset} skipped", file=sys.stderr)
                continue
            for split, old in ((split, old) for split in args.split for old in ((False, True) if args.old_photos else (False,))):
                s = scores(predictions(spec, dataset, split, args.engine, old=old), policy_threshold(spec))
                name = dataset + ("-old" if old else "")
                per[f"{name}/{split}"] = s
                print(f"{spec:40s} {name:11s} {split:5s} n={s['n']:5d} MAE {s['mae']:.3f} CS@5 {s['cs5']:.3f} bias {s['bias']:+.2f} "
                      f"gender {s.get('gender_acc', float('nan')):.3f} cov90 {s.get('coverage90', float('nan')):.3f}"
                      + (f" over18: minors {s['over18']['minors_pass']:.3f} adults {s['over18']['adults25_pass']:.3f}" if "over18" in s else ""),
                      flush=True)
        means = [v["mae"] for k, v in per.items() if k.endswith("/val") and "-old" not in k]
        if len(means) > 1:
            per["mean_val_mae"] = round(float(np.mean(means)), 3)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
