"""BlazeFace (``detector="blazeface"``): the shipped ONNX graph, its decoding, and faces as dlib's HOG frames them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faceage.cli._common import add_detector_option
from faceage.data import alignment, blazeface, blazeface_boxes, hog
from faceage.data.boxes import iou
from faceage.data.detect import DETECTORS, FaceDetector
from faceage.data.detectors import DEFAULT_DETECTOR

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def test_yunet_is_the_default_everywhere():
    """One default: FaceDetector's, the commands' ``--detector`` (parsed without importing dlib) and the Predictor's;
    BlazeFace stays selectable."""
    from faceage.inference.chips import FaceChips

    p = argparse.ArgumentParser()
    add_detector_option(p)
    assert DEFAULT_DETECTOR == "yunet" == FaceDetector().detector == p.parse_args([]).detector
    assert p.parse_args(["--detector", "blazeface"]).detector == "blazeface"
    assert FaceChips({}).detector_kind == DEFAULT_DETECTOR
    assert p.parse_args(["--detector", "hog"]).detector == "hog" and "cnn" in DETECTORS
    code = "import sys, faceage.cli._common; print('dlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_anchors_are_mediapipes_back_camera_grid():
    a = blazeface.anchors()
    assert a.shape == (896, 2)  # 16x16 cells x 2 + 8x8 cells x 6
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per cell at stride 16
    np.testing.assert_allclose(a[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_astronaut_found_where_hog_finds_her(astronaut):
    raw = blazeface.detect(np.asarray(astronaut))
    assert len(raw) == 1 and raw[0][1] > 0.85  # 0.88: under BLAZE_VERIFY_BELOW, so checked on her chip, and kept
    (left, top, right, bottom), _, keypoints = raw[0]
    eyes = keypoints[:2]
    assert left < eyes[:, 0].min() < eyes[:, 0].max() < right and top < eyes[:, 1].min() < bottom
    hog = FaceDetector(detector="hog").detect(astronaut)[0]
    blaze = FaceDetector(detector="blazeface").detect(astronaut)
    assert len(blaze) == 1
    # mapped to HOG's framing, the box and the aligned landmarks agree with HOG's within a few pixels
    assert np.abs(np.array(blaze[0].box) - np.array(hog.box)).max() <= 12, (blaze[0].box, hog.box)
    assert np.abs(blaze[0].landmarks - hog.landmarks).max() <= 4


def test_letterbox_keeps_the_aspect_and_maps_back(astronaut):
    wide = astronaut.resize((512, 256))
    x, scale, px, py = blazeface.letterbox(np.asarray(wide))
    assert x.shape == (1, 3, 256, 256) and scale == 2.0 and (px, py) == (0, 64)
    assert np.all(x[0, :, :64] == 0) and np.all(x[0, :, 192:] == 0)  # grey padding is 0 after normalisation
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_no_face_in_noise_or_flat_images():
    rng = np.random.default_rng(0)
    detector = FaceDetector(detector="blazeface")
    for arr in (rng.integers(0, 255, (480, 640, 3), np.uint8), np.full((300, 300, 3), 128, np.uint8)):
        assert detector.detect(arr) == []


def test_corner_tiles_add_no_duplicate_and_map_back(astronaut):
    """A small face (box ~50 px) on a 1000x750 canvas: the tiles see it larger and score it higher; the merge keeps
    one box, the best, in canvas pixels (within a few pixels of the whole-image box)."""
    crop = astronaut.crop((110, 10, 330, 230)).resize((122, 122), Image.Resampling.LANCZOS)
    canvas = Image.fromarray(np.random.default_rng(0).integers(0, 255, (750, 1000, 3), np.uint8))
    canvas.paste(crop, (500, 250))
    arr = np.asarray(canvas)
    whole, tiles = blazeface.detect(arr, 0.4), blazeface.detect_tiles(arr, 0.4)
    assert len(whole) == 1 and len(tiles) == 1
    assert tiles[0][1] >= whole[0][1]
    assert np.abs(np.array(tiles[0][0]) - np.array(whole[0][0])).max() <= 8
    assert FaceDetector(detector="blazeface", thorough=True).detect(canvas)[0].box  # thorough: always tiles


def test_close_up_faces_take_hogs_box_or_are_refitted(astronaut, monkeypatch):
    """A face wider than BLAZE_CLOSE_UP of the image is fitted from the box HOG finds around it, once: on a tight crop,
    the landmarks and chip of detector="hog". Where HOG finds none, it is fitted 1 + BLAZE_REFITS times from its own
    landmarks (still within 2 px of HOG's here). A face in a photo is fitted once."""
    from faceage.data import detect as detect_module

    calls = []
    real = alignment.shape_predictor

    def counting(n):
        predictor = real(n)
        return lambda arr, rect: calls.append(rect) or predictor(arr, rect)

    close_up = astronaut.crop((150, 50, 290, 190)).resize((400, 400))
    hog = FaceDetector(detector="hog").detect(close_up)[0]
    monkeypatch.setattr(alignment, "shape_predictor", counting)
    face = FaceDetector(detector="blazeface").detect(close_up)
    assert len(face) == 1 and len(calls) == 1
    assert np.array_equal(face[0].landmarks, hog.landmarks)
    assert np.array_equal(np.asarray(face[0].chip), np.asarray(hog.chip))
    calls.clear()
    [face] = FaceDetector(detector="blazeface").detect(astronaut)  # her face fitted once (a weak hit elsewhere is checked)
    assert [r for r in calls if iou((r.left(), r.top(), r.right() + 1, r.bottom() + 1), face.box) > 0.5] == calls[:1]
    calls.clear()
    monkeypatch.setattr(blazeface_boxes, "hog_box_near", lambda arr, rect: None)
    refitted = FaceDetector(detector="blazeface").detect(close_up)
    assert len(refitted) == 1 and len(calls) == 1 + detect_module.BLAZE_REFITS
    assert np.abs(refitted[0].landmarks - hog.landmarks).max() <= 2


def test_second_looks_check_every_hit(astronaut, monkeypatch):
    """A confident hit (0.99 >= BLAZE_VERIFY_BELOW) of the whole image is kept unchecked; the same hit from the corner
    tiles, searched because the whole image gave none, or from the padded retry, is checked on its chip
    (see BLAZE_VERIFY_BELOW): those looks search where no face was seen, where most false faces came from."""
    arr = np.asarray(astronaut)
    [(box, _, keypoints)] = blazeface.detect(arr)
    hit = [(box, 0.99, keypoints)]
    checked = []
    real = hog.chip_confirms
    monkeypatch.setattr(hog, "chip_confirms", lambda a, r, t=None: checked.append(r) or real(a, r, t))
    detector = FaceDetector(detector="blazeface")
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: hit)
    assert len(detector._blazeface(arr)) == 1 and checked == []
    assert len(detector._blazeface(arr, retry=True)) == 1 and len(checked) == 1
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: [])
    monkeypatch.setattr(blazeface, "detect_tiles", lambda a, s=0.5, whole=None: hit)
    assert len(detector._blazeface(arr)) == 1 and len(checked) == 2
    monkeypatch.setattr(hog, "chip_confirms", lambda a, r, t=None: None)  # a check that fails drops it
    assert detector._blazeface(arr) == []


