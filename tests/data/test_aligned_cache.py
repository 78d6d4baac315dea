"""Raw photos in, aligned chips out: ``auto`` tells photos from chips, FG-NET's layout (``images/*.JPG`` with
``points/*.pts``) is aligned once, cached by content, reused, and every dropped photo is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.data import yunet
from faceage.data.aligned_cache import (
    AlignSettings,
    align_records,
    find_points,
    is_chip,
    needs_alignment,
    points_box,
    read_points,
)
from faceage.data.detect import FaceDetector
from faceage.data.readers import read_dataset
from faceage.data.records import FaceRecord

skimage_data = pytest.importorskip("skimage.data")


# where dlib's 68 landmarks of the astronaut's face lie in FACE_CROP (fractions of its side: min x, min y, max x, max y)
FACE_CROP = (130, 10, 330, 210)
LANDMARK_SPAN = (0.245, 0.385, 0.71, 0.84)


def face_points(x: int, y: int, side: int) -> np.ndarray:
    """68 points on the ellipse filling the landmarks' span of the face pasted at ``(x, y)`` with ``side`` pixels
    (only their extent matters: it gives the face box)."""
    x0, y0, x1, y1 = LANDMARK_SPAN
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([x + side * ((x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t)),
                     y + side * ((y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t))], axis=1)


def write_pts(path: Path, points: np.ndarray) -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n")


@pytest.fixture(scope="module")
def fgnet_like(tmp_path_factory) -> Path:
    """An FG-NET-like folder: scans (the astronaut's face pasted at three places and scales on 420x320 pages, one
    greyscale, one named like ``078A11a.JPG``) with 68-point ``.pts`` files in lower case, and a page with no face."""
    root = tmp_path_factory.mktemp("FGNET")
    (root / "images").mkdir()
    (root / "points").mkdir()
    face = Image.fromarray(skimage_data.astronaut()).crop(FACE_CROP)
    rng = np.random.default_rng(0)
    for name, (x, y, side), grey in [("001A02", (20, 30, 200), False), ("001A10", (200, 60, 180), True),
                                     ("078A11a", (110, 20, 220), False)]:
        page = Image.new("RGB", (420, 320), tuple(int(v) for v in rng.integers(150, 230, 3)))
        page.paste(face.resize((side, side)), (x, y))
        if grey:
            page = page.convert("L")
        page.save(root / "images" / f"{name}.JPG", quality=92)
        write_pts(root / "points" / f"{name.lower()}.pts", face_points(x, y, side))
    Image.fromarray(rng.integers(90, 110, (300, 400, 3), dtype=np.uint8)).save(root / "images" / "002A05.JPG")
    return root


class SpyDetect:
    """Counts FaceDetector.detect calls (in-process runs); ``faces=False`` makes it find nothing."""

    def __init__(self, monkeypatch, faces: bool = True) -> None:
        self.calls = 0
        original = FaceDetector.detect

        def detect(detector, image):
            self.calls += 1
            return original(detector, image) if faces else []

        monkeypatch.setattr(FaceDetector, "detect", detect)


def test_auto_tells_photos_from_chips(tmp_path):
    Image.new("RGB", (200, 200)).save(tmp_path / "square.jpg")
    Image.new("RGB", (420, 320)).save(tmp_path / "page.jpg")
    Image.new("RGB", (640, 480)).save(tmp_path / "35_1_0_2017.jpg.chip.jpg")  # UTKFace's name: a chip at any size
    Image.new("RGB", (600, 600)).save(tmp_path / "big_square.jpg")
    assert is_chip(str(tmp_path / "square.jpg")) and is_chip(str(tmp_path / "35_1_0_2017.jpg.chip.jpg"))
    assert not is_chip(str(tmp_path / "page.jpg")) and not is_chip(str(tmp_path / "big_square.jpg"))
    chips = [FaceRecord(str(tmp_path / "square.jpg"), 30), FaceRecord(str(tmp_path / "35_1_0_2017.jpg.chip.jpg"), 35)]
    assert needs_alignment(chips)[0] is False
    assert needs_alignment([*chips, FaceRecord(str(tmp_path / "page.jpg"), 3)])[0] is True
    assert needs_alignment(chips, "always")[0] is True
    assert needs_alignment([FaceRecord(str(tmp_path / "page.jpg"), 3)], "never")[0] is False
    with pytest.raises(ValueError, match="data.align"):
        needs_alignment(chips, "sometimes")


def test_points_files_found_without_case_and_read(fgnet_like, tmp_path):
    found = find_points(fgnet_like / "images" / "078A11a.JPG")
    assert found is not None and Path(found).name == "078a11a.pts"
    assert find_points(fgnet_like / "images" / "002A05.JPG") is None
    points = read_points(found)
    assert points.shape == (68, 2)
    left, _, right, _ = points_box(points, 420, 320)
    assert right - left == pytest.approx(1.016 * np.ptp(points, axis=0).max(), abs=2)  # square, dlib's box size
    (tmp_path / "bad.pts").write_text("version: 1\n{\n12 oops\n}\n")
    with pytest.raises(ValueError, match="bad.pts"):
        read_points(tmp_path / "bad.pts")


def test_fgnet_scans_aligned_once_cached_and_dropped_by_name(fgnet_like, tmp_path, monkeypatch):
    records, _ = read_dataset("fgnet", fgnet_like / "images")
    assert len(records) == 4
    cache = tmp_path / "cache"
    spy = SpyDetect(monkeypatch)
    aligned, report = align_records(records, source="FGNET/images", cache_dir=cache, workers=1, progress=False)
    assert spy.calls == 4 and report.aligned
    assert (report.n_detected, report.n_from_points, report.n_cached) == (3, 0, 0)
    assert report.dropped == {"002A05.JPG": "no face found"}
    assert "002A05.JPG" in report.summary() and "1 photos dropped" in report.summary()
    by_name = {Path(r.path).name: r for r in aligned}
    assert len(by_name) == 3 and all(Path(r.path).parent == cache / AlignSettings().key() for r in aligned)
    assert sorted((r.subject, r.age) for r in aligned) == [("001", 2.0), ("001", 10.0), ("078", 11.0)]
    chips = [np.asarray(Image.open(r.path), dtype=float) for r in aligned]
    assert all(c.shape == (200, 200, 3) for c in chips)
    # the same face at three scales and places, one greyscale: aligned alike (same framing, the eyes where UTKFace has them)
    assert np.abs(chips[0].mean(2) - chips[2].mean(2)).mean() < 20

    spy.calls = 0
    again, report = align_records(records, source="FGNET/images", cache_dir=cache, workers=1, progress=False)
    assert spy.calls == 0 and report.n_cached == 3 and report.dropped == {"002A05.JPG": "no face found"}
    assert [r.path for r in again] == [r.path for r in aligned]

    # with no face found by the detector, the landmark files give the box; the photo without one is dropped
    SpyDetect(monkeypatch, faces=False)
    fallback, report = align_records(records, source="FGNET/images", cache_dir=tmp_path / "cache2", workers=1, progress=False)
    assert (report.n_detected, report.n_from_points) == (0, 3) and "002A05.JPG" in report.dropped
    for detected, from_points in zip(aligned, fallback):
        a, b = (np.asarray(Image.open(r.path).convert("RGB")) for r in (detected, from_points))
        # the landmark box's chip (dlib's 68 points) frames the face as the detector's (YuNet's five): the same five
        # points within 12% of scale and 12 px of 200 of each other
        pa, pb = (yunet.detect(c, 0.3)[0][2] for c in (a, b))
        scale, _, _ = yunet.similarity(pa, pb)
        assert abs(scale - 1) < 0.12 and np.linalg.norm(pa.mean(0) - pb.mean(0)) < 12


def test_changed_photo_gets_a_new_chip_and_copies_are_reported(tmp_path, monkeypatch):
    face = Image.fromarray(skimage_data.astronaut()).crop((100, 0, 360, 260))
    page = Image.new("RGB", (400, 300), (200, 200, 200))
    page.paste(face, (70, 20))
    page.save(tmp_path / "001A02.JPG")
    page.save(tmp_path / "001A03.JPG")  # the same bytes under another name
    records = [FaceRecord(str(tmp_path / "001A02.JPG"), 2, subject="001"), FaceRecord(str(tmp_path / "001A03.JPG"), 3, subject="001")]
    first, report = align_records(records, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(first) == 1 and report.dropped == {"001A03.JPG": "same image as 001A02.JPG"}
    page.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "001A02.JPG")
    spy = SpyDetect(monkeypatch)
    second, report = align_records(records[:1], cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert spy.calls == 1 and report.n_detected == 1 and second[0].path != first[0].path
