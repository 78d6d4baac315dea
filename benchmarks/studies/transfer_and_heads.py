"""Transfer modes x age heads on the Cydral backbone, each a short `faceage fit` of configs/default.yaml with
overrides, same seed, split and augmentation; prints a RESULTS.md table of best validation MAE / CS@5.

    python -m benchmarks.studies.transfer_and_heads --epochs 3 --image-size 64 --out runs/compare
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "scratch + dldl": ["--model.backbone.transfer", "scratch", "--model.backbone.pretrained", "false"],
    "feature extraction (frozen) + dldl": ["--model.backbone.transfer", "frozen"],
    "fine-tune + dldl": [],
    "fine-tune + ce (DEX)": ["--model.head.name", "ce", "--model.head.kwargs", "{}"],
    "fine-tune + coral": ["--model.head.name", "coral", "--model.head.kwargs", "{}"],
    "fine-tune + mean_variance": ["--model.head.name", "mean_variance", "--model.head.kwargs", "{}"],
}


def best_val(run: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run))
    ea.Reload()
    mae = [e.value for e in ea.Scalars("val/mae")]
    cs5 = [e.value for e in ea.Scalars("val/cs5")]
    best = min(range(len(mae)), key=mae.__getitem__)
    return {"val_mae": mae[best], "val_cs5": cs5[best], "epoch": best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--max-samples", type=int, default=0, help="seeded subsample of the data (0 = all)")
    p.add_argument("--only", nargs="*", default=None)
    args = p.parse_args()
    faceage = str(Path(sys.executable).parent / "faceage")
    rows = []
    for name, extra in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        root = Path(args.out) / name.split()[0].replace("(", "") / name.replace(" ", "_").replace("+", "").replace("(", "").replace(")", "")
        cmd = [faceage, "fit", "--config", "configs/default.yaml", "--trainer.max_epochs", str(args.epochs),
               "--model.backbone.image_size", str(args.image_size), "--model.tta_flip", "false", "--model.gender", "false",
               "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
               "--data.max_samples", str(args.max_samples), *extra]
        start = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = sorted((root / "lightning_logs").glob("version_*"), key=lambda d: int(d.name.split("_")[1]))[-1]
        rows.append({"variant": name, **best_val(run), "minutes": (time.time() - start) / 60, "command": " ".join(cmd[1:])})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| variant ({args.epochs} epochs, {args.image_size} px, {args.max_samples or 'all'} faces) | best val MAE | val CS@5 | wall min |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {r['val_mae']:.2f} | {r['val_cs5']:.3f} | {r['minutes']:.1f} |")


if __name__ == "__main__":
    main()
