"""Training throughput: the network's own forward + backward against the whole training pipeline.

Prints (and writes to ``benchmarks/train_throughput.json``) images/s for
- ``network``: ``AgeModule``'s model on random tensors (forward, loss, backward, AdamW step), the cost floor;
- ``pipeline``: ``faceage fit`` with a recipe on the shared data, steady state (the first ``--warmup`` batches
  and the one-off data set-up are timed apart), validation off;
and their ratio. Usage::

    python -m benchmarks.train_throughput --config configs/default.yaml --batches 60 [overrides...]
    python -m benchmarks.train_throughput --network-only --batches 5 --label sface-112 --model.backbone.name sface \
        --model.backbone.image_size 112 --model.head.init random --model.teacher null
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import add_cache_option, write_json

OUT = Path(__file__).with_suffix(".json")


class StepTimer(L.Callback):
    """Wall time of training batches after ``warmup`` ones (data loading included: it is the gap between steps)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.images, self.steps = warmup, None, 0, 0
        self.setup_s = None
        self._created = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.setup_s = time.perf_counter() - self._created

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()
        elif batch_idx > self.warmup and batch is not None:
            self.images += len(batch["age"])  # images of the batch before this one, same size
            self.steps += 1

    def rate(self) -> float:
        return self.images / (time.perf_counter() - self.t0) if self.t0 and self.images else float("nan")


def network_rate(module, batch_size: int, image_size: int, steps: int = 20, bf16: bool = False) -> float:
    model = module.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size)
    ages = torch.randint(1, 90, (batch_size,)).float()
    gender, race = torch.randint(0, 2, (batch_size,)), torch.randint(0, 5, (batch_size,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = model.loss(out, ages, gender, module.gender_weight, race, module.race_weight)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--label", default="now")
    p.add_argument("--json", type=Path, default=OUT, help="JSON of all labelled rows, this one added or replaced")
    p.add_argument("--network-only", action="store_true",
                   help="time the recipe's network alone on random tensors, --batches steps (no data read): for backbones too slow for a pipeline run")
    add_cache_option(p, "train_throughput", "the throwaway trainer root")
    args, overrides = p.parse_known_args(argv)
    from faceage.training.lightning_cli import FaceAgeCLI, TRAINER_DEFAULTS

    timer = StepTimer(args.warmup)
    cli = FaceAgeCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        seed_everything_default=0, trainer_defaults=TRAINER_DEFAULTS, run=False, auto_configure_optimizers=False,
        save_config_callback=None,
        args=["--config", args.config, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(args.batches),
              "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
              "--trainer.default_root_dir", str(args.cache), "--model.early_stopping_patience", "0", *overrides],
    )
    data = cli.datamodule
    bf16 = str(cli.trainer.precision) == "bf16-mixed"
    size = int(cli.model.model.input_config["image_size"])
    if args.network_only:
        net = network_rate(cli.model, data.batch_size, size, steps=args.batches, bf16=bf16)
        row = {"label": args.label, "config": args.config, "overrides": overrides, "threads": torch.get_num_threads(),
               "batch_size": data.batch_size, "image_size": size, "bf16": bf16, "network_images_per_s": round(net, 1)}
        return _record(row, args.json)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    pipeline = timer.rate()
    net = network_rate(cli.model, data.batch_size, size, bf16=bf16)
    row = {
        "label": args.label, "config": args.config, "overrides": overrides, "threads": torch.get_num_threads(),
        "batch_size": data.batch_size, "num_workers": data.num_workers, "cache": data.datasets["train"].cache_mode, "train_faces": len(data.datasets["train"]),
        "setup_s": round(timer.setup_s or float("nan"), 1), "pipeline_images_per_s": round(pipeline, 1),
        "network_images_per_s": round(net, 1), "ratio": round(net / pipeline, 2),
        "minutes_per_epoch": round(len(data.datasets["train"]) / pipeline / 60, 2),
    }
    return _record(row, args.json)


def _record(row: dict, path: Path) -> int:
    """Prints ``row`` and adds it to the JSON list at ``path``, replacing the row of the same label."""
    print(json.dumps(row))
    results = json.loads(path.read_text()) if path.exists() else []
    results = [r for r in results if r.get("label") != row["label"]] + [row]
    write_json(results, path, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
