"""``load_image``: awkward-but-valid images become RGB of the right size; bad ones raise a clear ``ImageLoadError``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceage.data.images import ImageLoadError, check_image_header, load_image

VALID_KEYS = ["gray", "cmyk", "rgba", "palette", "gray16", "exif6", "webp", "large", "space", "unicode", "upper"]
BAD_KEYS = ["truncated", "empty", "text", "random", "tiny", "bomb", "dangling"]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_valid_images_load_as_rgb(image_zoo, key):
    path, size = image_zoo.valid[key]
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == size
    assert load_image(str(path)).size == size  # str and Path alike


def test_grayscale_keeps_values(image_zoo):
    path, _ = image_zoo.valid["gray"]
    arr = np.asarray(load_image(path))
    ref = np.asarray(Image.open(path))
    assert (arr == ref[..., None]).all()


def test_cmyk_jpeg_colour(image_zoo):
    arr = np.asarray(load_image(image_zoo.valid["cmyk"][0])).astype(int)
    r, g, b = arr.reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def test_rgba_transparent_composites_on_white(image_zoo):
    arr = np.asarray(load_image(image_zoo.valid["rgba"][0]))
    assert (arr[:, :20] == 255).all()  # transparent -> white
    assert (arr[:, 20:] == (0, 0, 255)).all()


def test_palette_transparency_composites_on_white(image_zoo):
    arr = np.asarray(load_image(image_zoo.valid["palette"][0]))
    assert (arr[:, :20] == 255).all()
    assert (arr[:, 20:] == (0, 255, 0)).all()


def test_16bit_scaled_to_8bit(image_zoo):
    path, _ = image_zoo.valid["gray16"]
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(load_image(path)).astype(int)
    assert arr[..., 0].max() >= 250 and arr[..., 0].min() <= 5
    assert (arr[..., 0] == arr[..., 2]).all()
    assert (np.diff(arr[0, :, 0]) >= 0).all()  # the ramp stays a ramp


def test_exif_orientation_applied(image_zoo):
    path, _ = image_zoo.valid["exif6"]
    assert Image.open(path).size == (60, 40)  # stored landscape
    arr = np.asarray(load_image(path)).astype(int)  # displayed portrait, rotated 90 degrees clockwise
    assert arr.shape == (60, 40, 3)
    top_right = arr[2:8, -8:-2].reshape(-1, 3).mean(0)
    top_left = arr[2:8, 2:8].reshape(-1, 3).mean(0)
    assert top_right[0] > 200 and top_right[2] < 60, top_right  # red marker moved to the top-right
    assert top_left[2] > 200 and top_left[0] < 60, top_left


def test_extensionless_png_loads(image_zoo):
    path, size = image_zoo.extensionless
    assert path.suffix == ""
    img = load_image(path)
    assert img.mode == "RGB" and img.size == size


def test_in_memory_sources_agree(image_zoo):
    path, size = image_zoo.valid["webp"]
    ref = np.asarray(load_image(path))
    assert (np.asarray(load_image(path.read_bytes())) == ref).all()
    assert (np.asarray(load_image(Image.open(path))) == ref).all()
    assert (np.asarray(load_image(ref)) == ref).all()
    assert (np.asarray(load_image(ref[..., :1])) == ref[..., :1]).all()  # HxWx1 greyscale array
    assert load_image(np.zeros((20, 30), np.uint8)).size == (30, 20)
    assert load_image(np.zeros((20, 30, 4), np.uint8)).mode == "RGB"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_images_raise_clear_error(image_zoo, key):
    path, words = image_zoo.bad[key]
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert any(w in message.lower() for w in words), message
    assert info.value.path == str(path)


def test_bomb_is_tiny_and_rejected_before_decoding(image_zoo):
    path, _ = image_zoo.bad["bomb"]
    assert path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path.read_bytes())


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert str(tmp_path / "nope.jpg") in str(info.value)
    with pytest.raises(ImageLoadError, match="directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_bad_in_memory_sources():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(b"hello world")
    with pytest.raises(ImageLoadError, match="uint8"):
        load_image(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ImageLoadError):
        load_image(np.zeros((20, 20, 7), np.uint8))
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(np.zeros((4, 40, 3), np.uint8))


def test_lazy_pil_image_that_fails_to_decode(image_zoo):
    img = Image.open(image_zoo.bad["truncated"][0])  # header fine, pixels missing
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(img)


def test_check_image_header(image_zoo, tmp_path):
    assert check_image_header(image_zoo.valid["cmyk"][0]) is None
    assert "empty" in check_image_header(image_zoo.bad["empty"][0])
    assert "not an image" in check_image_header(image_zoo.bad["text"][0])
    assert "dangling" in check_image_header(image_zoo.bad["dangling"][0])
    assert "not found" in check_image_header(tmp_path / "nope.jpg")
    assert "directory" in check_image_header(tmp_path)
    assert "too large" in check_image_header(image_zoo.bad["bomb"][0])
