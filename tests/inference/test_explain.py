"""Grad-CAM of the age output: shape and range, dependence on the input, layer choice, refusals, overlay, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceage.cli.explain import main as explain_main
from faceage.inference import explain as ex
from faceage.models.age_model import AgeModel


@pytest.fixture(scope="module")
def model64():
    torch.set_num_threads(1)
    torch.manual_seed(0)  # an untrained net: with this seed the age gradient has positive regions on both inputs
    return AgeModel("resnet18", "dldl", image_size=64, gender=True).eval()


def _noise(seed: int, shape=(80, 70, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _halves() -> np.ndarray:
    img = np.zeros((80, 70, 3), np.uint8)
    img[:, :35] = 255
    return img


def test_shape_range_and_input_dependence(model64):
    heat_a = ex.explain(_noise(0), model64)
    heat_b = ex.explain(_halves(), model64)
    for heat in (heat_a, heat_b):
        assert heat.shape == (80, 70) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5
    assert np.abs(heat_a - heat_b).mean() > 0.05  # the map follows the image
    explainer = ex.Explainer(model64)
    assert np.allclose(explainer(_noise(0)), heat_a, atol=1e-5)  # deterministic


def test_target_is_the_expected_age(model64):
    x = torch.randn(2, 3, 64, 64)
    logits = model64(x)["age_logits"]
    target = ex.AgeTarget(model64.head)
    with torch.no_grad():
        expected = model64.decode(model64(x))["age"]
    assert float(target(logits[1])) == pytest.approx(float(expected[1]), rel=1e-5)


def test_layer_choice():
    torch.manual_seed(0)
    resnet = AgeModel("resnet18", "dldl", image_size=64)
    assert ex.find_target_layer(resnet) is resnet.backbone.blocks()[-1]  # layer4, 2x2
    tiny = AgeModel("resnet18", "dldl", image_size=32)  # layer4 is 1x1: the last conv with a 2x2 map instead
    layer = ex.find_target_layer(tiny)
    assert isinstance(layer, torch.nn.Conv2d) and layer is not tiny.backbone.blocks()[-1]


def test_crop_region_only():
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=64, crop=0.5).eval()
    heat = ex.explain(_noise(3, (100, 100, 3)), model)
    assert heat.shape == (100, 100)
    assert heat[:25].max() == 0 and heat[:, 75:].max() == 0  # outside the central half the network never looks


def test_model_is_left_untouched(model64):
    ex.explain(_noise(1), model64)
    assert not any(m._forward_hooks or m._backward_hooks for m in model64.modules())
    assert all(p.grad is None for p in model64.parameters())


def test_vit_is_refused():
    vit = AgeModel("vit_small", "dldl", image_size=32)
    with pytest.raises(ex.ExplainError, match="vision transformer.*not supported"):
        ex.explain(_noise(0), vit)


def test_onnx_predictor_explains_with_the_weights_beside_its_graph(tiny_model_dir, tmp_path):
    import shutil

    from faceage.inference.predictor import Predictor

    chip = _noise(3)
    by_onnx = ex.Explainer(Predictor(tiny_model_dir, engine="onnx", detect=False))(chip)
    by_torch = ex.Explainer(Predictor(tiny_model_dir, engine="torch", detect=False))(chip)
    assert by_onnx.shape == chip.shape[:2] and np.allclose(by_onnx, by_torch, atol=1e-5)

    graph_only = tmp_path / "graph_only"  # an ONNX graph with no PyTorch weights beside it
    graph_only.mkdir()
    for name in ("model.onnx", "config.json"):
        shutil.copy(Path(tiny_model_dir) / name, graph_only / name)
    with pytest.raises(ex.ExplainError, match="ONNX graph"):
        ex.Explainer(Predictor(graph_only, engine="onnx", detect=False))


def test_overlay_and_tile():
    img = Image.fromarray(_noise(0))
    heat = np.zeros((10, 10), np.float32)
    heat[:5] = 1.0
    out = ex.overlay_heatmap(img, heat, alpha=0.5)
    assert out.size == img.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(img))
    assert np.array_equal(np.asarray(ex.overlay_heatmap(img, heat, alpha=0.0)), np.asarray(img))
    strip = ex.tile([img, img], height=50)
    assert strip.height == 50 and strip.width > 2 * 40


def test_cli(tiny_model_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    chip = tmp_path / "chip.png"
    Image.fromarray(_noise(5)).save(chip)
    out = tmp_path / "heat.png"
    assert explain_main([str(chip), "--model", str(tiny_model_dir), "--output", str(out), "--no-detect"]) == 0
    assert Image.open(out).size[1] == 256 and "1 face" in capsys.readouterr().out
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert explain_main([str(bad), "--model", str(tiny_model_dir), "--no-detect", "--output", str(out)]) == 2
    assert "not an image" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (128, 128, 128)).save(blank)
    assert explain_main([str(blank), "--model", str(tiny_model_dir), "--output", str(out)]) == 1
    assert "no face found" in capsys.readouterr().err
