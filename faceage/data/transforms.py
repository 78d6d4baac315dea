"""Image transforms, built from a model's input config so training, evaluation and inference preprocess alike.

The input config travels inside every checkpoint (``AgeModel.config["input"]``)::

    {"image_size": 64, "mean": [...], "std": [...], "crop": 0.8,
     "alignment": {"method": "dlib68", "chip_size": 200, "padding": 0.2}}

``crop`` is the central fraction of the aligned chip the network sees; ``alignment`` says how raw photos are
turned into chips like the training chips (see :mod:`faceage.data.detect`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import v2 as T


@dataclass
class AugmentConfig:
    """Training-time augmentation (flip, rotation, shift, zoom, colour, greyscale, erasing) of the aligned chip.

    Attributes:
        hflip: random horizontal flip.
        rotation: max rotation in degrees.
        translate: max shift as a fraction of the chip side.
        scale: max zoom in/out fraction (random crop size).
        color_jitter: brightness/contrast/saturation jitter strength (0 disables).
        grayscale: probability of converting to greyscale.
        erasing: probability of hiding one random rectangle of the face (occlusion by a hand, a cup, another head).
        sepia: probability of a sepia tone (old prints).
        blur: probability of a Gaussian blur (sigma 0.4-1.5 network-input pixels: focus, motion, scanning).
        low_res: probability of a down- and up-sampling to 30-70% of the side (small faces in large photos).
        jpeg: probability of JPEG re-compression at quality 20-70.
        color_cast: largest per-channel gain change (white balance, faded colour); 0 disables.
        noise: probability of Gaussian grain (sigma 1-5% of the range).

    The last six model photos as users take them (scans, old prints, phone and web photos), which aligned dataset
    chips rarely show; only batch augmentation (``data.augment_on: batch``) applies them.
    """

    hflip: bool = True
    rotation: float = 10.0
    translate: float = 0.05
    scale: float = 0.1
    color_jitter: float = 0.2
    grayscale: float = 0.05
    erasing: float = 0.0
    sepia: float = 0.0
    blur: float = 0.0
    low_res: float = 0.0
    jpeg: float = 0.0
    color_cast: float = 0.0
    noise: float = 0.0

    def photo_effects(self) -> bool:
        """Whether any of the photo effects (sepia, blur, low resolution, JPEG, colour cast, grain) is on."""
        return any((self.sepia, self.blur, self.low_res, self.jpeg, self.color_cast, self.noise))

    def to_dict(self) -> dict:
        return asdict(self)


class CenterCropFraction(torch.nn.Module):
    """Keeps the central ``fraction`` of each side (any input size), so one config serves chips of any size."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def forward(self, img: Image.Image) -> Image.Image:
        if self.fraction == 1:
            return img
        w, h = img.size
        cw, ch = round(w * self.fraction), round(h * self.fraction)
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))


def _normalize(input_config: dict) -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(input_config["mean"]), list(input_config["std"]))]


class ChipTransform(torch.nn.Module):
    """A transform in two stages, so the costly deterministic part can be computed once and cached.

    ``static``: PIL chip -> PIL image of a fixed size (crop + resize; no randomness); its output, as a uint8 array,
    is what :mod:`faceage.data.chips` caches. ``dynamic``: that uint8 image (array, tensor or PIL) -> normalised
    float tensor ``(3, S, S)``, with the random augmentation when training. ``key`` names the static stage (it is
    part of the cache key). Calling the transform runs both stages.
    """

    def __init__(self, static: T.Compose, dynamic: T.Compose, key: dict) -> None:
        super().__init__()
        self.static, self.dynamic, self.key = static, dynamic, key

    def forward(self, img: Image.Image) -> torch.Tensor:
        return self.dynamic(self.static(img))


def build_eval_transform(input_config: dict) -> ChipTransform:
    """Aligned chip (PIL RGB) -> normalised tensor ``(3, S, S)``; the only inference-time preprocessing.

    The static stage (central crop, antialiased resize to ``S``) gives the uint8 pixels the network sees, so a
    cached eval chip is exactly the uncached one."""
    size = int(input_config["image_size"])
    crop = float(input_config.get("crop", 1.0))
    static = T.Compose([CenterCropFraction(crop), T.Resize((size, size), antialias=True)])
    return ChipTransform(static, T.Compose(_normalize(input_config)), {"stage": "eval", "size": size, "crop": crop})


def train_chip_size(input_config: dict) -> int:
    """Side of the cached training chip: the whole aligned chip at the scale where its central ``crop`` is ``S``
    pixels, so geometric augmentation has the margin outside the crop to draw from (64 px, crop 0.9 -> 71)."""
    return round(int(input_config["image_size"]) / float(input_config.get("crop", 1.0)))


def _train_static(input_config: dict) -> tuple[T.Compose, dict]:
    """The static stage of every training transform (the whole chip resized to :func:`train_chip_size`) and its key."""
    full = train_chip_size(input_config)
    return T.Compose([T.Resize((full, full), antialias=True)]), {"stage": "train", "size": full}


def build_train_transform(input_config: dict, augment: AugmentConfig | None = None) -> ChipTransform:
    """Like :func:`build_eval_transform` with random geometric and photometric changes.

    The static stage resizes the whole chip to :func:`train_chip_size` (cacheable); the dynamic stage runs the random
    affine on that small image, then takes the central ``S`` pixels (the ``crop`` fraction), flips and jitters.
    Augmenting the small cached image instead of the 200-px chip is what makes training fast on CPUs
    (``benchmarks/train_throughput.py``)."""
    aug = augment or AugmentConfig()
    size = int(input_config["image_size"])
    static, key = _train_static(input_config)
    steps: list = [T.ToImage()]
    if aug.rotation or aug.translate or aug.scale:
        steps.append(
            T.RandomAffine(
                degrees=aug.rotation,
                translate=(aug.translate, aug.translate),
                scale=(1 - aug.scale, 1 + aug.scale),
                interpolation=T.InterpolationMode.BILINEAR,
            )
        )
    steps.append(T.CenterCrop(size))
    if aug.hflip:
        steps.append(T.RandomHorizontalFlip())
    if aug.color_jitter:
        c = aug.color_jitter
        steps.append(T.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.05, c / 4)))
    if aug.grayscale:
        steps.append(T.RandomGrayscale(p=aug.grayscale))
    steps += _normalize(input_config)[1:]
    if aug.erasing:
        steps.append(T.RandomErasing(p=aug.erasing))
    return ChipTransform(static, T.Compose(steps), key)


def build_train_chip_transform(input_config: dict) -> ChipTransform:
    """The training chip for batch augmentation: the static stage of :func:`build_train_transform` (cacheable) and a
    dynamic stage that only makes it a uint8 ``(3, T, T)`` tensor; :class:`faceage.data.batch_augment.BatchAugment`
    then augments, crops and normalises whole batches."""
    static, key = _train_static(input_config)
    return ChipTransform(static, T.Compose([T.ToImage()]), key)
