"""Every shipped age recipe parses with LightningCLI and builds its model (no training, no hub download)."""

from pathlib import Path

import pytest

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_recipe_parses_and_builds(config, tmp_path):
    from lightning.pytorch.cli import LightningCLI  # noqa: F401  (import cost paid once here)

    from faceage.training.lightning_cli import FaceAgeCLI
    import lightning as L

    args = ["--config", str(config), "--trainer.default_root_dir", str(tmp_path)]
    text = config.read_text()
    import yaml

    backbone = (yaml.safe_load(text).get("model") or {}).get("backbone") or {}
    if "class_path" not in text and isinstance(backbone, dict) and backbone.get("name") != "cydral_resnet10":
        args += ["--model.backbone.pretrained", "false"]  # hub weights are unreachable here
    if "age_feature" in config.name:
        pytest.skip("the age-feature comparator needs a trained age model directory")
    cli = FaceAgeCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     run=False, args=args, auto_configure_optimizers=False)
    assert cli.model is not None and cli.datamodule is not None
