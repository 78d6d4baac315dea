"""Grad-CAM heatmaps of the *age* output: which parts of the face pushed the estimate.

The Grad-CAM target is the head's expected age (a scalar per face), so the map shows the regions whose
activations raise the predicted age most; it uses the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``) on the
last spatial block of a CNN backbone (``backbone.blocks()[-1]``, else the last ``Conv2d``). Vision-transformer
backbones have no spatial feature map and are refused with :class:`ExplainError`.

    >>> heat = explain("face_chip.jpg", "runs/x/model")        # (H, W) float32 in [0, 1]
    >>> overlay_heatmap(load_image("face_chip.jpg"), heat).save("heat.png")

Command line: ``faceage explain photo.jpg --model M --output heat.png [--no-detect]`` (:mod:`faceage.cli.explain`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from faceage.data.images import load_image
from faceage.inference.preprocess import preprocess_chip

TRANSFORMER_PREFIXES = ("vit", "deit", "swin", "beit", "eva", "cait", "xcit", "pit_", "levit", "convit", "crossvit", "flexivit")
MIN_CAM_SIDE = 2  # a 1x1 feature map gives a constant (empty) heatmap: prefer an earlier layer


class ExplainError(ValueError):
    """The model or input cannot be explained (e.g. a transformer backbone, or an ONNX-only model)."""


class AgeTarget:
    """Grad-CAM target: the head's predicted age from one sample's age logits (``AgeModel.decode`` runs under
    ``no_grad``, so the head is called directly)."""

    def __init__(self, head: Any) -> None:
        self.head = head

    def __call__(self, logits: Any) -> Any:
        return self.head.predict(logits.unsqueeze(0) if logits.ndim == 1 else logits).sum()


def _age_logits_module(model: Any) -> Any:
    """``AgeModel`` -> a module returning only ``age_logits`` (Grad-CAM wants a tensor output)."""
    from torch import nn

    class AgeLogits(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)["age_logits"]

    return AgeLogits(model)


def _torch_model(model: Any) -> Any:
    """An ``AgeModel`` (or ``AgeEnsemble``) from such a model, a ``Predictor`` (an ONNX one: the weights it was
    exported from), a path, or ``None`` (bundled)."""
    from faceage.models.age_model import load_model

    if hasattr(model, "decode"):
        return model
    engine = getattr(model, "engine", None)
    if engine is not None:
        wrapper = getattr(engine, "wrapper", None)
        if wrapper is not None:
            return wrapper.model
        # an ONNX predictor: Grad-CAM needs gradients, so it reads the PyTorch weights of the same model
        source = getattr(engine, "source", None)
        if source is None:
            raise ExplainError("Grad-CAM needs the PyTorch model; this predictor runs an ONNX graph (use engine='torch')")
        if source.suffix == ".onnx":
            source = source.parent
        try:
            return load_model(source)
        except (FileNotFoundError, ValueError, TypeError) as e:
            raise ExplainError(f"Grad-CAM needs the PyTorch model; this predictor runs an ONNX graph and {e}") from None
    return load_model(model)


def is_transformer(model: Any) -> bool:
    """Whether the model's backbone is a vision transformer (by name, or having no ``Conv2d`` but the patch stem)."""
    from torch import nn

    name = str(model.config.get("backbone", "")).lower()
    if name.startswith(TRANSFORMER_PREFIXES):
        return True
    try:
        from timm.models.vision_transformer import VisionTransformer

        return any(isinstance(m, VisionTransformer) for m in model.backbone.modules())
    except ImportError:  # pragma: no cover - timm is a dependency
        return not any(isinstance(m, nn.Conv2d) for m in model.backbone.modules())


def find_target_layer(model: Any) -> Any:
    """The layer whose activations Grad-CAM weighs.

    The backbone's last block (``backbone.blocks()[-1]``) if it runs in the forward pass and outputs a feature map
    of at least ``MIN_CAM_SIDE`` pixels; otherwise the last ``Conv2d`` (in execution order) that does.

    Raises:
        ExplainError: for vision transformers, or when no layer outputs a spatial map.
    """
    import torch
    from torch import nn

    if is_transformer(model):
        raise ExplainError(
            f"Grad-CAM explanations need a CNN backbone; {model.config.get('backbone')!r} is a vision transformer "
            "(token outputs, no spatial feature map) and is not supported"
        )
    blocks = model.backbone.blocks() if hasattr(model.backbone, "blocks") else []
    last_block = blocks[-1] if blocks else None
    seen: list[tuple[nn.Module, tuple[int, ...]]] = []
    watched = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    if last_block is not None:
        watched.append(last_block)
    hooks = [m.register_forward_hook(lambda mod, _i, out: seen.append((mod, tuple(out.shape)) if torch.is_tensor(out) else None))
             for m in watched]
    size = int(model.input_config["image_size"])
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    spatial = [(m, s) for m, s in seen if len(s) == 4]
    if not spatial:
        raise ExplainError(f"no layer of {model.config.get('backbone')!r} outputs a spatial feature map; Grad-CAM is not supported")
    for m, s in spatial:
        if m is last_block and min(s[2:]) >= MIN_CAM_SIDE:
            return m
    big = [m for m, s in spatial if isinstance(m, nn.Conv2d) and min(s[2:]) >= MIN_CAM_SIDE]
    return big[-1] if big else spatial[-1][0]


