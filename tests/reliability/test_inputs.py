"""Bounded inputs: absurd or hostile model configs fail with one line naming the file and the key (never a 24 GB
allocation, a negative age or a NaN counted "ok"); files are judged by size and header before they are read;
a duplicate dataset row is reported and dropped, not fatal."""

from __future__ import annotations

import json
import resource
import shutil
from pathlib import Path

import pytest
from PIL import Image

from faceage.cli import main
from faceage.data.images import ImageLoadError, check_image_header, load_image
from faceage.models.config import ModelConfigError, validate_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def face(tmp_path) -> Path:
    path = tmp_path / "face.jpg"
    Image.new("RGB", (40, 40), (120, 100, 90)).save(path)
    return path


def _model_copy(tiny_model_dir: Path, tmp_path: Path, change) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    config = json.loads((target / "config.json").read_text())
    change(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _set(path: tuple[str, ...], value):
    def change(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


BAD_CONFIGS = {
    "huge image": (("input", "image_size"), 100000, "input.image_size must be an integer within 8..1024"),
    "negative ages": (("min_age",), -50, "0 <= min_age < max_age <= 150"),
    "reversed ages": (("max_age",), -1, "0 <= min_age < max_age <= 150"),
    "zero std": (("input", "std"), [0, 0, 0], "input.std must be positive"),
    "nan mean": (("input", "mean"), [float("nan"), 0, 0], "input.mean must be a list of 3 finite numbers"),
}


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_absurd_model_config_is_one_line_naming_file_and_key(tiny_model_dir, tmp_path, face, capsys, case, engine):
    path, value, words = BAD_CONFIGS[case]
    model = _model_copy(tiny_model_dir, tmp_path, _set(path, value))
    code = main(["predict", str(face), "--model", str(model), "--no-detect", "--engine", engine])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(model / "config.json") in err[0] and words in err[0]


def test_invalid_json_names_the_file(tiny_model_dir, tmp_path, face, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "config.json").write_text('{"backbone": "resnet18", oops}')
    for engine in ("torch", "onnx"):
        assert main(["predict", str(face), "--model", str(model), "--no-detect", "--engine", engine]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{model / 'config.json'}: not valid JSON" in err[0]


def test_checkpoint_model_config_is_validated(tmp_path):
    import torch

    from faceage.models.age_model import load_model

    ckpt = tmp_path / "bad.ckpt"
    torch.save({"model_config": {"backbone": "resnet18", "head": "dldl", "input": {"image_size": 100000}}, "state_dict": {}}, ckpt)
    with pytest.raises(ModelConfigError, match=rf"{ckpt}: model_config: input.image_size"):
        load_model(ckpt)


def test_cli_image_size_is_bounded():
    from faceage.models.age_model import AgeModel

    with pytest.raises(ValueError, match=r"image_size must be an integer within 8\.\.1024, got -64"):
        AgeModel(backbone="resnet18", image_size=-64)
    with pytest.raises(ValueError, match="min_age < max_age"):
        AgeModel(backbone="resnet18", image_size=32, min_age=50, max_age=10)


def test_ensemble_and_pair_configs_are_checked_recursively():
    good = {"backbone": "resnet18", "head": "dldl", "min_age": 0, "max_age": 110, "input": {"image_size": 32, "std": [0.2] * 3}}
    assert validate_model_config({"ensemble": [good, good]}, "x") == {"ensemble": [good, good]}
    with pytest.raises(ModelConfigError, match=r"x: ensemble\[1\]: input.std must be positive"):
        validate_model_config({"ensemble": [good, {**good, "input": {"std": [1, 0, 1]}}]}, "x")
    with pytest.raises(ModelConfigError, match="x: age_model_config: min_age/max_age must be whole numbers with 0 <= min_age"):
        validate_model_config({"kind": "age_difference", "age_model_config": {**good, "max_age": 1000}}, "x")


def test_nan_age_is_an_error_never_ok(tiny_model_dir, face):
    import torch

    from faceage.inference.predictor import Predictor
    from faceage.models.age_model import load_model

    model = load_model(tiny_model_dir)
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(float("nan"))
    [result] = list(Predictor(model, detect=False).predict_files([face]))
    assert result.faces == [] and "non-finite age" in result.error


def test_huge_sparse_file_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    big = tmp_path / "x.jpg"
    with open(big, "wb") as f:  # 3 GB of holes: costs no disk, but reading it whole would cost 3 GB of memory
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(3 * 2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageLoadError, match=r"x.jpg: file too large \(3072.0 MB; the limit is 50.0 MB, set FACEAGE_MAX_IMAGE_BYTES"):
        load_image(big)
    assert "file too large" in check_image_header(big)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
    monkeypatch.setenv("FACEAGE_MAX_IMAGE_BYTES", "1000")  # the limit is configurable, for bytes too
    with pytest.raises(ImageLoadError, match=r"<bytes>: file too large \(2004 bytes; the limit is 1000 bytes"):
        load_image(b"\x89PNG" + b"\0" * 2000)
    import io

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(buf, "PNG")
    monkeypatch.setenv("FACEAGE_MAX_IMAGE_BYTES", str(len(buf.getvalue())))  # exactly at the limit: accepted
    assert load_image(buf.getvalue()).size == (40, 40)


def test_duplicate_csv_row_is_reported_and_dropped(tmp_path, capsys):
    from faceage.data.datamodule import AgeDataModule
    from faceage.data.readers import read_dataset

    rows = ["path,age"]
    for i in range(12):
        Image.new("RGB", (32, 32), (10 * i, 50, 50)).save(tmp_path / f"f{i}.jpg")
        rows.append(f"f{i}.jpg,{20 + i}")
    rows.append("f3.jpg,23")  # the same file again
    rows.append(f"{tmp_path / 'f5.jpg'},25")  # and again, as an absolute path
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    records, report = read_dataset("csv", tmp_path / "labels.csv")
    assert len(records) == 12 and len({r.path for r in records}) == 12
    assert report.skipped["duplicate"] == 2 and report.n_ok == 12
    assert "skipped 2 x duplicate" in report.summary()
    data = AgeDataModule("csv", str(tmp_path / "labels.csv"), batch_size=4, num_workers=0, split_file=str(tmp_path / "split.json"))
    data.prepare_records()  # used to raise "the same file appears twice in the records"
    assert len(data.records) == 12
    assert "skipped 2 x duplicate" in capsys.readouterr().out
