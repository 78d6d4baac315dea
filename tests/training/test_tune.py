"""Pair-model training through ``faceage fit`` with the recipe configs, the age-difference comparator through
``faceage validate``, and ``faceage tune`` (search-space parsing; a 2-trial Ray Tune run on tiny data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from faceage.cli import main
from faceage.models.pairs import load_pair_model
from faceage.training.search_space import load_search_space, resolve_params, to_ray_space
from faceage.training.tune import infer_monitor, parse_overrides, set_dotted

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_PAIRS = [
    "--data.pairs.data_size", "64", "--data.eval_pairs.data_size", "32", "--data.batch_size", "16",
    "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run_dir(root: Path) -> Path:
    return sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]


@pytest.mark.slow  # a whole epoch per recipe (tests/training/test_configs.py runs each one step)
@pytest.mark.parametrize("recipe", ["pairs_siamese_resnet18", "pairs_six_channel_resnet18", "pairs_age_feature"])
def test_fit_pair_recipe_one_epoch(recipe, utkface_tree, tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    model_args = ["--model.model.age_model", str(tiny_model_dir)] if recipe == "pairs_age_feature" else ["--model.model.image_size", "32"]
    main(["fit", "--config", str(CONFIGS / f"{recipe}.yaml"), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs),
          "--data.root", str(utkface_tree), *model_args, *TINY_PAIRS])
    run = _run_dir(runs)
    assert (run / "split.json").exists() and (run / "pairs_val.csv").exists() and (run / "pairs_test.csv").exists()
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["kind"] == yaml.safe_load((CONFIGS / f"{recipe}.yaml").read_text())["model"]["init_args"]["model"]["kind"]
    assert config["input"]["image_size"] == 32 and 0.0 <= config["training"]["best_val_acc"] <= 1.0
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    ckpt = torch.load(best, map_location="cpu", weights_only=True)  # plain-dict config: safe loading works
    assert ckpt["pair_model_config"]["kind"] == config["kind"]
    exported, from_ckpt = load_pair_model(run / "model"), load_pair_model(best)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(exported(x, x.flip(0)), from_ckpt(x, x.flip(0)), atol=1e-5)
    if recipe == "pairs_siamese_resnet18":
        # `faceage test --ckpt_path` rebuilds the pair module from the checkpoint's own hyper-parameters
        main(["test", "--config", str(CONFIGS / f"{recipe}.yaml"), "--ckpt_path", str(best), "--data.root", str(utkface_tree),
              "--data.split_file", str(run / "split.json"), "--trainer.default_root_dir", str(tmp_path / "test_runs"), *TINY_PAIRS])
        assert list((tmp_path / "test_runs").glob("lightning_logs/version_*"))


def test_validate_age_difference_comparator(utkface_tree, tiny_model_dir, tmp_path, capsys):
    main(["validate", "--config", str(CONFIGS / "pairs_age_feature.yaml"), "--model.model.kind", "age_difference",
          "--model.model.age_model", str(tiny_model_dir), "--data.root", str(utkface_tree),
          "--trainer.default_root_dir", str(tmp_path / "runs"), *TINY_PAIRS])
    out = capsys.readouterr().out
    assert "val/acc" in out and "val/auc" in out


# ---- faceage tune -----------------------------------------------------------------------------------------------


def test_search_space_files_parse():
    pairs = load_search_space(CONFIGS / "search" / "pairs.yaml")
    assert (pairs.metric, pairs.mode) == ("val/acc", "max")
    space = to_ray_space(pairs.params)
    assert "model.init_args.model.dropout:on" in space and "model.init_args.model.dropout:value" in space
    assert {"model.init_args.optim.lr", "data.init_args.batch_size", "model.init_args.model.hidden", "model.init_args.model.backbone"} <= set(space)
    age = load_search_space(CONFIGS / "search" / "age.yaml")
    assert age.metric is None and "model.optim.lr" in age.params


def test_search_space_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, words in [
        ("space: {a.b: {loguniform: [0, 1]}}", "bounds must be > 0"),
        ("space: {a.b: {uniform: [2, 1]}}", "low < high"),
        ("space: {a.b: {normal: [0, 1]}}", "expected one of"),
        ("space: {a.b: {switch: {choice: [true, false]}}}", "a switch needs"),
        ("metric: x", "non-empty 'space'"),
    ]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=words):
            load_search_space(bad)


def test_resolve_switch_and_dotted_keys():
    params = {"m.lr": {"loguniform": [1e-4, 1e-1]}, "m.drop": {"switch": {"choice": [True, False]}, "value": {"uniform": [0.1, 0.7]}, "off_value": 0.0}}
    assert resolve_params({"m.lr": 0.01, "m.drop:on": True, "m.drop:value": 0.3}, params) == {"m.lr": 0.01, "m.drop": 0.3}
    assert resolve_params({"m.lr": 0.01, "m.drop:on": False, "m.drop:value": 0.3}, params)["m.drop"] == 0.0
    config = {"model": {"class_path": "x.Y", "init_args": {"optim": {"lr": 1}}}, "data": {"batch_size": 8}}
    set_dotted(config, "model.init_args.optim.lr", 0.5)
    set_dotted(config, "model.model.hidden", [4])  # class_path levels are entered through init_args
    set_dotted(config, "data.batch_size", 32)
    assert config == {"model": {"class_path": "x.Y", "init_args": {"optim": {"lr": 0.5}, "model": {"hidden": [4]}}}, "data": {"batch_size": 32}}
    assert parse_overrides(["--data.b", "1", "--model.c=[1, 2]", "--trainer.d", "x"]) == [("data.b", 1), ("model.c", [1, 2]), ("trainer.d", "x")]
    with pytest.raises(ValueError, match="--key value"):
        parse_overrides(["oops"])
    with pytest.raises(ValueError, match="unknown option --num-sample"):
        parse_overrides(["--num-sample", "2"])  # a typo is caught before any trial starts


def test_fallback_report_callback(monkeypatch):
    from types import SimpleNamespace

    from ray import tune

    from faceage.training.tune import TuneReport, fit_arguments

    reported = []
    monkeypatch.setattr(tune, "report", lambda metrics, **kw: reported.append(metrics))
    TuneReport().on_train_epoch_end(SimpleNamespace(callback_metrics={"val/acc": torch.tensor(0.75)}), None)
    assert reported == [{"val/acc": 0.75}]
    context = {"config": "c.yaml", "extra": ["--data.root", "d"], "max_epochs": 2, "callback": "faceage.training.tune.TuneReport"}
    argv = fit_arguments(context, {"model.model.hidden": [8], "model.model.backbone": "resnet18"}, "out")
    assert argv[:5] == ["fit", "--config", "c.yaml", "--data.root", "d"]
    assert argv[-4:] == ["--model.model.hidden", "[8]", "--model.model.backbone", "resnet18"]
    assert '--trainer.callbacks+={"class_path": "faceage.training.tune.TuneReport"}' in argv


def test_trial_name_from_result_folder():
    from faceage.training.tune import trial_name

    assert trial_name("run_trial_a1b2c_00001_1_model.lr=0.01_2026-11-25_18-00-42") == "run_trial_a1b2c_00001"
    # an experiment id made only of digits (about 1 run in 10) must not cut the name at the id
    assert trial_name("run_trial_23181_00000_0_model.lr=0.0001_2026-11-25_18-00-42") == "run_trial_23181_00000"
    assert trial_name("run_trial_23181_00000") == "run_trial_23181_00000"
    assert trial_name("something_else") == "something_else"


def test_metric_inferred_from_model_class():
    assert infer_monitor(yaml.safe_load((CONFIGS / "pairs_siamese_resnet18.yaml").read_text())) == ("val/acc", "max")
    assert infer_monitor({"model": {"backbone": {"name": "resnet18"}}}) == ("val/mae", "min")  # AgeModule default
    assert infer_monitor({"model": {"class_path": "faceage.training.module.AgeModule"}}) == ("val/mae", "min")


@pytest.mark.slow
def test_tune_two_trials(utkface_tree, tmp_path, capsys):
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"space": {
        "model.init_args.optim.lr": {"loguniform": [1e-4, 1e-2]},
        "model.init_args.model.hidden": {"choice": [[], [8]]},
        "model.init_args.model.dropout": {"switch": {"choice": [True, False]}, "value": {"uniform": [0.1, 0.5]}, "off_value": 0.0},
    }}))
    out = tmp_path / "tune"
    code = main(["tune", "--config", str(CONFIGS / "pairs_siamese_resnet18.yaml"), "--search", str(search), "--num-samples", "2",
                 "--max-epochs", "1", "--output", str(out), "--data.init_args.root", str(utkface_tree),
                 "--model.init_args.model.image_size", "32", *TINY_PAIRS])
    assert code == 0, capsys.readouterr().err[-3000:]
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [r["rank"] for r in rows] == ["1", "2"]
    scores = [float(r["val/acc"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(r["model.init_args.model.dropout:on"] in ("true", "false") for r in rows)
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    init = best["model"]["init_args"]
    assert init["optim"]["lr"] == pytest.approx(float(rows[0]["model.init_args.optim.lr"]))
    assert init["model"]["hidden"] == json.loads(rows[0]["model.init_args.model.hidden"])
    assert best["data"]["init_args"]["root"] == str(utkface_tree) and best["trainer"]["max_epochs"] == 10  # the recipe's own
    # the best trial always survives ASHA and finishes its fit: its model directory is exported
    assert (Path(rows[0]["model"]) / "config.json").exists() and load_pair_model(rows[0]["model"]).kind == "siamese"
    assert len(list((out / "trials").glob("*/lightning_logs/version_0/split.json"))) == 2
