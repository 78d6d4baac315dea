"""Shared fixtures: a tiny saved model (+ ONNX graph) and generated awkward/bad image files (never dataset images)."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast instead of retrying
# the decoded-chip cache of training runs goes to a throwaway folder, never the user's ~/.cache
if "FACEAGE_CACHE" not in os.environ:
    os.environ["FACEAGE_CACHE"] = tempfile.mkdtemp(prefix="faceage-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FACEAGE_CACHE"], ignore_errors=True)  # removed when the run ends

CORNER = (255, 0, 0)  # marker colour in the stored top-left corner of the EXIF-rotated JPEG


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """``AgeModel(resnet18, dldl, 32px, gender)`` saved with ``save_pretrained`` plus ``model.onnx``."""
    import torch

    from faceage.models.export import export_onnx
    from faceage.models.age_model import AgeModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32px model: extra threads only cost time, a lot on a busy machine
    try:
        torch.manual_seed(0)
        model = AgeModel(backbone="resnet18", head="dldl", image_size=32, gender=True).eval()
        directory = tmp_path_factory.mktemp("tiny_model")
        model.save_pretrained(directory)
        export_onnx(model, directory / "model.onnx")
    finally:
        torch.set_num_threads(threads)
    return directory


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def write_valid_images(root: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """Awkward-but-valid images -> ``{key: (path, expected RGB size)}``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, tuple[Path, tuple[int, int]]] = {}

    def save(key: str, name: str, img: Image.Image, size=None, **kw):
        path = root / name
        img.save(path, **kw)
        out[key] = (path, size or img.size)

    save("gray", "gray.png", Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L"))
    save("cmyk", "cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 255, 0)), quality=95)  # pure red in CMYK
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:, 20:, 3] = 255  # left half fully transparent, right half opaque blue
    save("rgba", "rgba.png", Image.fromarray(rgba, "RGBA"))
    pal = Image.new("P", (40, 30), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (20, 0, 40, 30))  # left half index 0 (transparent), right half index 1 (green)
    save("palette", "palette.png", pal, transparency=0)
    ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
    save("gray16", "gray16.png", Image.fromarray(ramp, "I;16"))
    stored = Image.new("RGB", (60, 40), (0, 0, 255))
    stored.paste(CORNER, (0, 0, 10, 10))  # stored top-left -> displayed top-right after orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    path = root / "exif6.jpg"
    path.write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
    out["exif6"] = (path, (40, 60))
    save("webp", "image.webp", Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), lossless=True)
    save("large", "large.jpg", Image.new("RGB", (6000, 4000), (120, 90, 60)), quality=80)
    save("space", "with space.jpg", Image.new("RGB", (40, 30), (10, 200, 30)))
    save("unicode", "éß 顔.jpg", Image.new("RGB", (40, 30), (200, 10, 30)))
    save("upper", "UPPER.JPEG", Image.new("RGB", (40, 30), (90, 10, 130)))
    return out


def write_extensionless_png(path: Path) -> tuple[Path, tuple[int, int]]:
    """A PNG named without extension (decoding goes by content, not name)."""
    Image.new("RGB", (40, 30), (30, 60, 90)).save(path, "PNG")
    return path, (40, 30)


def write_bad_images(root: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Unusable files -> ``{key: (path, words one of which the error must contain)}``."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def put(key: str, name: str, data: bytes, words: tuple[str, ...]):
        (root / name).write_bytes(data)
        out[key] = (root / name, words)

    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = _jpeg_bytes(Image.fromarray(noise))
    put("truncated", "truncated.jpg", jpeg[: len(jpeg) // 2], ("truncated",))
    put("empty", "empty.jpg", b"", ("empty",))
    put("text", "text.jpg", b"this is not an image\n" * 10, ("not an image",))
    put("random", "random.png", np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes(), ("not an image",))
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tiny, "PNG")
    put("tiny", "tiny.png", tiny.getvalue(), ("too small",))
    put("bomb", "bomb.png", bomb_png(), ("too large", "decompression bomb"))
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    out["dangling"] = (root / "dangling.jpg", ("dangling", "symbolic link"))
    return out


class Zoo:
    """``root`` holds every valid and bad file; ``extensionless`` lives in ``root`` too (skipped by folder expansion)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.valid = write_valid_images(root)
        self.bad = write_bad_images(root)
        self.extensionless = write_extensionless_png(root / "photo")


@pytest.fixture(scope="session")
def image_zoo(tmp_path_factory) -> Zoo:
    """Generated awkward-valid and bad image files (read-only for tests: copy what you need to change)."""
    return Zoo(tmp_path_factory.mktemp("zoo"))


def write_utkface_tree(root: Path, n: int = 96, size: int = 32, seed: int = 0) -> Path:
    """``n`` generated faces with UTKFace-style names whose brightness grows with age, so a model can learn."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        age = int(rng.integers(1, 80))
        gender, race = int(rng.integers(0, 2)), int(rng.integers(0, 5))
        level = 40 + 2.5 * age
        pixels = np.clip(rng.normal(level, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        pixels[:, : size // 4, 0] = 255 * gender  # a gender cue
        Image.fromarray(pixels).save(root / f"{age}_{gender}_{race}_2017010{i % 10}{i:09d}.jpg.chip.jpg", quality=95)
    return root


@pytest.fixture
def utkface_tree(tmp_path) -> Path:
    return write_utkface_tree(tmp_path / "utk")


@pytest.fixture
def one_torch_thread():
    """Tiny models on a busy 2-core machine: one intra-op thread is faster; the previous count is restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items):
    """Real-data tests (``data``: they read ../shared/data/utkface) are end to end and long: they count as ``slow``
    too, so ``make test-fast`` (``-m "not slow"``) leaves them out and ``make test`` runs them."""
    for item in items:
        if item.get_closest_marker("data") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
