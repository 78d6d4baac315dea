"""Fitting on faces labelled with age groups, mixed with exact ages, through the datamodule and the Lightning module:
the groups reach the loss, the loss falls, validation and test score groups and exact ages apart."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_grouped_csv(root: Path, n: int = 64, exact_every: int = 0, seed: int = 0) -> Path:
    """``n`` generated faces whose brightness grows with age, labelled with their decade (``30-39``) in ``labels.csv``;
    with ``exact_every`` k, every k-th face has its exact age instead."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["path,age,age_group"]
    for i in range(n):
        age = int(rng.integers(1, 80))
        pixels = np.clip(rng.normal(40 + 2.5 * age, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"face{i:03d}.jpg", quality=95)
        decade = age // 10 * 10
        exact = exact_every and i % exact_every == 0
        lines.append(f"face{i:03d}.jpg,{age if exact else ''},{'' if exact else f'{decade}-{decade + 9}'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


class EpochLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.val: list[dict] = []
        self.grouped_in_batch: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.grouped_in_batch.append(int((batch["age_high"] > batch["age_low"]).sum()))

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss_epoch"]))

    def on_validation_end(self, trainer, pl_module):  # after the module's epoch-end logging
        self.val.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})


def _fit(root: Path, tmp_path: Path, head: str = "dldl", epochs: int = 3, test: bool = False):
    from faceage.data.datamodule import AgeDataModule, SplitConfig
    from faceage.data.transforms import AugmentConfig
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig, OptimConfig

    L.seed_everything(0)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name=head, max_age=90),
                       OptimConfig(lr=0.01, scheduler="none"), early_stopping_patience=0)
    data = AgeDataModule("csv", str(root), split=SplitConfig(seed=0, val_fraction=0.25, test_fraction=0.25),
                         batch_size=16, num_workers=0, cache_images="memory", augment=AugmentConfig(rotation=0, color_jitter=0),
                         split_file=str(tmp_path / "split.json"))
    seen = EpochLosses()
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=str(tmp_path), callbacks=[seen], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, data)
    if test:
        trainer.test(module, data)
    return module, data, seen


def test_fit_on_groups_mixed_with_exact_ages(tmp_path):
    root = write_grouped_csv(tmp_path / "faces", exact_every=4)
    _, data, seen = _fit(root, tmp_path / "run", test=True)
    assert sum(r.is_grouped for r in data.records) == 48
    # the bounds reach every batch: each epoch sees each grouped training face once
    assert sum(seen.grouped_in_batch) == 3 * sum(r.is_grouped for r in data.training_records())
    assert seen.losses[-1] < seen.losses[0], seen.losses
    val = seen.val[-1]
    assert {"val/mae", "val/cs5", "val/group_inside", "val/group_years_outside"} <= set(val)
    assert 0 <= val["val/group_inside"] <= 1 and val["val/group_years_outside"] >= 0
    result = json.loads((tmp_path / "run" / "test" / "test_results.json").read_text())
    test_records = data.subset("test")
    n_grouped = sum(r.is_grouped for r in test_records)
    assert result["n_grouped"] == n_grouped and result["overall"]["n"] == len(test_records) - n_grouped
    assert result["age_groups"]["n"] == n_grouped and set(result["age_groups"]["by_group"]) <= {f"{d}-{d + 9}" for d in range(0, 80, 10)}
    rows = (tmp_path / "run" / "test" / "test_predictions.csv").read_text().splitlines()
    assert rows[0] == "file,age_true,age_pred,group_low,group_high" and len(rows) == len(test_records) + 1


def test_groups_only_validation_follows_years_outside(tmp_path):
    root = write_grouped_csv(tmp_path / "faces", n=32)
    _, _, seen = _fit(root, tmp_path / "run", head="l1", epochs=1)
    val = seen.val[-1]
    assert "val/cs5" not in val  # no exact age to take an MAE of
    assert val["val/mae"] == pytest.approx(val["val/group_years_outside"])


def test_corn_refuses_grouped_training_data_before_the_first_step(tmp_path):
    root = write_grouped_csv(tmp_path / "faces", n=16)
    with pytest.raises(ValueError, match="model.head.name 'corn' cannot train on age-group labels"):
        _fit(root, tmp_path / "run", head="corn", epochs=1)
