"""Uploads to the app: checks that turn any bad upload into one short message (:func:`check_upload`,
:class:`UploadError`, :class:`BadUpload`) and the private, bounded upload folder of ``faceage serve``
(:class:`UploadCache`: Gradio stores every posted file; this folder is pruned by size and age, deleted on exit)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.data.images import MAX_IMAGE_PIXELS, ImageLoadError, load_image

ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # PIL format names (MPO: phone JPEGs)
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
BAD_FILE = f"This file is not a usable image. Please upload a photo in {ACCEPTED_TEXT} format."
NO_IMAGE = "Please upload a photo (or take one with the webcam) first."
NO_FACE = "No face found in this photo. Try a larger, frontal, well-lit face (or a tighter crop)."

DEFAULT_CACHE_MB = 200
DEFAULT_CACHE_AGE_S = 600


class UploadCache:
    """A private Gradio upload folder bounded in total size and file age, removed by :meth:`close`.

    Gradio's ``delete_cache`` (set by :func:`launch`) deletes files by age only; nothing in Gradio bounds the total
    size, so a thread here prunes every ``interval`` seconds: files older than ``max_age_s`` go, then the oldest
    until the folder holds at most ``max_mb`` (between two passes it can exceed that by what arrives meanwhile).

    Creating it points ``GRADIO_TEMP_DIR`` at the folder (the Blocks and the server read it when they are built);
    :meth:`close` restores the previous value.
    """

    def __init__(self, max_mb: float = DEFAULT_CACHE_MB, max_age_s: float = DEFAULT_CACHE_AGE_S, parent: str | None = None,
                 interval: float = 1.0) -> None:
        if max_mb <= 0 or max_age_s <= 0:
            raise ValueError(f"upload cache limits must be > 0, got {max_mb} MB and {max_age_s} s")
        self.max_bytes, self.max_age_s, self.interval = int(max_mb * 2**20), float(max_age_s), interval
        self.dir = Path(tempfile.mkdtemp(prefix="faceage-uploads-", dir=parent))
        self._previous = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def files(self) -> list[Path]:
        return [p for p in self.dir.rglob("*") if p.is_file()]

    def size(self) -> int:
        return sum(_file_size(p) for p in self.files())

    def prune(self) -> int:
        """One pass; returns how many files it deleted."""
        now, entries = time.time(), []
        for path in self.files():
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        entries.sort()  # oldest first
        total, deleted, emptied = sum(e[1] for e in entries), 0, set()
        for mtime, size, path in entries:
            if now - mtime <= self.max_age_s and total <= self.max_bytes:
                break
            try:
                path.unlink()
                emptied.add(path.parent)
                deleted += 1
                total -= size
            except OSError:
                pass
        for folder in sorted((p for p in self.dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                # Gradio makes one folder per upload, then moves the file in: leave just-made (empty) ones alone
                if folder in emptied or now - folder.stat().st_mtime > 5:
                    folder.rmdir()  # only succeeds when empty
            except OSError:
                pass
        return deleted

    def start(self) -> UploadCache:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="faceage-upload-cache", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.prune()

    def close(self) -> None:
        """Stops pruning, deletes the folder and everything in it, restores ``GRADIO_TEMP_DIR``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.environ.get("GRADIO_TEMP_DIR") == str(self.dir):
            if self._previous is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = self._previous


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class UploadError(Exception):
    """A user-facing problem with an upload; ``str()`` is the message shown."""


class BadUpload:
    """Stands in for an upload Gradio could not decode, so the handler can answer with a message."""

    def __init__(self, message: str = BAD_FILE) -> None:
        self.message = message


# --------------------------------------------------------------------------------------------- validation


def check_upload(image: Image.Image | np.ndarray | None) -> Image.Image:
    """Validates an uploaded, decoded image and returns it as upright 8-bit RGB.

    Args:
        image: what ``gr.Image(type="pil")`` passed (``None`` when nothing was uploaded).

    Returns:
        RGB PIL image.

    Raises:
        UploadError: nothing uploaded, a format outside :data:`ACCEPTED_FORMATS`, too many pixels, or an image
            :func:`faceage.data.images.load_image` rejects (corrupt, truncated, too small).
    """
    if image is None:
        raise UploadError(NO_IMAGE)
    if isinstance(image, BadUpload):
        raise UploadError(image.message)
    if isinstance(image, Image.Image):
        fmt = getattr(image, "format", None)
        if fmt is not None and fmt.upper() not in ACCEPTED_FORMATS:
            raise UploadError(f"{fmt} images are not accepted. Please upload a photo in {ACCEPTED_TEXT} format.")
        w, h = image.size
    else:
        h, w = np.asarray(image).shape[:2]
    if w * h > MAX_IMAGE_PIXELS:
        raise UploadError(f"This image is too large ({w}x{h} pixels). Please upload a smaller photo.")
    try:
        return load_image(image)
    except ImageLoadError as e:
        raise UploadError(f"This image cannot be used: {e.problem}.") from None
