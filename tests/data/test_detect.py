"""Face detection and alignment on real photos: one face where there is one, none in noise, UTKFace-like chips."""

from __future__ import annotations

import dlib
import numpy as np
import pytest
from PIL import Image

from faceage.data import alignment, hog
from faceage.data import detect as detect_module
from faceage.data.detect import UTKFACE_PADDING, Face, FaceDetector, chip_details

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def faces(astronaut) -> list[Face]:
    return FaceDetector(detector="hog").detect(astronaut)


def inside(points: np.ndarray, box) -> bool:
    left, top, right, bottom = box
    x, y = points[:, 0], points[:, 1]
    return bool(((x >= left) & (x < right) & (y >= top) & (y < bottom)).all())


def test_astronaut_has_exactly_one_face_around_her_face(faces):
    # HOG alone also fires (score ~0.12) on the mission badge; the CNN check must reject it
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 160 <= left <= 190 and 250 <= right <= 280, faces[0].box
    assert 60 <= top <= 90 and 155 <= bottom <= 185, faces[0].box
    assert faces[0].score > 0.5


def test_chip_landmarks_and_types(faces):
    face = faces[0]
    assert face.chip.size == (200, 200) and face.chip.mode == "RGB"
    assert face.landmarks.shape == (5, 2)
    assert inside(face.landmarks, face.box)
    right_eye, left_eye, nose = face.landmarks[0:2].mean(0), face.landmarks[2:4].mean(0), face.landmarks[4]
    assert left_eye[0] < right_eye[0]  # image-left eye first in points 2-3
    assert nose[1] > max(left_eye[1], right_eye[1])  # nose below the eyes


def test_chip_size_is_honoured(astronaut):
    face = FaceDetector(detector="hog", chip_size=112).detect(astronaut)[0]
    assert face.chip.size == (112, 112)


def test_default_padding_is_the_utkface_calibration():
    assert FaceDetector(detector="hog").padding == UTKFACE_PADDING == pytest.approx(0.2)


def test_chip_matches_dlib_get_face_chip_with_68_points(astronaut):
    arr = np.asarray(astronaut)
    shape = alignment.shape_predictor(68)(arr, dlib.rectangle(175, 76, 265, 166))
    expected = dlib.get_face_chip(arr, shape, size=200, padding=UTKFACE_PADDING)
    got = dlib.extract_image_chip(arr, chip_details(shape, 200, UTKFACE_PADDING))
    assert np.array_equal(expected, got)


