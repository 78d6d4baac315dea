"""Videos: the IoU tracker, and `faceage predict clip.mp4 --every N` on a short clip of the astronaut photo moving
(per-frame rows, one track, the track's age = the median of its frames' ages), and a broken video = one error line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.cli.predict import main as predict_main
from faceage.data.video import VideoLoadError, is_video_file, read_frames
from faceage.inference.predictor import expand_inputs
from faceage.inference.video import IoUTracker, iou, summarise_track

av = pytest.importorskip("av", reason="PyAV (av) is not installed")


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_iou_and_tracker_follow_moving_boxes_and_start_new_tracks():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150) and iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    tracker = IoUTracker(max_missed=1)
    assert tracker.update([(0, 0, 50, 50), (100, 0, 150, 50)]) == [0, 1]
    assert tracker.update([(104, 2, 154, 52), (4, 2, 54, 52)]) == [1, 0]  # order of detections does not matter
    assert tracker.update([(8, 4, 58, 54)]) == [0]  # track 1 missed once: still alive
    assert tracker.update([(12, 6, 62, 56)]) == [0]  # missed twice: ended
    assert tracker.update([(108, 4, 158, 54)]) == [2]  # so this is a new track
    assert tracker.update([(300, 300, 350, 350)]) == [3]


def test_track_summary_is_the_median_and_majority():
    from faceage.inference.predictor import FaceResult

    faces = [FaceResult(0, (0, 0, 9, 9), a, a - 5, a + 5, g, p) for a, g, p in ((20, "male", 0.9), (30, "female", 0.6), (24, "male", 0.7))]
    t = summarise_track(7, list(zip((0, 3, 6), faces)))
    assert (t.track, t.frames, t.age, t.age_low, t.age_high) == (7, 3, 24, 19, 29)
    assert t.gender == "male" and t.gender_p == pytest.approx((0.9 + 0.4 + 0.7) / 3) and (t.first_frame, t.last_frame) == (0, 6)


def test_read_frames_every_and_broken_files(tmp_path):
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(7)]
    clip = write_clip(tmp_path / "grey.mp4", frames)
    got = list(read_frames(clip, every=3))
    assert [i for i, _, _ in got] == [0, 3, 6] and [round(t, 3) for _, t, _ in got] == [0.0, 0.3, 0.6]
    assert got[0][2].size == (64, 48) and abs(np.asarray(got[2][2]).mean() - 120) < 6
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(VideoLoadError, match="broken.mp4: not a readable video"):
        list(read_frames(tmp_path / "broken.mp4"))
    assert is_video_file("A.MKV") and not is_video_file("a.jpg")
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    assert expand_inputs([tmp_path]) == [str(tmp_path / "x.png")]  # images only, as before
    assert expand_inputs([tmp_path], videos=True) == sorted(str(tmp_path / n) for n in ("broken.mp4", "grey.mp4", "x.png"))


def test_predict_video_rows_tracks_and_a_broken_video(tiny_model_dir, tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    photo = skimage_data.astronaut()  # 512x512, one face
    frames = [np.ascontiguousarray(photo[20 + 4 * i : 340 + 4 * i, 100 + 6 * i : 420 + 6 * i]) for i in range(12)]  # the face drifts
    clip = write_clip(tmp_path / "clip.mp4", frames)
    (tmp_path / "broken.avi").write_bytes(b"\x00" * 500)
    out = tmp_path / "ages.csv"
    rc = predict_main([str(clip), str(tmp_path / "broken.avi"), "--every", "3", "--model", str(tiny_model_dir), "--engine", "onnx",
                       "--output", str(out), "--workers", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 0
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if "broken.avi" in line and line.startswith("error:")] and err.count("error:") == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0])[:5] == ["file", "frame", "time_s", "track", "face"]
    per_frame = [r for r in rows if r["frame"] != ""]
    tracks = [r for r in rows if r["frame"] == ""]
    assert [int(r["frame"]) for r in per_frame] == [0, 3, 6, 9]  # one face on every sampled frame
    assert [float(r["time_s"]) for r in per_frame] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert {r["track"] for r in per_frame} == {"0"} and len(tracks) == 1 and tracks[0]["track"] == "0" and tracks[0]["face"] == ""
    assert float(tracks[0]["age"]) == pytest.approx(float(np.median([float(r["age"]) for r in per_frame])), abs=0.01)
    assert float(tracks[0]["age_low"]) == pytest.approx(float(np.median([float(r["age_low"]) for r in per_frame])))
    assert "track: " in err and "median of 4 frames" in err and "summary: 1 ok, 1 failed, 4 faces" in err
