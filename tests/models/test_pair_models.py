"""Pair comparators: forward and loss on generated faces, the age-difference math, the widened first convolution,
save/load round trips and checkpoint loading."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from faceage.data.transforms import build_eval_transform
from faceage.models import AgeModel, create_backbone
from faceage.models.pairs import (
    PAIR_MODELS,
    AgeDifferenceComparator,
    PairModel,
    create_pair_model,
    load_pair_model,
    p_older_from_ages,
    p_older_from_distributions,
    widen_first_conv,
)

INPUT_KEYS = {"image_size", "mean", "std", "crop", "alignment"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PAIR_KINDS = PAIR_MODELS.names()  # every registered kind is tested; a new one needs no edit here


def build(kind: str, age_dir) -> PairModel:
    """A tiny comparator of ``kind``, its arguments chosen by what its constructor takes: a 32 px resnet18 backbone,
    the tiny saved age model, a one-layer MLP with dropout."""
    torch.manual_seed(0)
    params = inspect.signature(PAIR_MODELS.get(kind)).parameters
    kwargs = {}
    if "backbone" in params:
        kwargs.update(backbone="resnet18", image_size=32)
    if "age_model" in params:
        kwargs["age_model"] = str(age_dir)
    if "hidden" in params:
        kwargs.update(hidden=[16], dropout=0.1)
    return create_pair_model(kind, **kwargs)


@pytest.fixture(scope="module")
def face_batches(tmp_path_factory):
    """Two batches of generated faces (24..32 px files, UTKFace-style names) through the eval transform."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    tf = build_eval_transform({"image_size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    images = []
    for i in range(6):
        age, size = int(rng.integers(1, 80)), int(rng.integers(24, 33))
        path = root / f"{age}_{i % 2}_{i % 5}_2017010{i}000000000.jpg.chip.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        images.append(tf(Image.open(path).convert("RGB")))
    return torch.stack(images[:3]), torch.stack(images[3:])


@pytest.mark.parametrize("kind", PAIR_KINDS)
def test_forward_loss_and_input_config(kind, tiny_model_dir, face_batches):
    model = build(kind, tiny_model_dir)
    left, right = face_batches
    assert set(model.input_config) == INPUT_KEYS and model.input_config["image_size"] == 32
    assert model.config["kind"] == kind and model.config["input"] == model.input_config
    model.train()
    logits = model(left, right)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    loss = model.loss(logits, torch.tensor([1.0, 0.0, 1.0]))
    assert loss.ndim == 0 and loss.item() > 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    if kind == "age_difference":
        assert not trainable  # nothing to train
        return
    loss.backward()
    if kind == "age_ranking":  # the whole age model trains, its age head included
        assert all(p.grad is not None for p in model.age_model.head.parameters())
        assert model.age_model.backbone.training and all(p.requires_grad for p in model.age_model.parameters())
        return
    assert all(p.grad is not None for p in model.head.parameters())
    if kind == "age_feature":
        assert not any(p.requires_grad for p in model.age_model.parameters())
        assert not model.age_model.training  # frozen: batch-norm statistics stay as trained
    probs = model.eval().predict_proba(left, right)
    assert ((probs >= 0) & (probs <= 1)).all()


def test_age_difference_math():
    k = 10
    a, b = torch.zeros(3, k), torch.zeros(3, k)
    a[0, 7], b[0, 2] = 1, 1  # A older for sure
    a[1, 2], b[1, 7] = 1, 1  # B older for sure
    a[2, 5], b[2, 5] = 1, 1  # same age: a tie counts half
    assert p_older_from_distributions(a, b).tolist() == [1.0, 0.0, 0.5]
    uniform = torch.full((1, k), 1 / k)
    assert p_older_from_distributions(uniform, uniform).item() == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    pa, pb = rng.dirichlet(np.ones(k), 4), rng.dirichlet(np.ones(k), 4)
    got = p_older_from_distributions(pa, pb)  # numpy works too
    brute = [sum(pa[r, i] * pb[r, j] for i in range(k) for j in range(k) if i > j) + 0.5 * (pa[r] * pb[r]).sum() for r in range(4)]
    assert np.allclose(got, brute)
    assert np.allclose(got + p_older_from_distributions(pb, pa), 1.0)
    assert p_older_from_ages(torch.tensor([30.0]), torch.tensor([30.0])).item() == 0.5
    assert p_older_from_ages(np.array([40.0]), np.array([20.0]), scale=2.0)[0] > 0.99


