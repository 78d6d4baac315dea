"""Face detection and alignment: photos in, UTKFace-like aligned face chips out (:class:`FaceDetector`).

The default detector is OpenCV Zoo's YuNet (:mod:`faceage.data.yunet`): one pass over the whole image, faces turned
to profile, rolled or partly hidden found with five landmarks, rolled faces refitted upright, and each chip cut by a
similarity transform of those five points onto where they lie in UTKFace's chips. ``detector="blazeface"`` runs
MediaPipe's BlazeFace (:mod:`faceage.data.blazeface`): its boxes mapped to the box HOG would draw
(:mod:`faceage.data.blazeface_boxes`), weak hits confirmed by HOG on their aligned chip (:mod:`faceage.data.hog`),
then dlib's 68-point alignment (:mod:`faceage.data.alignment`). ``detector="hog"`` runs dlib's HOG frontal face
detector coarse to fine, ``"cnn"`` dlib's MMOD CNN. Detection runs
on a copy at most :data:`MAX_DETECT_SIDE` pixels wide; landmarks and chips use the full resolution.

``benchmarks/detection.py`` measures the detectors (``benchmarks/RESULTS.md``, "Detection on photos"). Every name of
the modules above that callers use is importable from here too.
"""

from __future__ import annotations

from typing import NamedTuple

import dlib
import numpy as np
from PIL import Image

from faceage.data import alignment, blazeface_boxes, hog, yunet
from faceage.data.alignment import (
    FIVE_POINT_SHIFT,
    FIVE_POINT_UTK_PADDING,
    UTKFACE_PADDING,
    Face,
    chip_details,
    five_point_padding,
)
from faceage.data.blazeface_boxes import (
    BLAZE_CLOSE_UP,
    BLAZE_HOG_IOU,
    BLAZE_HOG_SIDE,
    BLAZE_MIN_SCORE,
    BLAZE_REFITS,
    BLAZE_TO_HOG,
    BLAZE_VERIFY_BELOW,
    BLAZE_WEAK_SCORE,
    HOG_FIRST_PIXELS,
    LANDMARKS_TO_HOG,
)
from faceage.data.boxes import intersection
from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS
from faceage.data.hog import (
    FINE_SCALE,
    HOG_FILE,
    SMALL_FACE_SIDE,
    VERIFY_BELOW,
    VERIFY_CHIP_SIDE,
    VERIFY_CHIP_THRESHOLD,
    WEAK_CHIP_THRESHOLD,
    WEAK_THRESHOLD,
)

__all__ = [
    "BLAZE_CLOSE_UP", "BLAZE_HOG_IOU", "BLAZE_HOG_SIDE", "BLAZE_MIN_SCORE", "BLAZE_REFITS", "BLAZE_TO_HOG",
    "BLAZE_VERIFY_BELOW", "BLAZE_WEAK_SCORE", "DEFAULT_DETECTOR", "DETECTORS", "DUPLICATE_COVER", "DUPLICATE_EYES",
    "FINE_SCALE", "FIVE_POINT_SHIFT", "FIVE_POINT_UTK_PADDING", "HOG_FILE", "HOG_FIRST_PIXELS", "LANDMARKS_TO_HOG",
    "MAX_DETECT_SIDE", "PAD_RETRY", "PAD_RETRY_SIDE", "SMALL_FACE_SIDE", "UTKFACE_PADDING", "VERIFY_BELOW",
    "VERIFY_CHIP_SIDE", "VERIFY_CHIP_THRESHOLD", "WEAK_CHIP_THRESHOLD", "WEAK_THRESHOLD", "Face", "FaceDetector",
    "chip_details", "five_point_padding",
]

