"""Safe image decoding: every awkward-but-valid image becomes RGB, every bad one a clear :class:`ImageLoadError`.

Pillow does the decoding; this module only turns its many failure modes (and a few it lets through, such as
truncated JPEGs decoded with grey padding, or 16-bit greyscale) into one error type and one colour mode.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
MAX_IMAGE_PIXELS = 64_000_000  # 8000x8000; larger headers are treated as decompression bombs
MIN_FACE_SIDE = 16  # pixels; anything smaller cannot hold a face worth estimating

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(Exception):
    """An image could not be used. ``str()`` names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0
        scale = 255.0 / hi if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray, min_side: int = MIN_FACE_SIDE) -> Image.Image:
    """Decodes an image to an upright 8-bit RGB PIL image.

    Args:
        source: a path, encoded bytes, a PIL image or an ``HxW[xC]`` uint8 array.
        min_side: smallest accepted width/height in pixels.

    Returns:
        ``PIL.Image`` in mode ``RGB`` with EXIF orientation applied.

    Raises:
        ImageLoadError: naming the file and the problem (missing, empty, not an image, truncated, too large,
            too small).
    """
    name = "<bytes>" if isinstance(source, bytes) else "<array>" if isinstance(source, (np.ndarray, Image.Image)) else str(source)
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            raise ImageLoadError(name, f"array must be uint8, got {arr.dtype}")
        img = Image.fromarray(arr)
    elif isinstance(source, Image.Image):
        img = source
    else:
        if not isinstance(source, bytes):
            path = Path(source)
            if path.is_symlink() and not path.exists():
                raise ImageLoadError(name, "dangling symbolic link")
            if not path.exists():
                raise ImageLoadError(name, "file not found")
            if path.is_dir():
                raise ImageLoadError(name, "is a directory, not an image")
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ImageLoadError(name, f"cannot read file ({e.strerror or e})") from None
        else:
            data = source
        if not data:
            raise ImageLoadError(name, "empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageLoadError(name, f"image too large ({w}x{h} pixels; possible decompression bomb)")
                img.load()
        except ImageLoadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageLoadError(name, "image too large (possible decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageLoadError(name, "not an image (unrecognised format)") from None
        except (OSError, SyntaxError, ValueError) as e:
            msg = str(e)
            kind = "truncated or corrupt image" if "truncated" in msg or "broken" in msg or "premature" in msg.lower() else "corrupt image"
            raise ImageLoadError(name, f"{kind} ({msg})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        pass
    if min(img.size) < min_side:
        raise ImageLoadError(name, f"image too small to hold a face ({img.size[0]}x{img.size[1]} pixels, need >= {min_side})")
    return _to_rgb(img)


def check_image_header(path: str | os.PathLike) -> str | None:
    """Cheap check (header only, no decoding) used by dataset readers; returns a problem string or ``None``."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        return "dangling symbolic link"
    try:
        if p.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(p) as img:
            img.verify()
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except Exception as e:  # noqa: BLE001 - any decoder complaint means the file is unusable
        return f"corrupt image ({e})"
    return None