class Explainer:
    """Grad-CAM on the age output of one model; reusable and safe to call from several threads.

    Works on a private copy of the model, so Grad-CAM's hooks never touch a model used for prediction.

    Args:
        model: ``AgeModel``, ``Predictor`` (either engine), model directory / checkpoint, or ``None`` (bundled).
        target_layer: layer of the copy to use; default :func:`find_target_layer`.

    Raises:
        ExplainError: for unsupported models (see :func:`find_target_layer`).
    """

    def __init__(self, model: Any = None, target_layer: Any = None) -> None:
        source = _torch_model(model)
        # an AgeEnsemble: one Grad-CAM per member network, heatmaps averaged (each member explains its own age)
        self.parts = [Explainer(m) for m in source.members] if hasattr(source, "members") else None
        if self.parts is not None:
            if target_layer is not None:
                raise ExplainError("target_layer cannot be given for an ensemble: each member uses its own last block")
            self.input_config = source.input_config
            return
        self.model = copy.deepcopy(source).eval()
        self.input_config = self.model.input_config
        if target_layer is None:
            self.target_layer = find_target_layer(self.model)
        else:  # a layer of the caller's model: find the same module in the copy
            name = next((n for n, m in source.named_modules() if m is target_layer), None)
            if name is None:
                raise ExplainError("target_layer is not a module of the model")
            self.target_layer = self.model.get_submodule(name)
        self._lock = threading.Lock()

    def __call__(self, chip: Any) -> np.ndarray:
        """Heatmap of one aligned face chip (path, bytes, PIL image or array) at the chip's size.

        Returns:
            float32 ``(H, W)`` in ``[0, 1]`` (``H, W`` of the chip); zero outside the central crop the network sees.
        """
        import torch
        from pytorch_grad_cam import GradCAM

        image = load_image(chip)
        if self.parts is not None:
            return np.mean([part(image) for part in self.parts], axis=0).astype(np.float32)
        # an input that requires grad makes every activation require it, even in a model with frozen parameters
        x = torch.from_numpy(preprocess_chip(image, self.input_config))[None].requires_grad_(True)
        with self._lock, torch.enable_grad():
            with GradCAM(model=_age_logits_module(self.model), target_layers=[self.target_layer]) as cam:
                grey = cam(input_tensor=x, targets=[AgeTarget(self.model.head)])[0]
            self.model.zero_grad(set_to_none=True)
        return _to_chip(np.nan_to_num(grey.astype(np.float32)), image.size, float(self.input_config.get("crop", 1.0)))


def _to_chip(heat: np.ndarray, size: tuple[int, int], crop: float) -> np.ndarray:
    """Network-input heatmap -> chip-sized map (the central ``crop`` fraction the network saw, zero around it)."""
    w, h = size
    cw, ch = (round(w * crop), round(h * crop)) if crop < 1 else (w, h)
    left, top = (w - cw) // 2, (h - ch) // 2
    inner = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize((cw, ch), Image.Resampling.BILINEAR))
    out = np.zeros((h, w), dtype=np.float32)
    out[top : top + ch, left : left + cw] = inner
    return np.clip(out, 0.0, 1.0)


def explain(image: Any, model: Any = None, target_layer: Any = None) -> np.ndarray:
    """Grad-CAM heatmap of the predicted age for one aligned face image.

    Args:
        image: the face chip (path, bytes, PIL image or ``HxWx3`` uint8 array), aligned like the training data
            (use :func:`explain_faces` for a photo).
        model: ``AgeModel``, ``Predictor`` (either engine), model directory / checkpoint, or ``None`` (bundled).
        target_layer: the layer to weigh; default :func:`find_target_layer`.

    Returns:
        float32 ``(H, W)`` heatmap in ``[0, 1]`` with the image's height and width.

    Raises:
        ExplainError: for a transformer backbone or an ONNX-only predictor.
        ImageLoadError: for an unusable image.
    """
    return Explainer(model, target_layer)(image)


def explain_faces(image: Any, explainer: Explainer, detector: Any = None) -> list[tuple[tuple[int, int, int, int], Image.Image, np.ndarray]]:
    """Heatmaps of every face in a photo.

    Args:
        image: the photo (path, bytes, PIL image or array).
        explainer: an :class:`Explainer`.
        detector: a :class:`faceage.data.detect.FaceDetector`; ``None`` takes the whole image as the face.

    Returns:
        ``(box, chip, heatmap)`` per face, largest first; empty when no face is found.
    """
    photo = load_image(image)
    if detector is None:
        return [((0, 0, photo.width, photo.height), photo, explainer(photo))]
    return [(f.box, f.chip, explainer(f.chip)) for f in detector.detect(photo)]


def overlay_heatmap(image: Image.Image | np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Blends a ``[0, 1]`` heatmap (any size; resized to the image) in a matplotlib colormap over the image.

    Args:
        image: RGB image.
        heatmap: ``(h, w)`` values in ``[0, 1]``.
        alpha: heatmap weight (0: image only, 1: heatmap only).
        colormap: matplotlib colormap name.

    Returns:
        RGB image of the input's size.
    """
    from matplotlib import colormaps

    base = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    base = base.convert("RGB")
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != (base.height, base.width):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize(base.size, Image.Resampling.BILINEAR))
    colour = (colormaps[colormap](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.float32)
    mixed = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * colour
    return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))


def tile(images: Sequence[Image.Image], height: int = 256) -> Image.Image:
    """Images side by side, each scaled to ``height`` pixels, with a 4-pixel white gap."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.BILINEAR) for im in images]
    out = Image.new("RGB", (sum(im.width for im in scaled) + 4 * (len(scaled) - 1), height), (255, 255, 255))
    x = 0
    for im in scaled:
        out.paste(im, (x, 0))
        x += im.width + 4
    return out
