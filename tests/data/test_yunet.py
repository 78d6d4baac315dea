"""YuNet detection and its five-point alignment: turned and rolled faces found, chips framed as UTKFace's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceage.data import yunet
from faceage.data.detect import FaceDetector

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def test_similarity_recovers_a_known_transform_exactly():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 300, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -30.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = scale * points @ rot.T + shift
    got_scale, got_angle, got_shift = yunet.similarity(points, target)
    assert got_scale == pytest.approx(scale, rel=1e-9)
    assert got_angle == pytest.approx(angle, abs=1e-9)
    np.testing.assert_allclose(got_shift, shift, atol=1e-7)


def test_template_scales_about_the_centre_with_padding():
    np.testing.assert_allclose(yunet.template(200, 0.2), yunet.TEMPLATE)
    np.testing.assert_allclose(yunet.template(100, 0.2), yunet.TEMPLATE / 2)
    wide = yunet.template(200, 0.45)  # (1 + 0.4) / (1 + 0.9): the face shrinks to 1.4 / 1.9 of its size
    np.testing.assert_allclose(wide - 100, (yunet.TEMPLATE - 100) * 1.4 / 1.9)


def test_astronaut_found_once_with_her_five_points_inside_the_box(astronaut):
    faces = FaceDetector(detector="yunet").detect(astronaut)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 160 <= left <= 200 and 250 <= right <= 290, faces[0].box
    assert 60 <= top <= 110 and 155 <= bottom <= 190, faces[0].box
    assert faces[0].score >= yunet.MIN_SCORE
    x, y = faces[0].landmarks[:, 0], faces[0].landmarks[:, 1]
    assert ((x >= left) & (x < right) & (y >= top) & (y < bottom)).all()
    assert faces[0].chip.size == (200, 200)


def test_chip_frames_the_face_as_the_68_point_chip_does(astronaut):
    five = FaceDetector(detector="yunet").detect(astronaut)[0].chip
    dlib68 = FaceDetector(detector="hog").detect(astronaut)[0].chip
    # the face has the same size (within 10%) and angle (within 3 degrees) in both chips, and about the same place
    scale, angle, _ = yunet.similarity(yunet.detect(np.asarray(dlib68))[0][2], yunet.detect(np.asarray(five))[0][2])
    assert scale == pytest.approx(1.0, abs=0.1)
    assert abs(np.degrees(angle)) < 3
    centre = [p.mean(0) for p in (yunet.detect(np.asarray(c))[0][2] for c in (five, dlib68))]
    assert np.linalg.norm(centre[0] - centre[1]) < 10  # pixels of 200


@pytest.mark.parametrize("degrees", [35, -50, 90, 180])
def test_rolled_face_is_found_and_its_chip_is_upright(astronaut, degrees):
    rolled = astronaut.rotate(degrees, expand=True, fillcolor=(0, 0, 0))
    faces = FaceDetector(detector="yunet").detect(rolled)
    assert len(faces) >= 1
    chip_points = yunet.detect(np.asarray(faces[0].chip))[0][2]
    upright = yunet.detect(np.asarray(FaceDetector(detector="yunet").detect(astronaut)[0].chip))[0][2]
    assert abs(np.degrees(yunet.roll(chip_points) - yunet.roll(upright))) < 12  # YuNet's points lean toward level by a few degrees


def test_face_free_images_give_no_face():
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    grey = Image.new("RGB", (640, 480), (128, 128, 128))
    coffee = Image.fromarray(skimage_data.coffee())
    for image in (noise, grey, coffee):
        assert FaceDetector(detector="yunet").detect(image) == []


def test_big_photo_is_detected_on_a_copy_and_mapped_back(astronaut):
    big = astronaut.resize((2048, 2048))
    small_faces = FaceDetector(detector="yunet").detect(astronaut)
    big_faces = FaceDetector(detector="yunet", max_side=512).detect(big)
    assert len(big_faces) == 1
    np.testing.assert_allclose(np.array(big_faces[0].box), np.array(small_faces[0].box) * 4, atol=16)


def test_tight_crop_found_by_the_padded_retry(astronaut):
    box = FaceDetector(detector="yunet").detect(astronaut)[0].box
    tight = astronaut.crop((box[0] + 8, box[1] + 12, box[2] - 8, box[3] - 4))
    faces = FaceDetector(detector="yunet").detect(tight)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 0 <= left < right <= tight.width and 0 <= top < bottom <= tight.height
