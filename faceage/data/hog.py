"""dlib's face detectors (HOG and the MMOD CNN) and the chip check that confirms weak hits.

HOG runs coarse to fine in :class:`faceage.data.detect.FaceDetector`: first without upsampling (boxes from ~73 px),
then on a copy enlarged by :data:`FINE_SCALE` (boxes from ~57 px) only where the first pass found nothing or a face
near its size floor (:data:`SMALL_FACE_SIDE`). A hit scoring under :data:`VERIFY_BELOW` is kept only when
confirmed: by HOG again on the hit's chip aligned by its 68 landmarks (:func:`chip_confirms`, ~2 ms), or by the CNN
with ``thorough`` (:func:`cnn_confirms`, ~210 ms). A real face comes out upright and centred on its chip, where HOG
scores it higher than in the photo; on a false hit the landmarks fit nothing and the chip is no face.

The thresholds were chosen by ``benchmarks/studies/detection_verifiers.py`` (``detection_verifiers.json``);
``benchmarks/RESULTS.md`` ("Detection on photos") has the figures.
"""

from __future__ import annotations

import copy
import threading
from functools import cache
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from faceage.data import alignment

# Hits under this HOG score are checked on their chip (or by the CNN with thorough).
VERIFY_BELOW = 0.5
# The chip check cuts the hit's chip at this side and keeps it when HOG scores it this much: it keeps all 78 faces
# scoring 0-0.5 in benchmarks/studies/detection_verifiers.json and drops every false hit (17 with 400 more crops).
VERIFY_CHIP_SIDE = 100
VERIFY_CHIP_THRESHOLD = -0.35
# Hits from WEAK_THRESHOLD up to dlib's 0 are reported and kept only when their chip scores WEAK_CHIP_THRESHOLD:
# 58 of 61 such faces kept, 0 of 11 false hits (detection_verifiers --n 100 --n-small 50 --negatives 400, 1x pass).
WEAK_THRESHOLD = -0.3
WEAK_CHIP_THRESHOLD = 0.0
# The pass without upsampling finds boxes from ~73 px: a face under this side may hide smaller ones, so the fine pass
# runs (as it does when the first pass found none).
SMALL_FACE_SIDE = 80
# The fine pass enlarges by 1.4 (not dlib's 2x: half the pixels): 98% of 64-px faces found at 1.25x and 1.4x,
# 42% at 1x (benchmarks/detection.py).
FINE_SCALE = 1.4
# The CNN sees a weak hit rescaled to this side, with half a box of margin.
CNN_VERIFY_SIDE = 100

# dlib's frontal HOG detector saved by dlib's own serialiser (weights/dlib/README.md): it loads in ~2 ms, where
# dlib.get_frontal_face_detector() rebuilds it in ~0.5 s at every start (benchmarks/detection_whole_process.json).
HOG_FILE = Path(__file__).resolve().parents[1] / "weights" / "dlib" / "frontal_face_detector.svm"

_local = threading.local()  # dlib detectors keep scratch state: one instance per thread


@cache
def hog_prototype() -> dlib.fhog_object_detector:
    """dlib's frontal HOG detector, read from :data:`HOG_FILE` once per process (built when the file is unreadable)."""
    try:
        return dlib.fhog_object_detector(str(HOG_FILE))  # dlib's deserialiser, not pickle
    except RuntimeError:  # missing or unreadable: the same detector, built
        return dlib.get_frontal_face_detector()


def hog_detector() -> dlib.fhog_object_detector:
    """This thread's copy of :func:`hog_prototype` (~2 ms to copy for each new thread)."""
    if not hasattr(_local, "hog"):
        _local.hog = copy.deepcopy(hog_prototype())  # dlib's pickle support
    return _local.hog


@cache
def _cnn_path() -> str:
    return alignment.model_path("cnn")


def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    """This thread's dlib MMOD CNN face detector."""
    if not hasattr(_local, "cnn"):
        _local.cnn = dlib.cnn_face_detection_model_v1(_cnn_path())
    return _local.cnn


def chip_score(arr: np.ndarray, rect: dlib.rectangle,
               floor: float) -> tuple[dlib.full_object_detection, float | None]:
    """The hit's 68 landmarks and HOG's best score from ``floor`` on its chip aligned by them.

    The chip is cut at :data:`VERIFY_CHIP_SIDE` pixels with :data:`~faceage.data.alignment.UTKFACE_PADDING`; the
    score is ``None`` when HOG finds nothing scoring ``floor`` there.
    """
    shape = alignment.shape_predictor(68)(arr, rect)
    details = dlib.get_face_chip_details(shape, size=VERIFY_CHIP_SIDE, padding=alignment.UTKFACE_PADDING)
    chip = dlib.extract_image_chip(arr, details)
    _, scores, _ = hog_detector().run(chip, 0, floor)
    return shape, (float(max(scores)) if len(scores) > 0 else None)


def chip_confirms(arr: np.ndarray, rect: dlib.rectangle,
                  threshold: float | None = None) -> dlib.full_object_detection | None:
    """The (weak) hit's 68 landmarks when its chip scores ``threshold`` (default :data:`VERIFY_CHIP_THRESHOLD`)."""
    shape, score = chip_score(arr, rect, VERIFY_CHIP_THRESHOLD if threshold is None else threshold)
    return None if score is None else shape


def cnn_confirms(arr: np.ndarray, rect: dlib.rectangle) -> bool:
    """Whether the CNN detector finds a face centred inside a (weak) HOG box, looking only around that box."""
    side = max(rect.width(), rect.height())
    margin = side // 2
    h, w = arr.shape[:2]
    left, top = max(0, rect.left() - margin), max(0, rect.top() - margin)
    right, bottom = min(w, rect.right() + 1 + margin), min(h, rect.bottom() + 1 + margin)
    if right - left < 2 or bottom - top < 2:
        return False
    crop = Image.fromarray(np.ascontiguousarray(arr[top:bottom, left:right]))
    scale = CNN_VERIFY_SIDE / side
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.BILINEAR)
    for d in cnn_detector()(np.asarray(crop), 0):
        cx = left + (d.rect.left() + d.rect.right()) / 2 / scale
        cy = top + (d.rect.top() + d.rect.bottom()) / 2 / scale
        if rect.left() <= cx <= rect.right() and rect.top() <= cy <= rect.bottom():
            return True
    return False
