"""From BlazeFace's boxes to the boxes dlib's 68-point landmark model expects, and the scores BlazeFace hits need.

dlib's landmark model was trained from HOG's boxes, so :func:`blaze_rect` maps a BlazeFace box
(:mod:`faceage.data.blazeface`) to the box HOG would draw. Close-ups (a tight crop, a UTKFace chip) ask HOG for
their own box (:func:`hog_box_near`), so they get the chip ``detector="hog"`` cuts; where HOG finds none, the
landmarks are refitted from the box of their last fit (:func:`hog_box_of`).

The figures come from ``benchmarks/detection.py``'s photos (``benchmarks/RESULTS.md``, "Detection on photos") and
``benchmarks/studies/detectors_check.py`` (tight crops).
"""

from __future__ import annotations

import dlib
import numpy as np
from PIL import Image

from faceage.data import alignment, hog
from faceage.data.boxes import iou

# A BlazeFace box -> HOG's box: side 0.955 of its width, centre 0.017 widths higher (medians over 391 faces both
# detectors found on the benchmark's seed-0 photos; IQR of the side ratio 0.89-1.04).
BLAZE_TO_HOG = (0.955, -0.017)
# Landmarks -> HOG's box: side 1.016 of the landmarks' span, centre (0.004, -0.080) spans off theirs (medians over
# 147 HOG faces of 40 benchmark photos).
LANDMARKS_TO_HOG = (1.016, 0.0043, -0.0796)
# A face wider than BLAZE_CLOSE_UP of the short side is fitted from HOG's own box, else refitted BLAZE_REFITS times:
# MAE 4.73 on 400 test chips, HOG's own 4.71, the mapped box 5.30 (benchmarks/studies/detectors_check.py --chips 400).
BLAZE_CLOSE_UP = 0.4
BLAZE_REFITS = 3
# HOG searches for the close-up's box on the box plus its side around it, shrunk to at most this many pixels, and
# takes its best hit overlapping the BlazeFace box by this IoU.
BLAZE_HOG_SIDE = 400
BLAZE_HOG_IOU = 0.3
# On images of at most this many pixels HOG looks first (~3 ms on a 200-px chip, where BlazeFace costs ~8 ms on any
# image): on 2,000 utkface/ chips `faceage predict` took 12.1 s, against 32.8 s with BlazeFace alone.
HOG_FIRST_PIXELS = 320 * 320
# Hits from BLAZE_MIN_SCORE (MediaPipe's: 0.5) are kept, under BLAZE_VERIFY_BELOW or in a second look (tiles, padded
# retry) when the chip check confirms them: 295 of 298 faces, 1 of 139 false hits at 0.4-0.85 (RESULTS.md).
BLAZE_MIN_SCORE = 0.4
BLAZE_VERIFY_BELOW = 0.9
# Weaker hits, from BLAZE_WEAK_SCORE, are kept when their chip scores hog.WEAK_CHIP_THRESHOLD: 38 of 45 such faces
# kept and none of ~2,700 false hits on five seeds (benchmarks/studies/blaze_chip_check.json).
BLAZE_WEAK_SCORE = 0.25


def blaze_rect(box: tuple[float, float, float, float]) -> dlib.rectangle:
    """The box HOG would draw for a BlazeFace box ``(left, top, right, bottom)`` (:data:`BLAZE_TO_HOG`)."""
    left, top, right, bottom = box
    side_k, dy_k = BLAZE_TO_HOG
    w = right - left
    return alignment.square((left + right) / 2, (top + bottom) / 2 + dy_k * w, side_k * w)


def hog_box_of(shape: dlib.full_object_detection) -> dlib.rectangle:
    """The box dlib's HOG would give for these landmarks (:data:`LANDMARKS_TO_HOG`)."""
    pts = alignment.landmark_points(shape)
    lo, hi = pts.min(0), pts.max(0)
    span = float((hi - lo).max())
    k, dx, dy = LANDMARKS_TO_HOG
    cx, cy = (lo + hi) / 2 + np.array([dx, dy]) * span
    return alignment.square(cx, cy, k * span)


def hog_box_near(arr: np.ndarray, rect: dlib.rectangle) -> dlib.rectangle | None:
    """HOG's box for the face in ``rect``, or ``None`` where HOG finds none.

    HOG (no upsampling, hits down to :data:`~faceage.data.hog.WEAK_THRESHOLD`) searches ``rect`` plus its side around
    it, on a copy at most :data:`BLAZE_HOG_SIDE` pixels wide; its best-scoring hit overlapping ``rect`` by
    :data:`BLAZE_HOG_IOU` wins. On a tight crop that is the whole image at full size: HOG's box, as
    ``detector="hog"`` gets it.
    """
    h, w = arr.shape[:2]
    margin = max(rect.width(), rect.height())
    left, top = max(0, rect.left() - margin), max(0, rect.top() - margin)
    right, bottom = min(w, rect.right() + 1 + margin), min(h, rect.bottom() + 1 + margin)
    crop = np.ascontiguousarray(arr[top:bottom, left:right])
    scale = min(1.0, BLAZE_HOG_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    rects, scores, _ = hog.hog_detector().run(crop, 0, hog.WEAK_THRESHOLD)
    target = alignment.rect_box(rect)
    best = None
    for r, s in zip(rects, scores):
        r = alignment.scale_rect(r, 1.0 / scale)
        r = dlib.rectangle(r.left() + left, r.top() + top, r.right() + left, r.bottom() + top)
        if iou(alignment.rect_box(r), target) >= BLAZE_HOG_IOU and (best is None or s > best[1]):
            best = (r, s)
    return None if best is None else best[0]