def test_age_difference_comparator_without_distribution(face_batches):
    torch.manual_seed(0)
    age = AgeModel("resnet18", "l1", image_size=32).eval()  # point estimates only
    model = AgeDifferenceComparator(age, age_scale=3.0)
    left, right = face_batches
    with torch.no_grad():
        a, b = age.decode(age(left))["age"], age.decode(age(right))["age"]
    assert torch.allclose(model.predict_proba(left, right), torch.sigmoid((a - b) / 3.0), atol=1e-5)


def test_age_difference_comparator_is_consistent(tiny_model_dir, face_batches):
    model = build("age_difference", tiny_model_dir).eval()
    left, right = face_batches
    p = model.predict_proba(left, right)
    assert torch.allclose(p + model.predict_proba(right, left), torch.ones(3), atol=1e-4)
    assert torch.allclose(model.predict_proba(left, left), torch.full((3,), 0.5), atol=1e-4)


def test_age_ranking_starts_at_the_age_difference_baseline(tiny_model_dir, face_batches):
    from faceage.models.ensemble import AgeEnsemble

    ranking = build("age_ranking", tiny_model_dir).eval()
    baseline = AgeDifferenceComparator(str(tiny_model_dir)).eval()
    baseline.wrapper.tta_flip = False  # ranking compares single views
    left, right = face_batches
    assert torch.allclose(ranking.predict_proba(left, right), baseline.predict_proba(left, right), atol=1e-5)
    with pytest.raises(ValueError, match="one age model"):
        create_pair_model("age_ranking", age_model=AgeEnsemble([AgeModel("resnet18", "dldl", image_size=32)] * 2))
    with pytest.raises(ValueError, match="distribution"):
        create_pair_model("age_ranking", age_model=AgeModel("resnet18", "l1", image_size=32))


def test_widened_first_conv_keeps_pretrained_response():
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = backbone(x)
        name = widen_first_conv(backbone, copies=2, copy_weights=True)
        after = backbone(torch.cat([x, x], dim=1))
    assert name == "model.conv1" and backbone.model.conv1.in_channels == 6
    assert torch.allclose(before, after, atol=1e-5)  # halved copies: the same image twice answers as before


def test_six_channel_uses_one_backbone_with_six_input_channels():
    model = build("six_channel", None)
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 6 and all(c.in_channels != 3 for c in convs)


@pytest.mark.parametrize("kind", PAIR_KINDS)
def test_save_load_round_trip(kind, tiny_model_dir, face_batches, tmp_path):
    model = build(kind, tiny_model_dir).eval()
    left, right = face_batches
    before = model(left, right)
    model.save_pretrained(tmp_path / "pair")
    assert {p.name for p in (tmp_path / "pair").iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_pair_model(tmp_path / "pair")
    assert type(loaded) is type(model) and loaded.input_config == model.input_config
    assert torch.allclose(loaded(left, right), before, atol=1e-5)
    assert load_pair_model(tmp_path / "pair" / "model.safetensors").kind == kind


def test_load_pair_model_from_age_model_and_errors(tiny_model_dir, tmp_path):
    assert isinstance(load_pair_model(tiny_model_dir), AgeDifferenceComparator)
    with pytest.raises(FileNotFoundError):
        load_pair_model(tmp_path / "nope")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable faceage checkpoint"):
        load_pair_model(tmp_path / "junk.ckpt")
    with pytest.raises(KeyError, match="unknown pair model"):
        create_pair_model("triplet")