def test_a_face_boxed_twice_is_one_face(astronaut, monkeypatch):
    """BlazeFace may box a close-up twice, the whole face and one half of it (1,420 of the utkface/ chips): both align
    to the same face, reported once with HOG's box, as detector="hog" reports it. Two faces side by side stay two."""
    close_up = np.asarray(astronaut.crop((150, 50, 290, 190)).resize((400, 400)))
    [(box, score, keypoints)] = blazeface.detect(close_up)
    left, top, right, bottom = box
    half = ((left + right) / 2, top, right + 0.2 * (right - left), bottom)  # the right half, out of the image; unchecked
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: [(box, 0.95, keypoints), (half, 0.92, keypoints)])
    faces = FaceDetector(detector="blazeface").detect(close_up)
    hog = FaceDetector(detector="hog").detect(close_up)
    assert len(faces) == 1 and len(hog) == 1 and faces[0].box == hog[0].box
    monkeypatch.undo()
    pair = np.concatenate([close_up, close_up], axis=1)  # two faces, 400 px apart
    assert len(FaceDetector(detector="blazeface").detect(pair)) == 2


def test_small_images_are_detected_by_hog_first(astronaut, monkeypatch):
    """On an image of at most HOG_FIRST_PIXELS, HOG looks first (cheaper there than BlazeFace's fixed 256x256 pass):
    a 200x200 close-up comes out exactly as detector="hog" gives it, without running BlazeFace. Where HOG finds no
    face there, BlazeFace looks; a larger image goes to BlazeFace directly."""
    from faceage.data import detect as detect_module

    chip = astronaut.crop((150, 50, 290, 190)).resize((200, 200))
    hog = FaceDetector(detector="hog").detect(chip)
    calls = []
    real = blazeface.detect
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: calls.append(a.shape) or real(a, s))
    [face] = FaceDetector(detector="blazeface").detect(chip)
    assert calls == [] and face.box == hog[0].box and np.array_equal(np.asarray(face.chip), np.asarray(hog[0].chip))
    assert 200 * 200 <= detect_module.HOG_FIRST_PIXELS < 400 * 400
    assert len(FaceDetector(detector="blazeface").detect(chip.resize((400, 400)))) == 1 and calls == [(400, 400, 3)]
    monkeypatch.setattr(detect_module.FaceDetector, "_hog", lambda self, arr, up, t=None: [])
    assert len(FaceDetector(detector="blazeface").detect(chip)) == 1 and len(calls) == 2


