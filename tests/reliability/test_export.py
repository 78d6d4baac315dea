"""``faceage export`` of a checkpoint writes the graph where ``predict --model <the same checkpoint> --engine onnx``
looks for it (its suggested fix no longer loops), or into ``--output``, and says where it went."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from faceage.cli import main


@pytest.fixture
def checkpoint(tiny_model_dir, tmp_path):
    from faceage.models.age_model import load_model

    model = load_model(tiny_model_dir)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model_config": model.config, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    return ckpt


def test_export_of_a_checkpoint_is_found_by_predict(checkpoint, tmp_path, monkeypatch, capsys, one_torch_thread):
    face = tmp_path / "face.jpg"
    Image.new("RGB", (40, 40), (120, 100, 90)).save(face)
    monkeypatch.chdir(tmp_path)
    predict = ["predict", str(face), "--model", str(checkpoint), "--engine", "onnx", "--no-detect", "--threads", "1"]
    assert main(predict) == 2
    hint = capsys.readouterr().err
    assert f"faceage export --format onnx {checkpoint}" in hint
    assert main(["export", "--format", "onnx", str(checkpoint)]) == 0
    graph = checkpoint.parent / "last" / "model.onnx"
    assert f"wrote {graph}" in capsys.readouterr().out
    assert graph.is_file() and json.loads((graph.parent / "config.json").read_text())["input"]["image_size"] == 32
    assert not (tmp_path / "model.onnx").exists()  # no longer dropped into the working directory
    assert main(predict) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(face))
    out = tmp_path / "elsewhere" / "graph.onnx"
    assert main(["export", str(checkpoint), "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.is_file()