# Detection runs on a copy no larger than this; landmarks and chips use the full resolution.
MAX_DETECT_SIDE = 1024
# With nothing found, detection runs again with this fraction of the image added on every side (edge pixels
# repeated), for pre-cropped faces: 779 of 781 test chips found, against 754 (benchmarks/studies/detect_chips.py).
PAD_RETRY = 0.25
# ...on a copy whose short side is at most this (one pass, no fine one): ~15 ms instead of 185 ms on a face-free
# 640x480 photo.
PAD_RETRY_SIDE = 400
# YUNET_PAD_SMALL: YuNet looks at images of at most HOG_FIRST_PIXELS (a pre-cropped face, a UTKFace chip) on the padded
# copy first, so that it sees the whole head as in a photo: on 400 utkface/ test chips the bundled model's MAE is 3.870
# so (3.933 detected on the chip itself) against 3.857 taking the chips as they are; all 400 found either way
# (benchmarks/studies/detect_chips_yunet.json, "pad_retry" 0.25 and 0).
# Two detections are one face when the eyes of one lie within DUPLICATE_EYES eye distances of the other's, or their
# boxes share DUPLICATE_COVER of the smaller: one face each on the 1,420 utkface/ chips BlazeFace boxed twice.
DUPLICATE_EYES = 0.25
DUPLICATE_COVER = 0.5


