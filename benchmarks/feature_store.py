"""Feature store: epoch times of a partially frozen SFace fit whose frozen layers are computed once.

Fits SFace (OpenCV Zoo, 112 px) with its last block and an L1 age head trainable (``transfer: partial``,
``unfreeze_last: 1``, ``feature_store: true``) on UTKFace with the saved split ``benchmarks/utkface_split_seed0.json``
for ``--epochs`` epochs, starting from an empty store, and writes::

    {"epoch_seconds": [...], "fill_seconds", "views", "faces", "train_faces", "store_gb", "val_mae": [...], ...}

Epoch 1 includes filling the store (``fill_seconds``: the frozen part over every training face for each view and
over the validation faces once); later epochs train the last block and the head on stored activations. The data
module's own set-up (reading, the decoded-chip cache) is timed apart as ``setup_seconds``. Usage::

    python -m benchmarks.feature_store --json benchmarks/feature_store.json [--limit 500] [--views 4]
    python -m benchmarks.feature_store --json benchmarks/feature_store.json --limit 500 --live --epochs 1  # no store
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import DEFAULT_DATA, REPO, add_cache_option, machine_info, write_json

SPLIT = REPO / "benchmarks" / "utkface_split_seed0.json"


class EpochClock(L.Callback):
    """Seconds from the start of the fit (before the store is filled) to the end of each training epoch (its
    validation included), and the validation MAE after each."""

    def __init__(self) -> None:
        self.t0 = self.setup_start = None
        self.setup_seconds = 0.0
        self.epoch_seconds: list[float] = []
        self.val_mae: list[float] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()  # before the module's on_fit_start fills the store
        self.setup_seconds = round(self.t0 - self.setup_start, 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        now = time.perf_counter()
        self.epoch_seconds.append(round(now - self.t0, 1))
        self.t0 = now
        mae = trainer.callback_metrics.get("val/mae")
        self.val_mae.append(round(float(mae), 3) if mae is not None else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"))
    p.add_argument("--limit", type=int, default=0, help="use a seeded subset of this many faces (0: all)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--views", type=int, default=4, help="stored views per training face (view 0 unaugmented)")
    p.add_argument("--transfer", choices=["partial", "frozen"], default="partial")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keep-store", action="store_true", help="reuse a store left by an earlier run (default: start empty)")
    p.add_argument("--live", action="store_true",
                   help="the same fit without the store (the frozen layers run every epoch): adds live_epoch_seconds and "
                        "live_val_mae to the JSON's other figures")
    add_cache_option(p, "feature_store_bench", "the store and the throwaway run")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"{args.data}: UTKFace data not found; nothing measured (pass --data DIR)")
        return 0
    from faceage.data.datamodule import AgeDataModule
    from faceage.data.transforms import AugmentConfig
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig
    from faceage.training.optim import OptimConfig

    store_dir, run_dir = args.cache / "features", args.cache / "run"
    if not args.keep_store:
        shutil.rmtree(store_dir, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    L.seed_everything(0)
    backbone = BackboneConfig(name="sface", pretrained=True, transfer=args.transfer, unfreeze_last=1 if args.transfer == "partial" else 0,
                              image_size=112, feature_store=not args.live, feature_views=args.views, feature_dir=str(store_dir))
    module = AgeModule(backbone, HeadConfig(name="l1", min_age=0, max_age=110),
                       OptimConfig(name="adamw", lr=1e-3, backbone_lr=1e-4, weight_decay=1e-4, scheduler="cosine"),
                       early_stopping_patience=0, round_ages=True)
    data = AgeDataModule("utkface", args.data, split_file=str(SPLIT), batch_size=args.batch_size, num_workers=1,
                         max_samples=args.limit, check_images=False,
                         augment=AugmentConfig(rotation=10.0, translate=0.04, scale=0.08, color_jitter=0.2, grayscale=0.05))
    clock = EpochClock()
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=str(run_dir), logger=False, precision="bf16-mixed",
                        callbacks=[clock], enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0)
    clock.setup_start = time.perf_counter()  # the data module's setup comes first in fit
    trainer.fit(module, data)
    if args.live:
        result = json.loads(args.json.read_text()) if args.json.exists() else {}
        result.update(live_epoch_seconds=clock.epoch_seconds, live_val_mae=clock.val_mae, live_limit=args.limit,
                      live_machine=machine_info(("torch", "lightning", "numpy")))
        write_json(result, args.json)
        print({k: result[k] for k in ("live_epoch_seconds", "live_val_mae")})
        return 0
    stats = module._store[0].stats
    first, later = clock.epoch_seconds[0], clock.epoch_seconds[1:]
    result = {
        "epoch_seconds": clock.epoch_seconds,
        "later_over_first": [round(s / first, 3) for s in later],
        "fill_seconds": stats["fill_seconds"],
        "setup_seconds": clock.setup_seconds,
        "val_mae": clock.val_mae,
        "views": args.views,
        "faces": stats["faces"],
        "train_faces": len(data.datasets["train"]),
        "val_faces": len(data.datasets["val"]),
        "face_views_computed": stats["rows_computed"],
        "stored_shape": stats["shape"],
        "store_gb": round(stats["store_bytes"] / 1e9, 2),
        "backbone": "sface", "transfer": args.transfer, "unfreeze_last": backbone.unfreeze_last, "image_size": 112,
        "batch_size": args.batch_size, "precision": "bf16-mixed", "limit": args.limit, "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "machine": machine_info(("torch", "lightning", "numpy")),
        "command": "python -m benchmarks.feature_store " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(result, args.json)
    print({k: result[k] for k in ("epoch_seconds", "later_over_first", "fill_seconds", "val_mae", "store_gb")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