def crop_geometry(details) -> np.ndarray:
    r = details.rect
    return np.array([r.width(), (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])


def test_five_point_model_is_corrected_towards_the_68_point_framing(astronaut):
    arr, box = np.asarray(astronaut), dlib.rectangle(175, 76, 265, 166)
    s68, s5 = alignment.shape_predictor(68)(arr, box), alignment.shape_predictor(5)(arr, box)
    ref = crop_geometry(chip_details(s68, 200, UTKFACE_PADDING))
    corrected = crop_geometry(chip_details(s5, 200, UTKFACE_PADDING))
    raw = crop_geometry(dlib.get_face_chip_details(s5, 200, UTKFACE_PADDING))
    assert abs(corrected[0] / ref[0] - 1) < 0.06 and np.abs(corrected[1:] - ref[1:]).max() < 0.02 * ref[0]
    assert np.abs(corrected - ref).sum() < np.abs(raw - ref).sum()
    chip = FaceDetector(detector="hog", landmark_model=5).detect(astronaut)[0].chip
    assert chip.size == (200, 200)


@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face_gives_empty_list(kind):
    if kind == "grey":
        img = Image.new("RGB", (200, 200), (128, 128, 128))
    else:
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    assert FaceDetector(detector="hog").detect(img) == []


def test_align_whole_takes_the_image_as_the_box(faces):
    chip = faces[0].chip
    face = FaceDetector(detector="hog").align_whole(chip)
    assert face.box == (0, 0, 200, 200)
    assert face.chip.size == (200, 200)
    assert inside(face.landmarks, face.box)
    # re-aligning an aligned chip is (nearly) the identity
    assert np.abs(np.asarray(face.chip, np.float64) - np.asarray(chip, np.float64)).mean() < 15


def test_large_image_detected_on_a_downscaled_copy_and_mapped_back(astronaut):
    big = astronaut.resize((2048, 2048), Image.Resampling.BILINEAR)
    faces = FaceDetector(detector="hog").detect(big)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 640 <= left <= 760 and 1000 <= right <= 1120 and 240 <= top <= 360 and 620 <= bottom <= 740
    assert inside(faces[0].landmarks, faces[0].box)


def test_faces_sorted_by_area_and_min_face(astronaut):
    small = astronaut.resize((256, 256))
    canvas = Image.new("RGB", (768, 512), (128, 128, 128))
    canvas.paste(small, (0, 128))
    canvas.paste(astronaut.crop((0, 0, 512, 512)), (256, 0))
    faces = FaceDetector(detector="hog", thorough=True).detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert FaceDetector(detector="hog", min_face=60, thorough=True).detect(canvas)[0].area == faces[0].area
    assert len(FaceDetector(detector="hog", min_face=60, thorough=True).detect(canvas)) == 1
    # the known cost of the default's coarse-to-fine pass: a 45-px face beside an 88-px one is left to --thorough
    default = FaceDetector(detector="hog").detect(canvas)
    assert len(default) == 1 and np.abs(np.array(default[0].box) - np.array(faces[0].box)).max() <= 15


def test_bad_arguments():
    with pytest.raises(ValueError, match="detector"):
        FaceDetector(detector="yolo")
    with pytest.raises(ValueError, match="landmark_model"):
        FaceDetector(detector="hog", landmark_model=17)


def test_tightly_cropped_face_is_found_by_the_padded_retry(astronaut):
    """A crop inside the detected box is too tight for HOG upsampled by 2; the retry on an edge-padded copy finds
    it, with boxes and landmarks in the crop's own coordinates."""
    faces = FaceDetector(detector="hog", thorough=True).detect(astronaut)
    left, top, right, bottom = faces[0].box
    inset = (right - left) // 10
    crop = astronaut.crop((left + inset, top + inset, right - inset, bottom - inset))
    assert FaceDetector(detector="hog", pad_retry=0, thorough=True).detect(crop) == []
    found = FaceDetector(detector="hog", thorough=True).detect(crop)
    assert len(found) == 1 and found[0].box == (0, 0, crop.width, crop.height)  # clipped to the crop
    expected = faces[0].landmarks - np.array([left + inset, top + inset])
    assert np.abs(found[0].landmarks - expected).max() <= 5  # the same eyes and nose, within a few pixels
    assert found[0].chip.size == (200, 200)
    with pytest.raises(ValueError, match="pad_retry"):
        FaceDetector(detector="hog", pad_retry=2)


def test_padded_retry_on_a_big_tight_crop_looks_at_a_small_copy(astronaut, monkeypatch):
    """A tight crop enlarged to 600 px fills the frame: the retry finds it on a copy whose short side is
    PAD_RETRY_SIDE, in one pass (no fine pass), and maps box and landmarks back to the crop's pixels."""
    faces = FaceDetector(detector="hog").detect(astronaut)
    left, top, right, bottom = faces[0].box
    inset = (right - left) // 8  # at // 10 the crop's own weak hit is confirmed: no retry
    crop = astronaut.crop((left + inset, top + inset, right - inset, bottom - inset)).resize((600, 600))
    assert FaceDetector(detector="hog", pad_retry=0).detect(crop) == []
    detector = FaceDetector(detector="hog")
    sizes = []
    real = FaceDetector._hog

    def spy(self, arr, upsample, threshold=None):
        sizes.append(arr.shape[:2])
        return real(self, arr, upsample, threshold)

    monkeypatch.setattr(FaceDetector, "_hog", spy)
    found = detector.detect(crop)
    # the crop itself (1x and 1.4x), then the padded copy (900 px) seen at 400 px only
    assert sizes[-1] == (detect_module.PAD_RETRY_SIDE, detect_module.PAD_RETRY_SIDE) and len(sizes) == 3, sizes
    assert len(found) == 1 and found[0].box == (0, 0, 600, 600)
    scale = 600 / (right - left - 2 * inset)
    expected = (faces[0].landmarks - np.array([left + inset, top + inset])) * scale
    assert np.abs(found[0].landmarks - expected).max() <= 5 * scale


# ---- coarse-to-fine HOG: upsampled only where faces may be small ------------------------------------------------


def pasted(astronaut, face_side: float, canvas=(640, 480), seed=0) -> tuple[Image.Image, tuple[int, int]]:
    """The astronaut's head resized so that dlib's box is ~``face_side`` px, pasted on noise; returns the canvas and
    where the face's centre lands. (Boxes found: 73 px at side 56 without upsampling, which finds nothing at 50.)"""
    crop = astronaut.crop((110, 10, 330, 230))  # the face box (175..265, 76..166) with margin
    scale = face_side / 90
    crop = crop.resize((round(220 * scale), round(220 * scale)), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (canvas[1], canvas[0], 3), dtype=np.uint8))
    x, y = canvas[0] // 2, canvas[1] // 3
    img.paste(crop, (x, y))
    return img, (x + crop.width // 2, y + crop.height // 2)


def contains(face: Face, point) -> bool:
    left, top, right, bottom = face.box
    return left <= point[0] <= right and top <= point[1] <= bottom


def count_fine_passes(monkeypatch) -> list:
    calls = []
    real = FaceDetector._hog_scaled

    def spy(self, arr, scale):
        calls.append(scale)
        return real(self, arr, scale)

    monkeypatch.setattr(FaceDetector, "_hog_scaled", spy)
    return calls


def test_small_face_on_a_big_canvas_is_found_by_the_fine_pass(astronaut, monkeypatch):
    img, centre = pasted(astronaut, 48)
    assert FaceDetector(detector="hog", upsample=0).detect(img) == []  # below the first pass's floor
    calls = count_fine_passes(monkeypatch)
    faces = FaceDetector(detector="hog").detect(img)
    assert calls == [detect_module.FINE_SCALE]
    assert len(faces) == 1 and contains(faces[0], centre)
    assert 40 <= faces[0].box[2] - faces[0].box[0] <= 65, faces[0].box


def test_large_faces_skip_the_fine_pass(astronaut, monkeypatch):
    img, centre = pasted(astronaut, 110)
    calls = count_fine_passes(monkeypatch)
    faces = FaceDetector(detector="hog").detect(img)
    assert calls == []  # the first pass found a face well above its floor: no upsampling
    assert len(faces) == 1 and contains(faces[0], centre)
    thorough = FaceDetector(detector="hog", thorough=True).detect(img)  # the same face as the thorough mode, a few pixels apart
    assert len(thorough) == 1 and np.abs(np.array(thorough[0].box) - np.array(faces[0].box)).max() <= 15


def test_thorough_finds_faces_below_the_fine_pass(astronaut):
    img, centre = pasted(astronaut, 34)
    assert FaceDetector(detector="hog").detect(img) == []
    faces = FaceDetector(detector="hog", thorough=True).detect(img)
    assert len(faces) == 1 and contains(faces[0], centre)


def test_face_free_images_yield_nothing_in_either_mode():
    coffee = Image.fromarray(skimage_data.coffee())
    w = 640
    ramp = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    gradient = Image.fromarray(np.broadcast_to(ramp, (480, w, 3)).copy())
    rocket = Image.fromarray(skimage_data.rocket())
    for img in (coffee, gradient, rocket):
        assert FaceDetector(detector="hog").detect(img) == []
        assert FaceDetector(detector="hog", thorough=True).detect(img) == []


def test_astronaut_once_in_thorough_mode_too(astronaut, faces):
    thorough = FaceDetector(detector="hog", thorough=True).detect(astronaut)
    assert len(thorough) == 1
    assert np.abs(np.array(thorough[0].box) - np.array(faces[0].box)).max() <= 12


# ---- weak HOG hits: confirmed by HOG on their aligned chip by default, by the CNN when thorough -------------------


def no_cnn(monkeypatch) -> None:
    def fail(arr, rect):
        raise AssertionError("the default detection must not run the CNN")

    monkeypatch.setattr(hog, "cnn_confirms", fail)


def count_calls(monkeypatch, name: str) -> list:
    calls = []
    real = getattr(hog, name)

    def spy(arr, rect, *args):
        calls.append(rect)
        return real(arr, rect, *args)

    monkeypatch.setattr(hog, name, spy)
    return calls


def weak_tilted_face(astronaut) -> tuple[Image.Image, tuple[int, int]]:
    """The astronaut's head tilted by 20 degrees, dlib box ~73 px, on noise: HOG scores it ~0.07, its chip ~1.36."""
    return pasted(astronaut.rotate(20, resample=Image.Resampling.BILINEAR, center=(220, 121)), 60)


def test_weak_face_on_noise_is_kept_by_the_chip_check(astronaut, monkeypatch):
    img, centre = weak_tilted_face(astronaut)
    arr = np.asarray(img)
    rects, scores, _ = hog.hog_detector().run(arr, 0, 0.0)
    assert len(rects) == 1 and 0 <= scores[0] < 0.2 < detect_module.VERIFY_BELOW  # a weak hit
    no_cnn(monkeypatch)
    calls = count_calls(monkeypatch, "chip_confirms")
    faces = FaceDetector(detector="hog", upsample=0).detect(img)
    assert len(calls) == 1 and len(faces) == 1 and contains(faces[0], centre)
    assert faces[0].score == pytest.approx(scores[0])
    # upright and centred on its chip, the face scores far above the threshold: still confirmed at 1.0 (-0.35)
    monkeypatch.setattr(hog, "VERIFY_CHIP_THRESHOLD", 1.0)
    assert hog.chip_confirms(arr, rects[0]) is not None


def test_badge_is_rejected_by_the_chip_check(astronaut, monkeypatch):
    """Doubled, the astronaut gives the first HOG pass her face (1.22) and the mission badge (0.05): the badge's
    "aligned" chip is no face (HOG scores it -0.73), so exactly one face comes back, without the CNN."""
    big = astronaut.resize((1024, 1024), Image.Resampling.BILINEAR)
    unverified = FaceDetector(detector="hog", verify_below=None).detect(big)
    assert len(unverified) == 2 and unverified[1].score < 0.1 and unverified[0].score > 1.0
    no_cnn(monkeypatch)
    calls = count_calls(monkeypatch, "chip_confirms")
    faces = FaceDetector(detector="hog").detect(big)
    # checked: the badge and one weak hit under dlib's threshold (WEAK_THRESHOLD); both rejected
    assert len(calls) == 2 and len(faces) == 1 and faces[0].box == unverified[0].box
    left, top, right, bottom = unverified[1].box
    monkeypatch.setattr(hog, "VERIFY_CHIP_THRESHOLD", -0.6)  # rejected with a margin
    assert hog.chip_confirms(np.asarray(big), dlib.rectangle(left, top, right - 1, bottom - 1)) is None


def test_thorough_confirms_weak_hits_with_the_cnn(astronaut, monkeypatch):
    def fail(arr, rect):
        raise AssertionError("thorough confirms with the CNN")

    monkeypatch.setattr(hog, "chip_confirms", fail)
    calls = count_calls(monkeypatch, "cnn_confirms")
    faces = FaceDetector(detector="hog", thorough=True).detect(astronaut)  # the badge (0.12) goes to the CNN, which rejects it
    assert len(calls) == 1 and len(faces) == 1


def test_hits_under_dlibs_threshold_need_a_face_on_their_chip(astronaut, monkeypatch):
    """Weak hits (WEAK_THRESHOLD .. 0) are kept only when HOG scores their chip WEAK_CHIP_THRESHOLD or more: the
    tilted face's chip (~1.36) passes, the badge's (-0.73) does not, and the check asks for the stricter score."""
    img, centre = weak_tilted_face(astronaut)
    face_rect = hog.hog_detector().run(np.asarray(img), 0, 0.0)[0][0]
    big = astronaut.resize((1024, 1024), Image.Resampling.BILINEAR)
    badge = FaceDetector(detector="hog", verify_below=None).detect(big)[1].box
    badge_rect = dlib.rectangle(badge[0], badge[1], badge[2] - 1, badge[3] - 1)
    seen = []
    real = hog.chip_confirms
    monkeypatch.setattr(hog, "chip_confirms", lambda arr, rect, t=None: seen.append(t) or real(arr, rect, t))
    detector = FaceDetector(detector="hog")
    assert detector._weak_threshold() == detect_module.WEAK_THRESHOLD < detector.threshold == 0
    [hit] = detector._verified(np.asarray(img), [(face_rect, -0.1)])
    assert (hit.rect, hit.score) == (face_rect, -0.1) and hit.shape.num_parts == 68  # its landmarks go on to _align
    assert detector._verified(np.asarray(big), [(badge_rect, -0.1)]) == []
    assert seen == [detect_module.WEAK_CHIP_THRESHOLD] * 2
    assert FaceDetector(detector="hog", verify_below=None)._weak_threshold() == 0  # no check: nothing under the threshold


def test_each_thread_gets_its_own_copy_of_one_hog_detector(astronaut):
    """dlib's HOG detector is loaded once and copied for each new thread (~2 ms); the copies detect alike."""
    import threading

    arr = np.asarray(astronaut)
    here = hog.hog_detector()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(hog.hog_detector()))
    worker.start()
    worker.join()
    assert seen[0] is not here and hog.hog_prototype() not in (here, seen[0])
    assert [list(r) for r in seen[0].run(arr, 0, -0.5)[:2]] == [list(r) for r in here.run(arr, 0, -0.5)[:2]]


