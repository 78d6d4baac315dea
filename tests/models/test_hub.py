"""Model card + save/load round trip, and ``faceage push`` failing with one clear line when the Hub is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from faceage.cli.push import main as push_main
from faceage.models import hub
from faceage.models.age_model import AgeModel


@pytest.fixture()
def model_dir(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=32, gender=True).eval()
    directory = model.save_pretrained(tmp_path / "model", extra={"metrics": {"test": {"mae": 5.25, "cs@5": 0.61}}})
    return model, directory


def test_round_trip_with_card(model_dir):
    model, directory = model_dir
    readme = hub.write_model_card(directory, name="tiny")
    text = readme.read_text()
    assert text.startswith("---\nlicense: mit\nlibrary_name: faceage\n")
    assert "# tiny" in text and "`resnet18`" in text and "| test/mae | 5.25 |" in text and "## Limitations" in text
    assert (directory / "MODEL_CARD.md").read_text() == text
    loaded = AgeModel.from_pretrained(directory)  # the card does not disturb loading
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model.decode(model(x)), loaded.decode(loaded(x))
    assert torch.allclose(a["age"], b["age"]) and torch.allclose(a["gender_prob"], b["gender_prob"])
    assert loaded.config["gender"] is True


def test_existing_cards_are_respected(model_dir):
    _, directory = model_dir
    (directory / "MODEL_CARD.md").write_text("Trained on UTKFace part 1 by the faceage team.\n")
    readme = hub.write_model_card(directory)
    assert "Trained on UTKFace part 1" in readme.read_text()
    readme.write_text("custom")
    assert hub.write_model_card(directory).read_text() == "custom"  # kept unless overwrite
    assert hub.write_model_card(directory, overwrite=True).read_text() != "custom"


def test_not_a_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a faceage model directory"):
        hub.write_model_card(tmp_path)
    assert push_main([str(tmp_path), "--repo-id", "me/x"]) == 2


def test_bad_repo_id(model_dir, capsys):
    _, directory = model_dir
    assert push_main([str(directory), "--repo-id", "no-slash"]) == 2
    assert "USER/NAME" in capsys.readouterr().err


def test_card_only(model_dir, capsys):
    _, directory = model_dir
    assert push_main([str(directory), "--repo-id", "me/tiny-age", "--card-only"]) == 0
    assert 'load_from_hub("me/tiny-age")' in (directory / "README.md").read_text()


def _push(directory, **env):
    full = {**os.environ, "HF_HOME": str(directory.parent / "hf_home"), **env}
    return subprocess.run([sys.executable, "-m", "faceage.cli", "push", str(directory), "--repo-id", "me/tiny-age"],
                          capture_output=True, text=True, env=full, timeout=120)


@pytest.mark.parametrize("env", [
    {"HF_HUB_OFFLINE": "1"},
    {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_not_a_real_token", "HF_ENDPOINT": "http://127.0.0.1:9"},
], ids=["offline", "unreachable"])
def test_push_fails_with_one_clear_line(model_dir, env):
    _, directory = model_dir
    result = _push(directory, **env)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert err.startswith("error: cannot push") and "\n" not in err, err
    assert "Traceback" not in result.stderr
