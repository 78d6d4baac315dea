"""OpenCV Zoo's YuNet in OpenCV's ``cv2.FaceDetectorYN``: face boxes with five landmarks for :class:`FaceDetector`,
and the chip cut from those five points.

YuNet (libfacedetection, Wu et al. 2023) finds faces turned to profile, rolled, partly hidden or dim that BlazeFace
and HOG miss: on 270 FairFace photos it found the middle face in all of them (``benchmarks/photo_faces.json``). Its
five points (eye centres, nose tip, mouth corners) align the face by a similarity transform onto
:data:`TEMPLATE`, where those points lie in a UTKFace chip, so rotation in the image plane is undone by the same fit
and no 68-point fit is needed (which fails on turned faces). The weights ship in ``faceage/weights/yunet/``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

MODEL_FILE = Path(__file__).resolve().parents[1] / "weights" / "yunet" / "face_detection_yunet_2023mar_int8bq.onnx"
# Hits from this score are faces: every middle face of the 270 FairFace photos scored 0.81 or more, every pasted face
# of the detection benchmark 0.73 or more, and no false hit there (face-free images, backgrounds) above 0.67
# (benchmarks/photo_faces.json, benchmarks/detection_yunet.json); OpenCV Zoo's demo uses 0.9.
MIN_SCORE = 0.7
NMS_IOU = 0.3  # OpenCV Zoo's demo
TOP_K = 5000
# Where YuNet's five points (eye on the image's left, eye on its right, nose tip, mouth corners left and right) lie in
# a 200-px UTKFace chip (padding 0.2): medians over 2,999 utkface/ training chips, each padded by 50 px of repeated
# edge and detected. Validation chips re-cut by it give the bundled model UTKFace's own chips' error: MAE 5.12
# against 5.11 on 599 faces (benchmarks/studies/yunet_template.json).
TEMPLATE = np.array([[58.10, 57.09], [136.42, 55.09], [96.89, 103.91], [65.58, 135.90], [132.73, 134.74]])
TEMPLATE_SIZE, TEMPLATE_PADDING = 200, 0.2
# upright(): faces rolled by this much (radians, 8 degrees) or scoring under UPRIGHT_SCORE are detected again turned
# upright, in a crop UPRIGHT_CONTEXT times their box's side resampled to UPRIGHT_SIDE px; hits there count from
# UPRIGHT_MIN_SCORE (the crop holds one face near its middle, so a weaker hit is that face).
UPRIGHT_ROLL = np.radians(8)
UPRIGHT_TURNS = (0.0, np.radians(30), np.radians(-30))
QUARTER_TURNS = (np.pi / 2, -np.pi / 2, np.pi)
UPRIGHT_SCORE = 0.9
UPRIGHT_CONTEXT = 2.0
UPRIGHT_SIDE = 160
UPRIGHT_MIN_SCORE = 0.5

_local = threading.local()


def _detector(width: int, height: int):
    """This thread's ``cv2.FaceDetectorYN`` (one per thread: ``setInputSize`` changes it) sized for the image."""
    import cv2

    if not hasattr(_local, "detector"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no notice per thread about DNN targets
        _local.detector = cv2.FaceDetectorYN.create(str(MODEL_FILE), "", (width, height), MIN_SCORE, NMS_IOU, TOP_K)
    _local.detector.setInputSize((width, height))
    return _local.detector


def load() -> None:
    """Loads the model in this thread now (it loads on first use otherwise)."""
    _detector(320, 320)


def detect(arr: np.ndarray, min_score: float = MIN_SCORE) -> list[tuple[tuple[float, float, float, float], float,
                                                                          np.ndarray]]:
    """Faces in an RGB image.

    Args:
        arr: ``HxWx3`` uint8 RGB array.
        min_score: the lowest score kept.

    Returns:
        ``(box, score, points)`` per face: ``box`` ``(left, top, right, bottom)`` in ``arr`` pixels, ``score`` in
        [0, 1], ``points`` a ``(5, 2)`` float array of ``(x, y)``: eye centres (the image's left one first), nose tip,
        mouth corners (left first).
    """
    h, w = arr.shape[:2]
    det = _detector(w, h)
    det.setScoreThreshold(float(min_score))
    _, found = det.detect(np.ascontiguousarray(arr[:, :, ::-1]))  # OpenCV takes BGR
    if found is None:
        return []
    out = []
    for row in found:
        x, y, bw, bh = (float(v) for v in row[:4])
        out.append(((x, y, x + bw, y + bh), float(row[14]), np.asarray(row[4:14], dtype=np.float64).reshape(5, 2)))
    return out


def roll(points: np.ndarray) -> float:
    """The face's roll in radians: the angle of the line from the image's left eye to its right eye (0: level)."""
    dx, dy = points[1] - points[0]
    return float(np.arctan2(dy, dx))


def upright(arr: np.ndarray, box: tuple[float, float, float, float], points: np.ndarray,
            score: float) -> tuple[np.ndarray, float]:
    """Five points refitted on the face turned upright, for faces rolled or found with little confidence.

    YuNet learnt mostly upright faces: on a face rolled 35 degrees its points say 8 (they lean back toward level), and
    on a face lying on its side they can be a quarter turn off; its score is highest where the face stands upright. A
    face whose points say it is rolled by :data:`UPRIGHT_ROLL` or more, or that scored under :data:`UPRIGHT_SCORE`,
    is cut out around its box (:data:`UPRIGHT_CONTEXT` times its side, :data:`UPRIGHT_SIDE` px) turned by its
    points' roll and :data:`UPRIGHT_TURNS` more, and detected again in each; where no crop scores
    :data:`UPRIGHT_SCORE`, the quarter and half turns are tried too. The best-scoring crop's points give the roll of
    one last crop, whose points are kept.

    Args:
        arr: ``HxWx3`` uint8 RGB image.
        box: the face's ``(left, top, right, bottom)`` in ``arr`` pixels.
        points: its ``(5, 2)`` YuNet points.
        score: its score.

    Returns:
        ``(points, score)``: the refitted points in ``arr`` pixels and their crop's score (the input where no crop
        found the face).
    """
    if abs(roll(points)) < UPRIGHT_ROLL and score >= UPRIGHT_SCORE:
        return points, score
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    side = UPRIGHT_CONTEXT * max(box[2] - box[0], box[3] - box[1])
    best = (points, score)
    angle = roll(points)
    for turns in (UPRIGHT_TURNS, QUARTER_TURNS):
        for turn in turns:
            found = _crop_points(arr, centre, side, angle + turn)
            if found is not None and found[1] > best[1]:
                best = found
        if best[1] >= UPRIGHT_SCORE:
            break
    refined = _crop_points(arr, centre, side, roll(best[0]))
    return refined if refined is not None and refined[1] >= best[1] - 0.05 else best


def _crop_points(arr: np.ndarray, centre: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float] | None:
    """The points and score of the face nearest the middle of the ``side``-px square around ``centre`` turned by
    ``-angle`` (so a face rolled by ``angle`` stands upright in it), mapped back to ``arr`` pixels."""
    import cv2

    scale = UPRIGHT_SIDE / side
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    shift = UPRIGHT_SIDE / 2 - rot @ centre
    crop = cv2.warpAffine(arr, np.hstack([rot, shift[:, None]]), (UPRIGHT_SIDE, UPRIGHT_SIDE),
                          flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    hits = detect(crop, UPRIGHT_MIN_SCORE)
    if not hits:
        return None
    mid = UPRIGHT_SIDE / 2
    _, score, pts = min(hits, key=lambda h: abs((h[0][0] + h[0][2]) / 2 - mid) + abs((h[0][1] + h[0][3]) / 2 - mid))
    return (pts - shift) @ np.linalg.inv(rot).T, score


def template(chip_size: int, padding: float) -> np.ndarray:
    """:data:`TEMPLATE` for a ``chip_size`` chip at ``padding`` (68-point template terms, as ``dlib.get_face_chip``):
    a larger padding shrinks the face about the chip's centre by ``(1 + 2 * 0.2) / (1 + 2 * padding)``."""
    scale = (1 + 2 * TEMPLATE_PADDING) / (1 + 2 * padding) * chip_size / TEMPLATE_SIZE
    return (TEMPLATE - TEMPLATE_SIZE / 2) * scale + chip_size / 2


def similarity(points: np.ndarray, target: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The least-squares similarity taking ``points`` onto ``target`` (Umeyama 1991, no reflection).

    Written out because it is four lines of numpy; OpenCV's ``estimateAffinePartial2D`` is a robust (sampling)
    estimate that moves with the random subset on five points.

    Args:
        points: ``(n, 2)`` image points.
        target: ``(n, 2)`` chip points.

    Returns:
        ``(scale, angle, shift)``: chip = scale * R(angle) @ image + shift, angle in radians.
    """
    mp, mt = points.mean(0), target.mean(0)
    p, t = points - mp, target - mt
    a = float((p * t).sum())  # sum of dot products
    b = float((p[:, 0] * t[:, 1] - p[:, 1] * t[:, 0]).sum())  # sum of cross products
    angle = np.arctan2(b, a)
    scale = np.hypot(a, b) / max(float((p**2).sum()), 1e-12)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return float(scale), float(angle), mt - scale * rot @ mp


def chip_details(points: np.ndarray, chip_size: int, padding: float) -> dlib.chip_details:
    """Where to cut the chip that puts ``points`` on :func:`template`, as ``dlib.chip_details`` (so the chip is
    extracted as the 68-point chips are, with dlib's anti-aliased resampling)."""
    scale, angle, shift = similarity(points, template(chip_size, padding))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    centre = rot.T @ (np.full(2, chip_size / 2) - shift) / scale  # the chip's centre in image pixels
    half = chip_size / scale / 2
    rect = dlib.drectangle(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return dlib.chip_details(rect, dlib.chip_dims(chip_size, chip_size), -angle)


def cut_chip(arr: np.ndarray, points: np.ndarray, chip_size: int, padding: float) -> Image.Image:
    """The aligned ``chip_size`` RGB chip of the face whose five YuNet points are ``points`` (image pixels)."""
    return Image.fromarray(dlib.extract_image_chip(arr, chip_details(points, chip_size, padding)))