def test_shipped_hog_file_is_dlibs_frontal_detector(astronaut, tmp_path, monkeypatch):
    """weights/dlib/frontal_face_detector.svm scores like the detector dlib builds (which takes ~0.5 s); a missing or
    unreadable file falls back to building it."""
    shipped = dlib.fhog_object_detector(str(hog.HOG_FILE))
    arr = np.asarray(astronaut)
    big = np.asarray(astronaut.resize((1024, 1024)))
    built = dlib.get_frontal_face_detector()
    for image in (arr, big):
        for upsample in (0, 1):
            assert [list(r) for r in shipped.run(image, upsample, -0.5)] == [list(r) for r in built.run(image, upsample, -0.5)]
    (tmp_path / "bad.svm").write_bytes(b"not a detector")
    for path in (tmp_path / "bad.svm", tmp_path / "missing.svm"):
        monkeypatch.setattr(hog, "HOG_FILE", path)
        hog.hog_prototype.cache_clear()
        try:
            fallback = hog.hog_prototype()
            assert [list(r) for r in fallback.run(arr, 0, -0.5)] == [list(r) for r in built.run(arr, 0, -0.5)]
        finally:
            hog.hog_prototype.cache_clear()


def test_every_public_name_is_importable_from_detect():
    """The detectors and the alignment live in their own modules; faceage.data.detect re-exports their public names,
    the very objects (a constant read through detect is the one the code uses)."""
    from faceage.data import blazeface_boxes

    for name in detect_module.__all__:
        value = getattr(detect_module, name)
        for module in (alignment, hog, blazeface_boxes):
            if hasattr(module, name):
                assert getattr(module, name) is value, name
    assert {"FaceDetector", "Face", "UTKFACE_PADDING", "chip_details", "PAD_RETRY", "BLAZE_WEAK_SCORE"} <= set(detect_module.__all__)

