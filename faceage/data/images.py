"""Safe image decoding: every awkward-but-valid image becomes RGB, every bad one a clear :class:`ImageLoadError`.

Pillow does the decoding; this module only turns its many failure modes (and a few it lets through, such as
truncated JPEGs decoded with grey padding, or 16-bit greyscale) into one error type and one colour mode.

Files are judged before they are read: a file larger than :func:`max_image_bytes` (50 MB by default; set the
``FACEAGE_MAX_IMAGE_BYTES`` environment variable to change it) is refused from its size alone, and headers claiming
more than :data:`MAX_IMAGE_PIXELS` pixels from the header alone, so neither costs memory.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
MAX_IMAGE_PIXELS = 64_000_000  # 8000x8000; larger headers are treated as decompression bombs
MIN_FACE_SIDE = 16  # pixels; anything smaller cannot hold a face worth estimating
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # default per-file limit; a photo this large is already unusual
MAX_IMAGE_BYTES_ENV = "FACEAGE_MAX_IMAGE_BYTES"

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(Exception):
    """An image could not be used. ``str()`` names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def max_image_bytes() -> int:
    """The per-file size limit: ``FACEAGE_MAX_IMAGE_BYTES`` when set to a positive integer, else 50 MB."""
    value = os.environ.get(MAX_IMAGE_BYTES_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else MAX_IMAGE_BYTES


def _size_problem(size: int) -> str | None:
    limit = max_image_bytes()
    if size > limit:
        return f"file too large ({_amount(size)}; the limit is {_amount(limit)}, set {MAX_IMAGE_BYTES_ENV} to change it)"
    return None


def _amount(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an image extension (:data:`IMAGE_EXTENSIONS`, case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image, owned: bool = False) -> Image.Image:
    """RGB version of ``img``; an ``owned`` (freshly decoded) RGB image is returned as is, without a copy."""
    if owned and img.mode == "RGB":
        return img
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


_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings() edits process-wide state; serialise header parsing


def _open(data: bytes, name: str) -> Image.Image:
    """Parses the header (cheap) with Pillow's decompression-bomb warning turned into an error and our own cap."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageLoadError(name, f"image too large ({w}x{h} pixels; possible decompression bomb)")
    return img


def _decode_problem(e: Exception) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "image too large (possible decompression bomb)"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    msg = str(e) or type(e).__name__
    low = msg.lower()
    kind = "truncated or corrupt image" if "truncated" in low or "broken" in low or "premature" in low or isinstance(e, EOFError) else "corrupt image"
    return f"{kind} ({msg})"


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageLoadError(name, f"array must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(name, f"array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


def load_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray, min_side: int = MIN_FACE_SIDE) -> Image.Image:
    """Decodes an image to an upright 8-bit RGB PIL image.

    Safe to call from several threads at once.

    Args:
        source: a path, encoded bytes, a PIL image or an ``HxW[xC]`` uint8 array.
        min_side: smallest accepted width/height in pixels.

    Returns:
        ``PIL.Image`` in mode ``RGB`` with EXIF orientation applied.

    Raises:
        ImageLoadError: naming the file and the problem (missing, empty, not an image, truncated, too large,
            too small).
    """
    if isinstance(source, bytes):
        name = "<bytes>"
    elif isinstance(source, np.ndarray):
        name = "<array>"
    elif isinstance(source, Image.Image):
        name = str(getattr(source, "filename", "") or "<image>")
    else:
        name = str(source)
    if isinstance(source, np.ndarray):
        img = _from_array(source, name)
    elif isinstance(source, Image.Image):
        img = source
        try:
            img.load()  # a lazily opened image decodes here
        except Exception as e:  # noqa: BLE001 - any decoder complaint means the image is unusable
            raise ImageLoadError(name, _decode_problem(e)) from None
    else:
        if not isinstance(source, bytes):
            path = Path(source)
            if path.is_symlink() and not path.exists():
                raise ImageLoadError(name, "dangling symbolic link")
            if not path.exists():
                raise ImageLoadError(name, "file not found")
            if path.is_dir():
                raise ImageLoadError(name, "is a directory, not an image")
            if not path.is_file():
                raise ImageLoadError(name, "not a regular file")
            try:
                problem = _size_problem(path.stat().st_size)  # before reading: a huge (or sparse) file costs nothing
                if problem:
                    raise ImageLoadError(name, problem)
                data = path.read_bytes()
            except OSError as e:
                raise ImageLoadError(name, f"cannot read file ({e.strerror or e})") from None
        else:
            data = source
        if not data:
            raise ImageLoadError(name, "empty file (0 bytes)")
        problem = _size_problem(len(data))
        if problem:
            raise ImageLoadError(name, problem)
        try:
            img = _open(data, name)
            img.load()
        except ImageLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, EOFError, struct.error...)
            raise ImageLoadError(name, _decode_problem(e)) from None
    owned = not isinstance(source, Image.Image)  # decoded here: may be changed in place, never copied needlessly
    try:
        if owned:
            ImageOps.exif_transpose(img, in_place=True)
        else:
            img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose an otherwise good image
        pass
    if min(img.size) < min_side:
        raise ImageLoadError(name, f"image too small to hold a face ({img.size[0]}x{img.size[1]} pixels, need >= {min_side})")
    try:
        return _to_rgb(img, owned)
    except (ValueError, OSError) as e:  # e.g. LAB or multi-channel float modes Pillow cannot convert
        raise ImageLoadError(name, f"unsupported colour mode {img.mode} ({e})") from None


def check_image_header(path: str | os.PathLike) -> str | None:
    """Cheap check (header only, no decoding) used by dataset readers; returns a problem string or ``None``."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        return "dangling symbolic link"
    if p.is_dir():
        return "is a directory, not an image"
    try:
        size = p.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        if _size_problem(size):
            return _size_problem(size)
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(p)
        with img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                return f"image too large ({w}x{h} pixels; possible decompression bomb)"
            img.verify()
    except FileNotFoundError:
        return "file not found"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, UnidentifiedImageError) as e:
        return _decode_problem(e)
    except Exception as e:  # noqa: BLE001 - any decoder complaint means the file is unusable
        return f"corrupt image ({e})"
    return None