class FaceDetector:
    """Finds faces and cuts UTKFace-like aligned chips.

    Models load lazily on first use and are cached for the process (detectors per thread, since dlib's are not
    safe to share between threads), so constructing a ``FaceDetector`` is free.

    Args:
        detector: ``"yunet"`` (the default, :data:`faceage.data.detectors.DEFAULT_DETECTOR`: OpenCV Zoo's YuNet,
            :mod:`faceage.data.yunet`, five landmarks per face, rolled faces refitted upright, chips cut from the five
            points; ``landmark_model``, ``threshold``, ``verify_below`` and ``thorough`` do not apply to it),
            ``"blazeface"`` (MediaPipe's BlazeFace, :mod:`faceage.data.blazeface`, one pass over the whole image, its
            boxes mapped to HOG's framing for the landmarks and close-ups fitted from HOG's own box), ``"hog"`` (dlib's frontal face
            detector, coarse to fine; finds 64-px faces more often, at half the speed) or ``"cnn"`` (dlib's MMOD,
            slow on CPU, finds more non-frontal faces).
        chip_size: side of the aligned chips in pixels.
        padding: alignment padding (68-point template terms); :data:`UTKFACE_PADDING` frames faces as UTKFace.
        upsample: times the detection image is upsampled (HOG finds faces from ~80 px, ~40 px after one).
        min_face: detections with a side smaller than this (original pixels) are dropped.
        landmark_model: 68 (default; exactly UTKFace's alignment) or 5 (smaller model, corrected to match).
        threshold: detector score threshold (dlib's default 0).
        verify_below: HOG detections scoring below this are kept only if confirmed (``None`` disables the check):
            by HOG again on their aligned chip (:data:`VERIFY_CHIP_SIDE`, :data:`VERIFY_CHIP_THRESHOLD`), or by the
            CNN detector with ``thorough``; drops e.g. the badge that HOG takes for a face in skimage's astronaut.
            Without ``thorough``, hits scoring from :data:`WEAK_THRESHOLD` up to ``threshold`` are reported too and
            kept only when their chip scores :data:`WEAK_CHIP_THRESHOLD` or more.
        max_side: detection runs on a copy whose longest side is at most this.
        pad_retry: when nothing is found, search again with this fraction of the image size added on each side (edge
            pixels repeated), for faces cropped too tightly to be detected; 0 disables the retry.
        thorough: HOG always runs at ``upsample`` (every face from ~40 px, about 4x the work of a pass without
            upsampling). By default (``False``) HOG first runs without upsampling, and again on a copy enlarged by
            :data:`FINE_SCALE` (faces from ~57 px) only when that finds no face or a face under
            :data:`SMALL_FACE_SIDE` px (a photo where smaller faces may be). Photos whose faces are all larger
            then cost a quarter of the pixels; faces of 40-57 px are found only by ``thorough``, and a small face
            next to a large one (a child far behind an adult close to the camera) can be missed, which ``thorough``
            avoids. ``thorough`` also confirms weak HOG hits with the CNN detector (~210 ms a hit) instead of the
            chip check (~2 ms). The CNN detector (``detector="cnn"``) always runs at ``upsample``. With BlazeFace,
            ``thorough`` searches the four corner tiles on every image (by default only where the whole image gave
            no face).
    """

    def __init__(self, detector: str = DEFAULT_DETECTOR, chip_size: int = 200, padding: float = UTKFACE_PADDING,
                 upsample: int = 1, min_face: int = 20, landmark_model: int = 68, threshold: float = 0.0,
                 verify_below: float | None = VERIFY_BELOW, max_side: int = MAX_DETECT_SIDE,
                 pad_retry: float = PAD_RETRY, thorough: bool = False) -> None:
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(map(repr, DETECTORS))}, got {detector!r}")
        if landmark_model not in (5, 68):
            raise ValueError(f"landmark_model must be 5 or 68, got {landmark_model!r}")
        if chip_size < 16:
            raise ValueError(f"chip_size must be at least 16 pixels, got {chip_size}")
        if not 0 <= pad_retry <= 1:
            raise ValueError(f"pad_retry must be between 0 and 1, got {pad_retry}")
        self.detector = detector
        self.chip_size = chip_size
        self.padding = padding
        self.upsample = upsample
        self.min_face = min_face
        self.landmark_model = landmark_model
        self.threshold = threshold
        self.verify_below = verify_below
        self.max_side = max_side
        self.pad_retry = pad_retry
        self.thorough = bool(thorough)

    def __repr__(self) -> str:
        return (f"FaceDetector(detector={self.detector!r}, chip_size={self.chip_size}, padding={self.padding}, "
                f"landmark_model={self.landmark_model}, thorough={self.thorough})")

    # ---- public -----------------------------------------------------------------------------------------------
    def load(self) -> FaceDetector:
        """Loads the models now (they load on first use otherwise), e.g. before forking workers that share them."""
        alignment.shape_predictor(self.landmark_model)
        if self.verify_below is not None and not self.thorough:
            alignment.shape_predictor(68)  # the chip check's landmarks
        if self.detector == "yunet":
            yunet.load()  # its own five points align the chip: no HOG check
            return self
        if self.detector == "blazeface":
            from faceage.data import blazeface

            blazeface.load()
        if self.detector == "cnn" or (self.thorough and self.detector == "hog"):
            hog.cnn_detector()
        if self.detector != "cnn":
            hog.hog_detector()  # HOG or its chip check (BlazeFace's too); other threads copy it
        return self

    def detect(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Finds every face and aligns it.

        Args:
            image: RGB PIL image (other modes are converted) or ``HxWx3`` uint8 array.

        Returns:
            Faces sorted by box area, largest first; empty when there is none.
        """
        image = alignment.as_pil(image)
        if self.detector == "yunet" and self.pad_retry > 0 and image.width * image.height <= HOG_FIRST_PIXELS:
            faces = self._detect_padded(image)  # see YUNET_PAD_SMALL
        else:
            faces = self._detect(image)
        if not faces and self.pad_retry > 0:
            faces = self._detect_padded(image)
        return sorted(_distinct(faces), key=lambda f: f.area, reverse=True)

    def align_whole(self, image: Image.Image | np.ndarray) -> Face:
        """Takes the whole image as the face box (a pre-cropped face) and aligns it by its landmarks.

        Args:
            image: RGB PIL image or ``HxWx3`` uint8 array holding one roughly cropped face.

        Returns:
            The face, with ``box`` the whole image and ``score`` 0.0.
        """
        arr = np.asarray(alignment.as_pil(image))
        return self._align(arr, dlib.rectangle(0, 0, arr.shape[1] - 1, arr.shape[0] - 1), 0.0)

    def align_box(self, image: Image.Image | np.ndarray, box: tuple[int, int, int, int]) -> Face:
        """Landmarks and aligns the face in a known box.

        Args:
            image: RGB PIL image or ``HxWx3`` uint8 array.
            box: ``(left, top, right, bottom)``, right/bottom exclusive.

        Returns:
            The aligned face with ``score`` 0.0.
        """
        arr = np.asarray(alignment.as_pil(image))
        left, top, right, bottom = (int(v) for v in box)
        return self._align(arr, dlib.rectangle(left, top, right - 1, bottom - 1), 0.0)

    # ---- stages -----------------------------------------------------------------------------------------------
    def _detect(self, image: Image.Image, max_side: int | None = None, fine: bool = True,
                retry: bool = False) -> list[Face]:
        small, factor = alignment.downscale(image, max_side or self.max_side)
        arr = np.asarray(image)
        if self.detector == "yunet":
            return self._yunet(arr, small, factor)
        faces = []
        for hit in self._find(small, fine, retry):
            rect = alignment.scale_rect(hit.rect, factor)
            if min(rect.width(), rect.height()) < self.min_face:
                continue
            # the chip check's 68 landmarks are the ones _align would fit (same box, same pixels) unless downscaled
            reuse = hit.shape if factor == 1.0 and self.landmark_model == 68 else None
            faces.append(self._align(arr, rect, hit.score, reuse, hit.hog_box))
        return faces

    def _detect_padded(self, image: Image.Image) -> list[Face]:
        """:meth:`_detect` on the image with ``pad_retry`` of its size added on each side (edge pixels repeated);
        boxes and landmarks are mapped back to the image, the chips keep the repeated edge where they reach it."""
        mx, my = round(image.width * self.pad_retry), round(image.height * self.pad_retry)
        padded = Image.fromarray(np.pad(np.asarray(image), ((my, my), (mx, mx), (0, 0)), mode="edge"))
        short = min(padded.size)
        if short > PAD_RETRY_SIDE and not self.thorough:  # see PAD_RETRY_SIDE
            side = min(self.max_side, round(max(padded.size) * PAD_RETRY_SIDE / short))
            faces = self._detect(padded, side, fine=False, retry=True)
        else:
            faces = self._detect(padded, retry=True)
        for f in faces:
            left, top, right, bottom = f.box
            f.box = (max(0, left - mx), max(0, top - my), min(image.width, right - mx), min(image.height, bottom - my))
            f.landmarks = f.landmarks - np.array([mx, my], dtype=f.landmarks.dtype)
        return [f for f in faces if f.area > 0]

    def _find(self, arr: np.ndarray, fine: bool = True, retry: bool = False) -> list[_Hit]:
        """Detector boxes (in ``arr`` pixels) with scores and, where the chip check fitted them, the 68 landmarks;
        ``fine=False`` skips the coarse-to-fine HOG's fine pass; ``retry``: the padded retry's search (BlazeFace then
        checks every hit)."""
        if self.detector == "cnn":
            found = [(d.rect, float(d.confidence)) for d in hog.cnn_detector()(arr, self.upsample)]
            return [_Hit(r, s) for r, s in found if s >= self.threshold]
        if self.detector == "blazeface":
            if not self.thorough and arr.shape[0] * arr.shape[1] <= HOG_FIRST_PIXELS:  # see HOG_FIRST_PIXELS
                found = self._verified(arr, self._hog(arr, 0, self._weak_threshold()))
                if found and min(min(h.rect.width(), h.rect.height()) for h in found) >= SMALL_FACE_SIDE:
                    return found  # HOG's own boxes (_Hit.hog_box)
            return self._blazeface(arr, fine, retry)
        if self.thorough or self.upsample <= 0:
            return self._verified(arr, self._hog(arr, self.upsample))
        found = self._hog(arr, 0, self._weak_threshold())
        if not fine:
            return self._verified(arr, found)
        # the decision uses the boxes over the threshold, before any check (the checks cost only in the pass kept)
        strong = [r for r, s in found if s >= self.threshold]
        if strong and min(min(r.width(), r.height()) for r in strong) >= SMALL_FACE_SIDE:
            found = self._verified(arr, found)
            if found:
                return found
        return self._verified(arr, self._hog_scaled(arr, min(FINE_SCALE, 2.0 ** self.upsample)))

    def _yunet(self, arr: np.ndarray, small: np.ndarray, factor: float) -> list[Face]:
        """YuNet's faces in ``small`` (``arr`` downscaled by ``factor``), each chip cut from ``arr`` by its five points
        (:func:`faceage.data.yunet.cut_chip`). The landmarks keep dlib's 5-point layout: each eye's two corners are
        its centre, the nose base is the nose tip."""
        faces = []
        for box, score, points in yunet.detect(small):
            box = tuple(v * factor for v in box)
            if min(box[2] - box[0], box[3] - box[1]) < self.min_face:
                continue
            points, _ = yunet.upright(arr, box, points * factor, score)
            chip = yunet.cut_chip(arr, points, self.chip_size, self.padding)
            left, top, right, bottom = (round(v) for v in box)
            clipped = (max(0, left), max(0, top), min(arr.shape[1], right), min(arr.shape[0], bottom))
            landmarks = points[[1, 1, 0, 0, 2]]
            faces.append(Face(box=clipped, landmarks=landmarks, score=score, chip=chip))
        return faces

    def _blazeface(self, arr: np.ndarray, fine: bool = True, retry: bool = False) -> list[_Hit]:
        """BlazeFace boxes as the HOG-like boxes dlib's landmark model was trained from (see BLAZE_TO_HOG), with
        the weak ones (under BLAZE_VERIFY_BELOW) kept only when HOG confirms them on their chip (more strictly under
        BLAZE_MIN_SCORE). The corner tiles too (``blazeface.detect_tiles``, for smaller faces) when the whole image
        gave no hit from BLAZE_MIN_SCORE, or always with ``thorough``. The second looks (tiles where the whole image
        gave none, the padded retry) check every hit."""
        from faceage.data import blazeface

        # weak hits (BLAZE_WEAK_SCORE) only where a check can confirm them, and not in the padded retry's copy
        weak = BLAZE_WEAK_SCORE if self.verify_below is not None and not retry else None
        found = blazeface.detect(arr, BLAZE_MIN_SCORE, weak)
        strong = any(score >= BLAZE_MIN_SCORE for _, score, _ in found)
        check_all = retry  # the second looks check every hit (see BLAZE_VERIFY_BELOW)
        if fine and (self.thorough or not strong):
            check_all = check_all or not strong
            found = blazeface.detect_tiles(arr, BLAZE_MIN_SCORE, whole=found)
        out = []
        for box, score, _ in found:
            rect = blazeface_boxes.blaze_rect(box)
            weak = score < BLAZE_MIN_SCORE  # asked for only where a check runs; always the stricter check
            if not weak and (self.verify_below is None or (score >= BLAZE_VERIFY_BELOW and not check_all)):
                out.append(_Hit(rect, score, hog_box=False))
            elif (shape := hog.chip_confirms(arr, rect, WEAK_CHIP_THRESHOLD if weak else None)) is not None:
                out.append(_Hit(rect, score, shape, hog_box=False))
        return out

    def _weak_threshold(self) -> float:
        """The lowest HOG score reported (weak hits under ``threshold`` are checked on their chip, see WEAK_THRESHOLD)."""
        return min(self.threshold, WEAK_THRESHOLD) if self.verify_below is not None else self.threshold

    def _hog(self, arr: np.ndarray, upsample: int, threshold: float | None = None) -> list[tuple[dlib.rectangle, float]]:
        rects, scores, _ = hog.hog_detector().run(arr, upsample, self.threshold if threshold is None else threshold)
        return list(zip(rects, (float(s) for s in scores)))

    def _hog_scaled(self, arr: np.ndarray, scale: float) -> list[tuple[dlib.rectangle, float]]:
        """HOG without upsampling on ``arr`` resized by ``scale``, boxes mapped back to ``arr`` pixels."""
        h, w = arr.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        big = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
        return [(alignment.scale_rect(r, w / size[0]), s) for r, s in self._hog(big, 0, self._weak_threshold())]

    def _verified(self, arr: np.ndarray, found: list[tuple[dlib.rectangle, float]]) -> list[_Hit]:
        """HOG boxes with the weak ones kept only when confirmed: by the chip check, or the CNN if thorough; hits
        under ``threshold`` (weak hits, without thorough only) by the stricter chip check."""
        if self.verify_below is None:
            return [_Hit(r, s) for r, s in found]
        if self.thorough:
            return [_Hit(r, s) for r, s in found if s >= self.verify_below or hog.cnn_confirms(arr, r)]
        out = []
        for r, s in found:
            if s >= self.verify_below:
                out.append(_Hit(r, s))
            elif (shape := hog.chip_confirms(arr, r, None if s >= self.threshold else WEAK_CHIP_THRESHOLD)) is not None:
                out.append(_Hit(r, s, shape))
        return out

    def _align(self, arr: np.ndarray, rect: dlib.rectangle, score: float,
               shape: dlib.full_object_detection | None = None, hog_box: bool = True) -> Face:
        """The face in ``rect``: landmarks (``shape`` when already fitted in this box) and the aligned chip;
        ``hog_box``: ``rect`` is HOG's own box (else a BlazeFace close-up asks HOG for one first)."""
        if not hog_box and rect.width() > BLAZE_CLOSE_UP * min(arr.shape[:2]):  # see BLAZE_CLOSE_UP
            rect, shape = self._close_up(arr, rect)
        elif shape is None:
            shape = alignment.shape_predictor(self.landmark_model)(arr, rect)
        return alignment.align(arr, rect, shape, score, self.chip_size, self.padding)

    def _close_up(self, arr: np.ndarray, rect: dlib.rectangle) -> tuple[dlib.rectangle, dlib.full_object_detection]:
        """Box and landmarks of a BlazeFace close-up (see BLAZE_CLOSE_UP): HOG's own box, and landmarks fitted from it,
        where HOG finds the face around ``rect``; else ``rect``, with landmarks refitted BLAZE_REFITS times from the
        HOG-like box of the last fit's."""
        predictor = alignment.shape_predictor(self.landmark_model)
        box = blazeface_boxes.hog_box_near(arr, rect)
        if box is not None:
            return box, predictor(arr, box)
        shape = predictor(arr, rect)
        for _ in range(BLAZE_REFITS):
            shape = predictor(arr, blazeface_boxes.hog_box_of(shape))
        return rect, shape


class _Hit(NamedTuple):
    """One detector box (detection-image pixels) with its score, the 68 landmarks if the chip check fitted them, and
    whether the box is one HOG drew (BlazeFace's are mapped to HOG's framing, see BLAZE_TO_HOG)."""

    rect: dlib.rectangle
    score: float
    shape: dlib.full_object_detection | None = None
    hog_box: bool = True



def _distinct(faces: list[Face]) -> list[Face]:
    """One face per face: the best-scoring of detections that are the same face (see DUPLICATE_EYES)."""
    def eyes(f: Face) -> np.ndarray:
        return np.stack([f.landmarks[0:2].mean(0), f.landmarks[2:4].mean(0)])

    def same(f: Face, e: np.ndarray, g: Face, ge: np.ndarray) -> bool:
        if np.linalg.norm(e - ge, axis=1).max() <= DUPLICATE_EYES * np.linalg.norm(ge[0] - ge[1]):
            return True
        shared = intersection(f.box, g.box)
        return shared > 0 and shared >= DUPLICATE_COVER * max(1, min(f.area, g.area))

    kept: list[tuple[Face, np.ndarray]] = []
    for f in sorted(faces, key=lambda f: -f.score):
        e = eyes(f)
        if not any(same(f, e, g, ge) for g, ge in kept):
            kept.append((f, e))
    return [f for f, _ in kept]
