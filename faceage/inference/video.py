"""Ages in videos: decode every N-th frame (:func:`faceage.data.video.read_frames`, PyAV), detect + estimate the
faces of each (:class:`faceage.inference.predictor.Predictor`), link them across frames into tracks with a greedy
IoU tracker, and give each track one smoothed age.

    >>> result = predict_video(Predictor(), "clip.mp4", every=5)
    >>> result.tracks[0].age, result.tracks[0].frames      # median age over the track's frames, frame count

``faceage predict clip.mp4 [--every N]`` writes :func:`video_rows`: one row per face per sampled frame (``file,
frame, time_s, track, face, age, ...``) and then one row per track with ``frame``, ``time_s`` and ``face`` empty
whose ``age`` / ``age_low`` / ``age_high`` are the **medians** over the track's frames, ``gender`` the majority
gender (``gender_p``: the mean probability of that gender over its frames), and the box the track's last box. The
median, not the mean or a product of distributions: a few frames with a bad detection (blur, profile) move it least,
and it is what a person reading the per-frame rows can check by hand.

Tracker: hand-written (:class:`IoUTracker`, ~40 lines) rather than a library — the light trackers on PyPI
(``motpy``, ``norfair``, SORT ports) bring Kalman filters and extra dependencies (filterpy, scipy versions) for
what, on faces sampled a few frames apart, is a box-overlap match: each frame's faces are matched greedily to the
live tracks by IoU (highest first, at least :data:`MIN_IOU`); unmatched faces start new tracks; a track not seen
for more than ``max_missed`` sampled frames ends.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from faceage.data.boxes import iou
from faceage.data.video import VideoLoadError, read_frames
from faceage.inference.predictor import FaceResult, FileResult

MIN_IOU = 0.3


class IoUTracker:
    """Greedy IoU tracker: :meth:`update` with one frame's boxes returns their track ids (0, 1, ... in order of
    first appearance)."""

    def __init__(self, min_iou: float = MIN_IOU, max_missed: int = 5) -> None:
        self.min_iou, self.max_missed = min_iou, max_missed
        self.live: dict[int, tuple[tuple, int]] = {}  # track id -> (last box, sampled frames since last seen)
        self.next_id = 0

    def update(self, boxes: list) -> list[int]:
        pairs = sorted(((iou(box, last), i, t) for i, box in enumerate(boxes) for t, (last, _) in self.live.items()), reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for score, i, t in pairs:
            if score < self.min_iou:
                break
            if ids[i] is None and t not in used:
                ids[i] = t
                used.add(t)
        for t in list(self.live):
            if t not in used:
                box, missed = self.live[t]
                if missed + 1 > self.max_missed:
                    del self.live[t]
                else:
                    self.live[t] = (box, missed + 1)
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self.next_id
                self.next_id += 1
            self.live[ids[i]] = (tuple(box), 0)
        return ids  # type: ignore[return-value]


@dataclass
class Track:
    """One face followed across frames; the ``age`` fields are medians over its frames (see the module notes)."""

    track: int
    frames: int
    age: float
    age_low: float | None
    age_high: float | None
    gender: str | None
    gender_p: float | None
    box: tuple[int, int, int, int]
    first_frame: int
    last_frame: int


@dataclass
class VideoFrame:
    """One sampled frame of a video: its index, time, faces and the track of each face."""

    index: int
    time_s: float
    faces: list[FaceResult]
    tracks: list[int]


@dataclass
class VideoResult:
    """A video's sampled frames (with faces and their track ids) and tracks, or the ``error`` that stopped it
    (frames decoded before a mid-stream error are kept)."""

    path: str
    frames: list[VideoFrame] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    error: str | None = None


def summarise_track(track: int, items: list[tuple[int, FaceResult]]) -> Track:
    """``items``: ``(frame index, face)`` of one track -> its :class:`Track` (medians; majority gender)."""
    ages = np.array([f.age for _, f in items], dtype=np.float64)
    lows = [f.age_low for _, f in items if f.age_low is not None]
    highs = [f.age_high for _, f in items if f.age_high is not None]
    genders = Counter(f.gender for _, f in items if f.gender is not None)
    gender = genders.most_common(1)[0][0] if genders else None
    gender_p = None
    if gender is not None:
        gender_p = float(np.mean([f.gender_p if f.gender == gender else 1 - f.gender_p for _, f in items if f.gender is not None]))
    return Track(track, len(items), float(np.median(ages)), float(np.median(lows)) if lows else None,
                 float(np.median(highs)) if highs else None, gender, gender_p, tuple(items[-1][1].box), items[0][0], items[-1][0])


def predict_video(predictor, path: str | os.PathLike, every: int = 1, tracker: IoUTracker | None = None) -> VideoResult:
    """Faces of every ``every``-th frame of a video, tracked; never raises for a bad video (see ``error``)."""
    result = VideoResult(str(path))
    tracker = tracker or IoUTracker()
    by_track: dict[int, list[tuple[int, FaceResult]]] = {}
    try:
        for index, time_s, image in read_frames(path, every):
            faces = predictor.predict(image)
            ids = tracker.update([f.box for f in faces])
            result.frames.append(VideoFrame(index, time_s, faces, ids))
            for f, t in zip(faces, ids):
                by_track.setdefault(t, []).append((index, f))
    except VideoLoadError as e:
        result.error = e.problem
    except Exception as e:  # noqa: BLE001 - a frame the detector or engine chokes on is this video's problem only
        result.error = f"{type(e).__name__}: {e}"
    result.tracks = [summarise_track(t, items) for t, items in sorted(by_track.items())]
    return result


def video_rows(result: VideoResult, distribution: bool = False) -> list[dict]:
    """Per-frame rows (``file, frame, time_s, track`` + :func:`faceage.inference.output.prediction_rows`'s), then
    one row per track (``frame``, ``time_s``, ``face`` empty; medians)."""
    from faceage.inference.output import prediction_rows

    rows = []
    for frame in result.frames:
        for row, track in zip(prediction_rows(FileResult(result.path, frame.faces), distribution), frame.tracks):
            rows.append({**row, "frame": frame.index, "time_s": round(frame.time_s, 4), "track": track})
    for t in result.tracks:
        left, top, right, bottom = t.box
        rows.append({"file": result.path, "frame": None, "time_s": None, "track": t.track, "face": None, "age": t.age,
                     "age_low": t.age_low, "age_high": t.age_high, "gender": t.gender, "gender_p": t.gender_p,
                     "left": left, "top": top, "right": right, "bottom": bottom})
    return rows


def video_columns(distribution: bool = False) -> tuple:
    """``faceage predict``'s columns when videos are among the inputs: ``file, frame, time_s, track`` then the
    image columns (:data:`faceage.inference.output.PREDICT_COLUMNS`); image rows leave the three empty."""
    from faceage.inference.output import DISTRIBUTION_COLUMNS, PREDICT_COLUMNS, Column

    return ((PREDICT_COLUMNS[0], Column("frame", "int"), Column("time_s", "float", lambda v: format(v, "g")), Column("track", "int"))
            + PREDICT_COLUMNS[1:] + (DISTRIBUTION_COLUMNS if distribution else ()))
