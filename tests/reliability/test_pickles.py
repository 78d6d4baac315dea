"""Malicious pickles never run: a checkpoint whose unpickling would create a marker file is handed to every entry
point (predict, compare, export, explain, serve, fit/validate/test ``--ckpt_path`` and ``--weights``, also with
``--weights_only false``) in every path form (absolute, relative, symlink, ``file://``); the marker never appears.
Only the explicit trust setting unpickles, and it warns."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from faceage.cli import main
from faceage.models.files import TRUST_PICKLE_ENV, CheckpointError, load_checkpoint_file


class Payload:
    """Unpickling calls ``open(marker, "w")``: harmless, but it leaves proof that code from the file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """``(forms, marker)``: the malicious checkpoint under every path form; the cwd is its folder (relative form)."""
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"model_config": {"backbone": "resnet18", "head": "dldl"}, "state_dict": {}, "hyper_parameters": {"x": Payload(str(marker))},
                "payload": Payload(str(marker))}, ckpt)
    (tmp_path / "link.ckpt").symlink_to(ckpt)
    monkeypatch.chdir(tmp_path)
    forms = {"absolute": str(ckpt), "relative": "evil.ckpt", "symlink": str(tmp_path / "link.ckpt"), "file-url": ckpt.as_uri()}
    return forms, marker


@pytest.fixture
def face(tmp_path):
    path = tmp_path / "face.jpg"
    Image.new("RGB", (40, 40), (120, 100, 90)).save(path)
    return str(path)


FORMS = ["absolute", "relative", "symlink", "file-url"]


@pytest.mark.parametrize("form", FORMS)
def test_inference_entry_points_never_unpickle(evil, face, tmp_path, form, capsys):
    forms, marker = evil
    path = forms[form]
    commands = {
        "predict": ["predict", face, "--model", path, "--no-detect"],
        "compare": ["compare", face, face, "--model", path, "--no-detect"],
        "export": ["export", path, "--output", str(tmp_path / "out.onnx")],
        "explain": ["explain", face, "--model", path, "--no-detect", "--output", str(tmp_path / "h.png")],
        "serve": ["serve", "--model", path, "--port", "1"],  # fails at the model, before binding anything
    }
    for name, argv in commands.items():
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert err and err[-1].startswith("error:"), (name, err)
        assert not marker.exists(), f"{name} ran the pickle ({form})"


@pytest.mark.parametrize("form", FORMS)
def test_training_cli_never_unpickles_even_with_weights_only_false(evil, tmp_path, form, capsys):
    forms, marker = evil
    base = ["--data.root", str(tmp_path / "nodata"), "--trainer.default_root_dir", str(tmp_path / "runs")]
    runs = [["test", *base, "--ckpt_path", forms[form], "--weights_only", "false"]]
    if form == "file-url":  # the form that used to bypass the check
        runs += [["fit", *base, "--ckpt_path", forms[form], "--weights_only", "false"], ["validate", *base, "--weights", forms["symlink"]]]
    for argv in runs:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2, argv
        assert err[-1].startswith("error:") and ("evil.ckpt" in err[-1] or "link.ckpt" in err[-1]), err[-1]
        assert not marker.exists(), f"{argv[0]} ran the pickle ({form})"
    assert os.environ.get(TRUST_PICKLE_ENV) is None


def test_only_the_trust_setting_unpickles_and_it_warns(evil, monkeypatch):
    forms, marker = evil
    with pytest.raises(CheckpointError, match="refused: loading it needs unpickling"), pytest.warns(UserWarning, match="weights_only=false ignored"):
        load_checkpoint_file(forms["file-url"], weights_only=False)
    assert not marker.exists()
    monkeypatch.setenv(TRUST_PICKLE_ENV, "1")
    with pytest.warns(UserWarning, match="unpickling a checkpoint"):
        load_checkpoint_file(forms["symlink"], weights_only=False)
    assert marker.exists()  # trusted: the payload ran, as the user explicitly allowed


def test_lightning_level_loads_refuse_pickles_too(evil):
    """Whatever reaches the trainer (``trainer.fit(ckpt_path=..., weights_only=False)``) goes through SafeCheckpointIO."""
    from faceage.training.callbacks import SafeCheckpointIO

    forms, marker = evil
    for path in forms.values():
        with pytest.raises(CheckpointError, match="refused"), pytest.warns(UserWarning):
            SafeCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()
