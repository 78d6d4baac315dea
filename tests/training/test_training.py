"""End to end through the CLI on generated data: fit -> test (metrics JSON + plots) -> predict; exact resume after a
crash mid-epoch; DDP with two CPU processes; config errors named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from faceage.cli import main

TINY = [
    "--model.backbone.name", "resnet18", "--model.backbone.image_size", "32",
    "--model.head.name", "dldl", "--model.gender", "true", "--model.race", "true", "--model.round_ages", "true",
    "--model.optim.lr", "0.003", "--model.checkpoint_every_n_steps", "2",
    "--data.dataset", "utkface", "--data.batch_size", "16", "--data.num_workers", "0",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run_dir(root: Path) -> Path:
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1]


@pytest.mark.slow  # several epochs
def test_fit_test_predict_end_to_end(utkface_tree, tmp_path, capsys):
    runs = tmp_path / "runs"
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(runs)])
    run = _run_dir(runs)
    assert (run / "split.json").exists()
    assert (run / "checkpoints" / "last.ckpt").exists()
    model_dir = run / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["input"]["image_size"] == 32 and config["head"] == "dldl" and config["round_ages"] is True

    best = next((run / "checkpoints").glob("best-*.ckpt"))
    main(["test", *TINY, "--data.root", str(utkface_tree), "--data.split_file", str(run / "split.json"), "--ckpt_path", str(best), "--trainer.default_root_dir", str(tmp_path / "test_runs")])
    test_dir = _run_dir(tmp_path / "test_runs") / "test"
    result = json.loads((test_dir / "test_results.json").read_text())
    overall = result["overall"]
    split = json.loads((run / "split.json").read_text())
    assert overall["n"] == len(split["splits"]["test"]["indices"]) > 0
    assert 0 <= overall["cs@5"] <= overall["cs@10"] <= 1
    assert overall["rmse"] >= overall["mae"] > 0
    assert {"by_age_band", "by_gender", "by_race"} <= set(result)
    assert result["race"]["n"] == overall["n"] and 0 <= result["race"]["accuracy"] <= 1  # the multitask race head
    assert result["gender"]["n"] == overall["n"] and set(result["race"]["recall_by_class"]) <= {"white", "black", "asian", "indian", "others"}
    assurance = result["assurance"]  # uncalibrated model: raw 90% intervals, the over-18 curve and the challenge-25 rule
    assert assurance["calibrated"] is False and assurance["intervals"]["overall"]["n"] == overall["n"]
    assert set(assurance["decisions"]) == {"18"} and assurance["decisions"]["18"]["challenge"]["age"] == 25
    test_rows = list(csv.DictReader((test_dir / "test_predictions.csv").open()))
    assert len(test_rows) == overall["n"] and all(float(r["age_pred"]).is_integer() for r in test_rows)  # round_ages
    for png in ("pred_vs_true.png", "age_distributions.png", "decade_confusion.png", "mae_by_group.png"):
        assert (test_dir / png).stat().st_size > 1000

    out_csv = tmp_path / "preds.csv"
    faces = sorted(utkface_tree.iterdir())[:5]
    code = main(["predict", *map(str, faces), "--model", str(model_dir), "--no-detect", "--output", str(out_csv), "--threads", "1"])
    assert code == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 5 and list(rows[0])[:3] == ["file", "face", "age"]
    assert all(0 <= float(r["age"]) <= 110 and float(r["age_low"]) <= float(r["age_high"]) for r in rows)
    assert all(float(r["age"]).is_integer() for r in rows)  # the saved model reports whole years, as its test did


@pytest.mark.slow  # several epochs
def test_learns_on_generated_data(utkface_tree, tmp_path):
    """Brightness encodes age in the generated faces: a few epochs must beat predicting the mean age."""
    runs = tmp_path / "runs"
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.max_epochs", "8", "--data.split.val_fraction", "0.25",
          "--data.augment.rotation", "0", "--data.augment.color_jitter", "0", "--data.augment.grayscale", "0",
          "--trainer.default_root_dir", str(runs)])
    config = json.loads((_run_dir(runs) / "model" / "config.json").read_text())
    best = config["training"]["best_val_mae"]
    from faceage.data.readers import read_dataset

    records, _ = read_dataset("utkface", utkface_tree)
    ages = torch.tensor([r.age for r in records])
    baseline = (ages - ages.mean()).abs().mean().item()
    assert best < 0.8 * baseline, f"val MAE {best:.2f} vs mean-age baseline {baseline:.2f}"


class _Crash(Exception):
    pass


def _fit_module(root: Path, out: Path, max_epochs: int, crash_at_step: int | None = None, ckpt_path: str | None = None):
    import lightning as L

    from faceage.data.datamodule import AgeDataModule, SplitConfig
    from faceage.data.transforms import AugmentConfig
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig, OptimConfig

    class CrashAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if crash_at_step is not None and trainer.global_step == crash_at_step:
                raise _Crash(f"killed at step {crash_at_step}")

    L.seed_everything(0)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32, dropout=0.1), HeadConfig(name="coral"), OptimConfig(lr=0.003), checkpoint_every_n_steps=3, early_stopping_patience=0)
    data = AgeDataModule("utkface", str(root), split=SplitConfig(seed=0), batch_size=16, num_workers=0, augment=AugmentConfig(), split_file=str(out / "split.json"))
    trainer = L.Trainer(max_epochs=max_epochs, default_root_dir=str(out), callbacks=[CrashAt()], enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False, logger=False, deterministic=True)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, trainer


@pytest.mark.slow  # several epochs
def test_resume_after_crash_mid_epoch_gives_identical_weights(utkface_tree, tmp_path):
    # 96 faces -> 77 train -> 5 batches/epoch; the crash at step 7 is mid-epoch 2, last.ckpt was written at step 6
    reference, _ = _fit_module(utkface_tree, tmp_path / "a", max_epochs=2)
    with pytest.raises(_Crash):
        _fit_module(utkface_tree, tmp_path / "b", max_epochs=2, crash_at_step=7)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert last.exists()
    assert torch.load(last, weights_only=True)["global_step"] == 6
    resumed, trainer = _fit_module(utkface_tree, tmp_path / "b", max_epochs=2, ckpt_path=str(last))
    assert trainer.global_step == 10
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


def test_wrong_config_key_is_named(utkface_tree, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--data.root", str(utkface_tree), "--model.head.nmae", "coral"])
    assert "nmae" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes(utkface_tree, tmp_path):
    runs = tmp_path / "runs"
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.max_epochs", "1", "--trainer.strategy", "ddp_spawn",
          "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(runs)])
    run = _run_dir(runs)
    assert (run / "model" / "model.safetensors").exists()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # 77 train faces over 2 ranks at batch 16 -> ceil(39/16) = 3 steps per epoch
    assert ckpt["global_step"] == 3


def test_corrupt_training_image_is_skipped_and_named(utkface_tree, tmp_path, capsys):
    good = sorted(utkface_tree.iterdir())[0]
    truncated = utkface_tree / "30_0_0_20170101999999999.jpg.chip.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # header intact, data cut
    (utkface_tree / "31_0_0_20170101999999998.jpg.chip.jpg").write_text("not an image")
    runs = tmp_path / "runs"
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs)])
    out = capsys.readouterr().out
    assert "not an image" in out and "31_0_0_20170101999999998" in out  # the reader's report names the file
    assert (_run_dir(runs) / "model" / "model.safetensors").exists()  # and the run went on


def test_test_assurance_uses_the_stored_calibration():
    import numpy as np

    from faceage.training.reporting import test_assurance

    dist = np.zeros((4, 111))
    dist[np.arange(4), [15, 16, 30, 40]] = 1.0
    pred, true = np.array([15.0, 16, 30, 40]), np.array([16.0, 14, 31, 45])
    config = {"min_age": 0, "max_age": 110, "calibration": {"bands": [[0, 200]], "intervals": {"0.8": {"level": 0.8, "offsets": {"0+": 2}}},
                                                            "verify": {"18": {"threshold": 0.5}}}}
    out = test_assurance(config, dist, pred, true, np.array([0, 1, 0, 1]), np.full(4, -1))
    assert out["calibrated"] is True and out["level"] == 0.8
    assert out["intervals"]["overall"]["coverage"] == 0.75 and out["intervals"]["overall"]["width"] == 4.0  # 40 +- 2 misses 45
    policy = out["decisions"]["18"]["policy"]["overall"]
    assert policy["fpr"] == 0.0 and policy["referral"] == 0.0 and out["decisions"]["18"]["policy"]["threshold"] == 0.5
    raw = test_assurance({"min_age": 0}, dist, pred, true, np.array([0, 1, 0, 1]), np.full(4, -1), intervals=np.stack([pred, pred], 1))
    assert raw["calibrated"] is False and raw["intervals"]["overall"]["coverage"] == 0.0 and "policy" not in raw["decisions"]["18"]