def test_weak_hits_come_apart_from_the_strong_ones(astronaut):
    """detect(weak_score=...) returns the detections from min_score unchanged, then the weaker ones (scores from
    weak_score) that overlap none of them."""
    arr = np.asarray(astronaut)
    strong = blazeface.detect(arr, 0.4)
    both = blazeface.detect(arr, 0.4, 0.1)
    assert len(both) > len(strong) >= 1
    for (box, score, kp), (box2, score2, kp2) in zip(strong, both):
        assert box == box2 and score == score2 and np.array_equal(kp, kp2)
    for box, score, _ in both[len(strong):]:
        assert 0.1 <= score < 0.4
        assert all(iou(box, b) <= blazeface.NMS_IOU for b, _, _ in strong)


def test_weak_hits_are_kept_only_when_their_chip_is_a_face(astronaut, monkeypatch):
    """A BlazeFace hit under BLAZE_MIN_SCORE is kept when HOG scores WEAK_CHIP_THRESHOLD on its chip: her face is,
    a box on the background is not. It is asked for only where a check can run, and not in the padded retry."""
    from faceage.data import detect as detect_module

    arr = np.asarray(astronaut)
    [(box, _, keypoints)] = blazeface.detect(arr)
    background = (380.0, 380.0, 480.0, 480.0)
    asked, thresholds = [], []
    real = hog.chip_confirms
    monkeypatch.setattr(hog, "chip_confirms", lambda a, r, t=None: thresholds.append(t) or real(a, r, t))
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: asked.append(weak) or [
        (box, 0.95, keypoints), (background, 0.3, keypoints)])
    assert [h.score for h in FaceDetector(detector="blazeface")._blazeface(arr)] == [0.95]
    assert thresholds == [detect_module.WEAK_CHIP_THRESHOLD] and asked == [detect_module.BLAZE_WEAK_SCORE]
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: [(box, 0.3, keypoints)])
    monkeypatch.setattr(blazeface, "detect_tiles", lambda a, s=0.5, whole=None: whole)  # no strong hit: tiles look too
    [hit] = FaceDetector(detector="blazeface")._blazeface(arr)
    assert hit.score == 0.3 and hit.shape.num_parts == 68
    monkeypatch.setattr(blazeface, "detect", lambda a, s=0.5, weak=None: asked.append(weak) or [])
    monkeypatch.setattr(blazeface, "detect_tiles", lambda a, s=0.5, whole=None: [])
    asked.clear()
    FaceDetector(detector="blazeface", verify_below=None)._blazeface(arr)
    FaceDetector(detector="blazeface")._blazeface(arr, retry=True)
    assert asked == [None, None]
