"""k-fold protocol (mean ± std over folds) and cross-dataset testing (train on UTKFace-style data, test on a CSV set)."""

from __future__ import annotations

import json

import pytest

from faceage.cli import main

TINY = ["--model.backbone.name", "resnet18", "--model.backbone.image_size", "32", "--model.head.name", "dldl",
        "--data.batch_size", "16", "--data.num_workers", "0", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # one fit per fold
def test_kfold_runs_each_fold_and_summarises(utkface_tree, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("seed_everything: 0\n")
    out = tmp_path / "kfold"
    code = main(["kfold", "--config", str(config), "--folds", "3", "--only", "0", "1", "--output", str(out),
                 *TINY, "--data.root", str(utkface_tree)])
    assert code == 0
    result = json.loads((out / "kfold_results.json").read_text())
    assert result["folds"] == [0, 1]
    maes = [f["mae"] for f in result["per_fold"]]
    assert result["summary"]["mae"]["mean"] == pytest.approx(sum(maes) / 2)
    # the two folds' test sets are disjoint thirds of the 96 faces
    splits = [json.loads(next((out / f"fold_{k}").glob("lightning_logs/version_*/split.json")).read_text()) for k in (0, 1)]
    tests = [set(s["splits"]["test"]["paths"]) if "paths" in s["splits"]["test"] else set(s["splits"]["test"]["indices"]) for s in splits]
    assert tests[0] and tests[1] and not tests[0] & tests[1]
    assert "2 folds: MAE" in capsys.readouterr().out


def test_cross_dataset_test_set(utkface_tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    rows = ["path,age,gender"]
    for i, face in enumerate(sorted(utkface_tree.iterdir())[:12]):
        target = other / f"face_{i}.jpg"
        target.write_bytes(face.read_bytes())
        rows.append(f"{target.name},{face.name.split('_')[0]},{face.name.split('_')[1]}")
    (other / "labels.csv").write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.default_root_dir", str(runs)])
    run = next((runs / "lightning_logs").glob("version_*"))
    main(["test", *TINY, "--data.root", str(utkface_tree), "--data.test_dataset", "csv", "--data.test_root", str(other),
          "--weights", str(run / "model"), "--trainer.default_root_dir", str(tmp_path / "cross")])
    result = json.loads(next((tmp_path / "cross").glob("lightning_logs/version_*/test/test_results.json")).read_text())
    assert result["overall"]["n"] == 12
