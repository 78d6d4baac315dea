"""Video files: recognised by extension (:data:`VIDEO_EXTENSIONS`), decoded frame by frame with PyAV (``av``, which
ships its own FFmpeg).

    >>> for index, time_s, image in read_frames("clip.mp4", every=5):   # every 5th frame, as RGB PIL images
    ...     ...

A file PyAV cannot open or decode raises :class:`VideoLoadError` (one line: the file and the problem).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class VideoLoadError(Exception):
    """A video that cannot be opened or decoded; ``problem`` is the short reason."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a video extension (:data:`VIDEO_EXTENSIONS`, case-insensitive)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, float, Image.Image]]:
    """``(frame index, time in seconds, RGB image)`` of every ``every``-th frame (0, every, 2 every, ...) of the
    first video stream. Frames are counted in decoding order from 0; the time is the frame's presentation time
    (its index / the average frame rate when the container gives none).

    Raises:
        VideoLoadError: no such file, not a video, no video stream, or a decoding error part-way (frames already
            yielded stay valid).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    try:
        import av
    except ImportError:
        raise VideoLoadError(path, 'reading videos needs PyAV: pip install "faceage[video]"') from None
    if not os.path.exists(path):
        raise VideoLoadError(path, "no such file")
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - av.error.* (InvalidDataError, ...) and OSError alike: not a usable video
        raise VideoLoadError(path, f"not a readable video ({type(e).__name__}: {e})") from None
    try:
        if not container.streams.video:
            raise VideoLoadError(path, "no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        index = 0
        try:
            for frame in container.decode(stream):
                if index % every == 0:
                    if frame.pts is not None and frame.time_base is not None:
                        time_s = float(frame.pts * frame.time_base)
                    else:
                        time_s = index / rate if rate else 0.0
                    yield index, time_s, frame.to_image().convert("RGB")
                index += 1
        except VideoLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt stream part-way
            raise VideoLoadError(path, f"decoding failed after {index} frames ({type(e).__name__}: {e})") from None
        if index == 0:
            raise VideoLoadError(path, "no frames could be decoded")
    finally:
        container.close()
