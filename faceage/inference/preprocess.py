"""Inference preprocessing in NumPy + Pillow (no torch), equal to :func:`faceage.data.transforms.build_eval_transform`
on PIL input (a test holds them together), so the ONNX engine runs without importing PyTorch."""

from __future__ import annotations

import numpy as np
from PIL import Image


def preprocess_chip(chip: Image.Image, input_config: dict) -> np.ndarray:
    """Aligned RGB chip -> float32 ``(3, S, S)`` normalised as the model was trained."""
    frac = float(input_config.get("crop", 1.0))
    if frac < 1:
        w, h = chip.size
        cw, ch = round(w * frac), round(h * frac)
        left, top = (w - cw) // 2, (h - ch) // 2
        chip = chip.crop((left, top, left + cw, top + ch))
    size = int(input_config["image_size"])
    if chip.size != (size, size):
        chip = chip.resize((size, size), Image.BILINEAR)
    mean = np.asarray(input_config["mean"], dtype=np.float32)
    std = np.asarray(input_config["std"], dtype=np.float32)
    # (x / 255 - mean) / std as one multiply-add, on the channel-first layout the network takes
    scale, shift = (1.0 / (255.0 * std))[:, None, None], (mean / std)[:, None, None]
    arr = np.asarray(chip, dtype=np.uint8).transpose(2, 0, 1)
    return (arr * scale - shift).astype(np.float32, copy=False)


def calibration_batch(files: list[str], input_config: dict, limit: int = 256, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` aligned face chips (a seeded sample of ``files``), preprocessed as the model expects:
    ``(N, 3, S, S)`` float32. Unreadable files are skipped with a warning naming them."""
    import random
    import warnings

    from faceage.data.images import ImageLoadError, load_image

    picked = sorted(files)
    random.Random(seed).shuffle(picked)
    arrays = []
    for f in picked:
        if len(arrays) >= limit:
            break
        try:
            arrays.append(preprocess_chip(load_image(f), input_config))
        except ImageLoadError as e:
            warnings.warn(f"calibration: skipped {e}", stacklevel=2)
    if not arrays:
        raise ValueError("int8 quantization needs calibration face images; none of the given files could be read")
    return np.stack(arrays).astype(np.float32)
