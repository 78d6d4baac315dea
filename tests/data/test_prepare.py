"""``prepare_images``: one chip per one-face photo, every other photo skipped and reported by kind, cached reruns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from faceage.data.prepare import PrepareReport, chip_name, prepare_images
from faceage.data.detect import FaceDetector

skimage_data = pytest.importorskip("skimage.data")

UTK_NAME = "35_1_0_20170116190424567.jpg.chip.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """astronaut under a UTKFace name (in a subfolder), flat grey, two astronauts side by side, a corrupt JPEG."""
    root = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(skimage_data.astronaut())
    (root / "part1").mkdir()
    astronaut.save(root / "part1" / UTK_NAME, quality=95)
    Image.new("RGB", (200, 200), (128, 128, 128)).save(root / "grey.jpg")
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(astronaut, (512, 0))
    pair.save(root / "two.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return root


class CountingDetect:
    """Spy on FaceDetector.detect (in-process runs only)."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[int, int]] = []
        original = FaceDetector.detect

        def detect(detector, image):
            self.calls.append(image.size)
            return original(detector, image)

        monkeypatch.setattr(FaceDetector, "detect", detect)


def run(photos: Path, out: Path, **kw) -> PrepareReport:
    return prepare_images(photos, out, workers=kw.pop("workers", 1), **kw)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_one_chip_and_every_failure_reported_by_kind(photos, tmp_path):
    out = tmp_path / "chips"
    report = run(photos, out)
    assert report.n_ok == 1 and report.n_cached == 0 and report.n_skipped == 3
    assert report.examples["no face"] == ["grey.jpg"]
    assert report.examples["several faces (2)"] == ["two.png"]
    corrupt = [k for k in report.problems if k not in ("no face", "several faces (2)")]
    assert len(corrupt) == 1 and "corrupt" in corrupt[0] and report.examples[corrupt[0]] == ["corrupt.jpg"]
    chip = out / "part1" / UTK_NAME  # mirrored path, same name: UTKFace labels still parse
    with Image.open(chip) as img:
        assert img.size == (200, 200) and img.format == "JPEG"
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert written == sorted(["manifest.jsonl", "prepare_settings.json", UTK_NAME])
    (row,) = manifest(out)
    assert row["source"] == str(photos / "part1" / UTK_NAME) and row["chip"] == f"part1/{UTK_NAME}"
    left, top, right, bottom = row["box"]
    assert 160 <= left <= 190 and 60 <= top <= 90 and 250 <= right <= 280 and 155 <= bottom <= 185
    assert row["score"] > 0.5
    text = report.summary()
    for name in ("grey.jpg", "two.png", "corrupt.jpg", "no face", "several faces (2)"):
        assert name in text


def test_second_run_is_cached_and_does_not_detect_again(photos, tmp_path, monkeypatch):
    out = tmp_path / "chips"
    spy = CountingDetect(monkeypatch)
    first = run(photos, out)
    assert first.n_ok == 1 and len(spy.calls) == 3  # the corrupt file never reaches the detector
    first_manifest = manifest(out)
    spy.calls.clear()
    second = run(photos, out)
    assert second.n_cached == 1 and second.n_ok == 0 and second.n_skipped == 3
    assert len(spy.calls) == 2  # only the two failures are tried again, the astronaut is not
    assert all(size != (512, 512) for size in spy.calls)
    assert manifest(out) == first_manifest  # box and score carried over from the first run


def test_newer_source_or_changed_settings_are_detected_again(photos, tmp_path, monkeypatch):
    out = tmp_path / "chips"
    run(photos, out)
    chip = out / "part1" / UTK_NAME
    old = chip.stat().st_mtime
    os.utime(chip, (old - 3600, old - 3600))  # the source is now newer than its chip
    report = run(photos, out)
    assert report.n_ok == 1 and report.n_cached == 0
    report = run(photos, out, chip_size=128)
    assert report.cache_reset and report.n_ok == 1
    with Image.open(chip) as img:
        assert img.size == (128, 128)


def test_largest_keeps_the_biggest_of_several(photos, tmp_path):
    out = tmp_path / "chips"
    report = run(photos, out, largest=True)
    assert report.n_ok == 2 and "several faces (2)" not in report.problems
    with Image.open(out / "two.png") as img:  # PNG sources keep their name and stay lossless
        assert img.format == "PNG" and img.size == (200, 200)
    row = [r for r in manifest(out) if r["chip"] == "two.png"][0]
    assert row["n_faces"] == 2


def test_worker_processes_give_the_same_result(photos, tmp_path):
    report = run(photos, tmp_path / "chips", workers=2)
    assert report.n_ok == 1 and report.n_skipped == 3
    assert report.examples["several faces (2)"] == ["two.png"]


def test_stale_chip_removed_when_its_source_now_fails(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(src / "a.jpg")
    out = tmp_path / "chips"
    assert prepare_images([src / "a.jpg"], out, workers=1).n_ok == 1
    Image.new("RGB", (200, 200), (90, 90, 90)).save(src / "a.jpg")
    later = (out / "a.jpg").stat().st_mtime + 10
    os.utime(src / "a.jpg", (later, later))
    report = prepare_images([src / "a.jpg"], out, workers=1)
    assert report.problems == {"no face": 1}
    assert not (out / "a.jpg").exists() and manifest(out) == []


def test_output_folder_inside_the_input_is_not_read_back(photos, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / UTK_NAME).write_bytes((photos / "part1" / UTK_NAME).read_bytes())
    prepare_images(src, src / "chips", workers=1)
    report = prepare_images(src, src / "chips", workers=1)
    assert report.n_total == 1 and report.n_cached == 1
    listed = sorted(str(f) for f in src.rglob("*.jpg"))  # as `faceage prepare` expands the folder itself
    assert len(listed) == 2 and prepare_images(listed, src / "chips", workers=1).n_total == 1


def test_records_and_missing_files(tmp_path):
    class Record:
        def __init__(self, path) -> None:
            self.path = str(path)

    report = prepare_images([Record(tmp_path / "missing.jpg")], tmp_path / "chips", workers=1)
    assert report.problems == {"file not found": 1} and report.examples["file not found"] == ["missing.jpg"]


def test_chip_names_mirror_the_root():
    assert chip_name("/data/raw/a/b.jpg", "/data/raw") == "a/b.jpg"
    assert chip_name("/data/raw/a/b.webp", "/data/raw") == "a/b.webp.jpg"
    assert chip_name("/elsewhere/b.png", "/data/raw") == "b.png"


def test_report_summary_counts():
    report = PrepareReport(out_dir="x", n_ok=2, n_cached=1)
    for name in ("a.jpg", "b.jpg"):
        report.skip("no face", name)
    assert report.n_total == 5 and report.n_skipped == 2
    assert "2 x no face: e.g. a.jpg, b.jpg" in report.summary()
    assert report.to_dict()["problems"] == {"no face": 2}

