"""Bias report numbers on a predictions CSV with known errors, its HTML/markdown output, the CLI, and sensitivity."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from PIL import Image

from faceage.cli.report import main as report_main
from faceage.evaluation import report as rep
from faceage.evaluation import sensitivity as sens


def _write_csv(path, rows, header="file,age_true,age_pred"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(",".join(str(c) for c in r) for r in rows) + "\n")
    return path


@pytest.fixture()
def run_dir(tmp_path):
    """40 men (white) predicted exactly 2 years too old, 40 women (asian) 10 years too young; ages 20..59."""
    rows = []
    for i in range(40):
        age = 20 + i
        rows.append((f"data/{age}_0_0_2017010112000000{i:02d}.jpg.chip.jpg", age, age + 2))
        rows.append((f"data/{age}_1_2_2017010112000001{i:02d}.jpg.chip.jpg", age, age - 10))
    _write_csv(tmp_path / "run" / "test" / "test_predictions.csv", rows)
    return tmp_path / "run"


def test_numbers_and_flags(run_dir):
    preds = rep.read_predictions_csv(rep.find_predictions_csv(run_dir))
    assert len(preds) == 80
    assert set(preds.gender) == {0, 1} and set(preds.race) == {0, 2}  # parsed from the UTKFace names
    report = rep.build_report(preds, n_boot=200)
    assert report["overall"]["mae"] == pytest.approx(6.0)
    assert report["overall"]["cs@5"] == pytest.approx(0.5)
    by_gender = {r["group"]: r for r in report["groups"]["gender"]}
    assert by_gender["male"]["mae"] == pytest.approx(2.0) and by_gender["male"]["n"] == 40
    assert by_gender["female"]["mae"] == pytest.approx(10.0)
    assert by_gender["male"]["cs@5"] == 1.0 and by_gender["female"]["cs@5"] == 0.0
    assert by_gender["female"]["bias"] == pytest.approx(-10.0)
    assert by_gender["female"]["mae_ci"] == pytest.approx((10.0, 10.0))  # every error is exactly 10
    assert by_gender["female"]["flagged"] and not by_gender["male"]["flagged"]
    by_race = {r["group"]: r for r in report["groups"]["race"]}
    assert by_race["asian"]["flagged"] and not by_race["white"]["flagged"]
    # crossings: 20-29 x female has n=10 -> flagged; the 3-way table exists
    cross = {r["group"]: r for r in report["groups"]["age band × gender"]}
    assert cross["20-29 / female"]["n"] == 10 and cross["20-29 / female"]["flagged"]
    assert "age band × gender × race" in report["groups"]
    flagged = {(r["section"], r["group"]) for r in report["flagged"]}
    assert ("gender", "female") in flagged and not any("male" == g for _, g in flagged)
    assert report["gender"] is None  # no gender predictions in this CSV


def test_small_groups_are_not_flagged(tmp_path):
    rows = [(f"{30}_0_0_20170101120000{i:03d}.jpg", 30, 31) for i in range(30)]
    rows += [(f"{30}_1_1_20170101120001{i:03d}.jpg", 30, 50) for i in range(5)]  # huge error but n=5
    preds = rep.read_predictions_csv(_write_csv(tmp_path / "p.csv", rows))
    report = rep.build_report(preds, n_boot=100)
    women = {r["group"]: r for r in report["groups"]["gender"]}["female"]
    assert women["mae"] == pytest.approx(20.0) and not women["flagged"]


def test_gender_columns_and_accuracy(tmp_path):
    rows = []
    for i in range(20):  # women always right, men right half the time
        rows.append((f"a{i}.jpg", 30, 30, 1, 0, 0.9))
        rows.append((f"b{i}.jpg", 30, 30, 0, 1, 0.9 if i % 2 else 0.1))
    path = _write_csv(tmp_path / "p.csv", rows, "file,age_true,age_pred,gender_true,race_true,gender_prob")
    preds = rep.read_predictions_csv(path)
    report = rep.build_report(preds, n_boot=100)
    g = report["gender"]
    assert g["overall"]["accuracy"] == pytest.approx(0.75) and g["overall"]["n"] == 40
    by_race = {r["group"]: r for r in g["by race"]}
    assert by_race["white"]["accuracy"] == 1.0 and by_race["black"]["accuracy"] == 0.5
    assert by_race["black"]["flagged"] and not by_race["white"]["flagged"]
    assert report["metrics"]["gender"]["accuracy"] == pytest.approx(0.75)


def test_missing_column_is_a_clear_error(tmp_path):
    path = _write_csv(tmp_path / "p.csv", [("x.jpg", 3)], "file,age_true")
    with pytest.raises(ValueError, match="age_pred"):
        rep.read_predictions_csv(path)


def test_html_is_self_contained_and_markdown(run_dir, tmp_path):
    preds = rep.read_predictions_csv(rep.find_predictions_csv(run_dir))
    report = rep.build_report(preds, n_boot=100)
    paths = rep.write_report(report, preds, tmp_path / "out")
    page = paths["html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) >= 4
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page and "src='plots/" not in page
    assert "class='flag'" in page and "female" in page
    md = paths["markdown"].read_text()
    assert "## Flagged groups" in md and "| female | 40 | 10.00 |" in md
    assert (tmp_path / "out" / "plots" / "mae_ci_by_group.png").exists()
    assert paths["json"].exists()


def test_cli_run_dir(run_dir, capsys):
    assert report_main([str(run_dir), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "flagged" in out and (run_dir / "report" / "report.html").exists()


def test_cli_errors(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no test/test_predictions.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report_main([])


# ------------------------------------------------------------------------------------------- sensitivity


def _faces(tmp_path, n=6):
    rng = np.random.default_rng(0)
    paths, ages = [], []
    for i in range(n):
        age = 10 + 9 * i
        p = tmp_path / f"{age}_{i % 2}_0_2017010112000000{i}.jpg.chip.jpg"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(p)
        ages.append(age)
    return paths, ages


def test_perturb_keeps_size_and_identity():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for kind, values in sens.DEFAULT_CONDITIONS.items():
        for v in values:
            assert sens.perturb(img, kind, v).size == img.size
    assert np.array_equal(np.asarray(sens.perturb(img, "brightness", 1.0)), np.asarray(img))
    assert np.asarray(sens.perturb(img, "brightness", 0.0)).max() == 0
    assert np.asarray(sens.perturb(img, "crop_margin", -0.25))[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="unknown perturbation"):
        sens.perturb(img, "sepia", 1)


def test_sensitivity_analysis(tiny_model_dir, tmp_path):
    import torch

    from faceage.inference.predictor import Predictor

    torch.set_num_threads(1)
    paths, ages = _faces(tmp_path)
    predictor = Predictor(tiny_model_dir, detect=False, workers=1)
    conditions = {"blur": (2.0,), "jpeg": (20.0,), "rotation": (15.0,)}
    rows = sens.sensitivity_analysis(predictor, paths, ages, conditions, gender=[i % 2 for i in range(6)])
    assert [r["label"] for r in rows] == ["none", "blur 2", "jpeg 20", "rotation 15"]
    clean = np.array([predictor.predict(p)[0].age for p in paths])
    assert rows[0]["mae"] == pytest.approx(float(np.mean(np.abs(clean - np.array(ages)))), abs=1e-4)
    assert rows[0]["mean_abs_shift"] == 0.0 and rows[0]["gender_accuracy"] is not None
    assert all(r["n"] == 6 for r in rows)
    assert sens.plot_sensitivity(rows, tmp_path / "s.png").exists()


def test_cli_model_mode_with_sensitivity(tiny_model_dir, tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    data = tmp_path / "data"
    data.mkdir()
    _faces(data, n=6)
    out = tmp_path / "rep"
    code = report_main(["--model", str(tiny_model_dir), "--data", str(data), "--split", "all", "--output", str(out),
                     "--n-boot", "20", "--sensitivity", "--workers", "1", "--progress"])
    assert code == 0
    page = (out / "report.html").read_text()
    assert "Sensitivity to image changes" in page and "jpeg 15" in page and "Gender accuracy" in page
    err = capsys.readouterr().err  # --progress: a bar for the predictions and one for the conditions
    n_conditions = 1 + sum(len(v) for v in sens.DEFAULT_CONDITIONS.values())
    assert "predict: 100%" in err and "6/6" in err
    assert "sensitivity: 100%" in err and f"{n_conditions}/{n_conditions}" in err, err


def test_race_predictions_are_scored_and_rendered(tmp_path):
    n = 20
    race = np.array([0] * 10 + [2] * 10)
    race_pred = np.array([0] * 10 + [2] * 5 + [0] * 5)  # white all right, asian half right
    preds = rep.Predictions([f"f{i}.jpg" for i in range(n)], np.full(n, 30.0), np.full(n, 31.0), np.zeros(n, np.int64),
                            race, race_pred=race_pred)
    report = rep.build_report(preds, n_boot=50)
    r = report["metrics"]["race"]
    assert r["accuracy"] == pytest.approx(0.75) and r["recall_by_class"]["asian"] == {"n": 10, "recall": 0.5}
    md = rep.render_markdown(report)
    assert "## Race classification (recall by true race)" in md and "| asian | 10 | 0.500 |" in md
    assert "Race accuracy 0.750 (balanced 0.750, n=20)" in md
    assert "Race classification" in rep.render_html(report)


def test_middle_face_is_the_one_holding_the_centre():
    from types import SimpleNamespace

    from faceage.data.boxes import middle_face

    beside = SimpleNamespace(box=(0, 0, 150, 150))
    middle = SimpleNamespace(box=(180, 170, 300, 290))
    wide = SimpleNamespace(box=(100, 100, 400, 400))  # holds the centre too, but its own centre is further away
    assert middle_face([beside, wide, middle], (448, 448)) is middle
    assert middle_face([beside], (448, 448)) is None
    assert middle_face([], (448, 448)) is None


def test_cli_detect_scores_the_middle_face_of_photos(tmp_path, capsys):
    """`faceage report --detect` on photos labelled with age groups: the astronaut padded into the middle of a wider
    photo, labelled 40-49 and 0-2, with the bundled model: one inside, one outside, both found."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.new("RGB", (900, 900), (90, 90, 90))
    photo.paste(Image.fromarray(skimage_data.astronaut()), (225, 325))  # her face (around 225, 125) in the middle
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.jpg", "b.jpg"):
        photo.save(root / name, quality=95)
    (root / "labels.csv").write_text("file,age_group,gender\na.jpg,20-49,female\nb.jpg,0-2,female\n")
    from faceage.models.pretrained import bundled_model_dir

    assert report_main(["--model", str(bundled_model_dir()), "--data", str(root), "--dataset", "fairface", "--split", "all",
                        "--detect", "--engine", "onnx", "--output", str(tmp_path / "rep"), "--quiet", "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    assert "Age groups: 50.0% of 2 faces predicted inside their group" in out
