"""Decoded-chip cache: every face of a dataset decoded and resized once, kept as one memory-mapped uint8 array.

Training spends most of its data time decoding JPEGs and resampling 200-px chips; a model sees the same faces
every epoch at the same resolution. :func:`chip_array` decodes each record once through a transform's static
stage (:class:`faceage.data.transforms.ChipTransform`), stores ``(N, S, S, 3)`` uint8 in ``<cache dir>/<key>.npy``
and memory-maps it, so loader workers share the pages and later runs start in a second. NumPy's ``.npy`` memmap is
the whole storage layer (no well-kept library does "decode a list of images once, keyed by content" more simply).

The key hashes the cache format, the static stage (its size and crop) and the *content* of every file (its bytes,
not its name or mtime), so a changed, added or removed image or another resolution gives another file. Writes go
to a temporary file in the same folder, then ``os.replace``: a killed build leaves no half file under the key.
Unreadable images are recorded (index -> problem) beside the array and skipped by the dataset, as without a cache.

The folder is ``$FACEAGE_CACHE/chips`` (default ``~/.cache/faceage/chips``). About 15 kB a face at 71 px.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from faceage._io import write_text_atomic
from faceage.data.images import ImageLoadError, load_image

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored layout or the decoding changes


def cache_root() -> Path:
    """``$FACEAGE_CACHE/chips``, else ``~/.cache/faceage/chips``."""
    base = os.environ.get("FACEAGE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "faceage") / "chips"


def _content_key(paths: Sequence[str], stage: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"format": FORMAT, "stage": stage}, sort_keys=True).encode())
    for path in paths:
        h.update(b"\0")
        try:
            with open(path, "rb") as f:
                h.update(hashlib.blake2b(f.read(), digest_size=16).digest())
        except OSError as e:  # unreadable now: part of the key, so a repaired file rebuilds the cache
            h.update(f"unreadable:{type(e).__name__}".encode())
    return h.hexdigest()


def chip_array(
    paths: Sequence[str],
    static: Callable[[Image.Image], Image.Image],
    stage: dict,
    folder: str | os.PathLike | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """The ``(N, S, S, 3)`` uint8 chips of ``paths`` after ``static`` (memory-mapped), and the unreadable ones.

    Args:
        paths: image files, in dataset order.
        static: deterministic PIL -> PIL transform whose output is ``S x S`` (``ChipTransform.static``).
        stage: JSON-able description of ``static`` with its output side as ``"size"`` (``ChipTransform.key``).
        folder: cache folder (default :func:`cache_root`).
        threads: decoding threads when building (default: the cores).

    Returns:
        ``(chips, failed)``: ``failed`` maps an index to the problem (its chip is zeros).
    """
    folder = Path(folder) if folder is not None else cache_root()
    key = _content_key(paths, stage)
    array_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if array_path.exists() and meta_path.exists():
        try:
            failed = {int(k): v for k, v in json.loads(meta_path.read_text())["failed"].items()}
            chips = np.load(array_path, mmap_mode="r")
            if chips.shape[0] == len(paths):
                return chips, failed
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s: unusable chip cache (%s); rebuilding", array_path, e)
    return _build(paths, static, int(stage["size"]), folder, key, threads)


def _build(paths, static, size: int, folder: Path, key: str, threads: int | None) -> tuple[np.ndarray, dict[int, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy.tmp", dir=folder)
    os.close(fd)
    failed: dict[int, str] = {}
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))

        def one(i: int) -> None:
            try:
                chip = np.asarray(static(load_image(paths[i])))
                if chip.shape != (size, size, 3):
                    raise ImageLoadError(paths[i], f"static transform gave shape {chip.shape}, expected {(size, size, 3)}")
                out[i] = chip
            except ImageLoadError as e:
                failed[i] = e.problem

        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:  # Pillow releases the GIL while decoding
            list(pool.map(one, range(len(paths))))
        out.flush()
        del out
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        meta = folder / f"{key}.json"
        write_text_atomic(meta, json.dumps({"format": FORMAT, "n": len(paths), "size": size, "failed": failed}))
        os.replace(tmp, folder / f"{key}.npy")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("chip cache built: %d faces at %d px in %s", len(paths), size, folder)
    return np.load(folder / f"{key}.npy", mmap_mode="r"), failed

