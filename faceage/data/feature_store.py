"""Feature store: a frozen network part's output for every face and view, computed once and memory-mapped.

Layout of one store, ``<root>/<key>/``:

- ``view_<v>.npy``: ``(N, *shape)`` float16, row ``i`` = face ``i`` of the dataset's records, view ``v`` (view 0 has
  no augmentation); NumPy ``.npy`` files opened as memmaps, so loader workers share the pages;
- ``state.npy``: ``(views, N)`` int8, 0 = not computed, 1 = done, 2 = the image could not be read; written atomically
  after the rows it marks are flushed, so a killed or interrupted fill resumes where it stopped and never trusts a
  row it did not finish;
- ``manifest.json``: the format, key, shape and the readable description of what the key covers (atomic).

The key is computed by the caller (:mod:`faceage.training.feature_store`) from everything the stored values depend
on; a store whose manifest does not match its key, shape or view count is rebuilt, never reused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from faceage._io import atomic_target, write_text_atomic
from faceage.data.datasets import FaceDataset
from faceage.data.images import ImageLoadError
from faceage.data.records import FaceRecord

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout or the meaning of the stored values changes
MISSING, DONE, FAILED = 0, 1, 2
FLUSH_SECONDS = 20.0  # a killed fill loses at most this much work


class FeatureStoreFull(OSError):
    """The disk holding a feature store is full (one line naming the store's folder)."""


def store_root(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, else ``$FACEAGE_CACHE/features``, else ``~/.cache/faceage/features``."""
    if folder:
        return Path(folder).expanduser()
    base = os.environ.get("FACEAGE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "faceage") / "features"


def _no_space(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class FeatureStore:
    """One store on disk: ``views`` float16 arrays of ``(n, *shape)`` and the per-row state.

    Args:
        root: the stores' folder (:func:`store_root`).
        key: hex key of what the values depend on (the store's folder name).
        n: rows (faces).
        views: stored views per face (view 0: no augmentation).
        shape: one row's shape (the frozen part's output for one face).
        describe: JSON-able description of the key's inputs, written to the manifest.
    """

    def __init__(self, root: str | os.PathLike, key: str, n: int, views: int, shape: Sequence[int], describe: dict | None = None) -> None:
        self.folder = Path(root) / key
        self.key, self.n, self.views, self.shape = key, int(n), int(views), tuple(int(s) for s in shape)
        self.describe = describe or {}
        self.state = np.zeros((self.views, self.n), dtype=np.int8)
        self._arrays: list[np.memmap] = []

    # ---- opening ------------------------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        return {"format": FORMAT, "key": self.key, "n": self.n, "views": self.views, "shape": list(self.shape),
                "dtype": "float16", "describe": self.describe}

    def _matches(self) -> bool:
        try:
            manifest = json.loads((self.folder / "manifest.json").read_text())
            if any(manifest.get(k) != v for k, v in self._manifest().items() if k != "describe"):
                return False
            state = np.load(self.folder / "state.npy")
            arrays = [np.load(self.view_path(v), mmap_mode="r") for v in range(self.views)]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return state.shape == (self.views, self.n) and all(a.shape == (self.n, *self.shape) and a.dtype == np.float16 for a in arrays)

    def view_path(self, view: int) -> Path:
        return self.folder / f"view_{view}.npy"

    def open(self) -> FeatureStore:
        """Opens the store for filling: the existing one when its manifest and files match, else a new empty one
        (space for every row allocated up front, so a full disk fails here with :class:`FeatureStoreFull`)."""
        try:
            if self._matches():
                self.state = np.load(self.folder / "state.npy")
            else:
                if self.folder.exists():
                    log.warning("%s: feature store does not match its key or shape; rebuilding it", self.folder)
                    shutil.rmtree(self.folder)
                self._create()
            self._arrays = [np.load(self.view_path(v), mmap_mode="r+") for v in range(self.views)]
        except OSError as e:
            raise self._full(e) if _no_space(e) else e
        return self

    def _create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for v in range(self.views):
            with atomic_target(self.view_path(v)) as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(self.n, *self.shape)).flush()
                _allocate(tmp)
        self.state = np.zeros((self.views, self.n), dtype=np.int8)
        self._save_state()
        write_text_atomic(self.folder / "manifest.json", json.dumps(self._manifest(), indent=1))

    def _full(self, e: OSError) -> FeatureStoreFull:
        need = self.views * self.n * int(np.prod(self.shape)) * 2 / 1e9
        return FeatureStoreFull(e.errno, f"feature store {self.folder}: no space left on the disk (it needs {need:.2f} GB); free space, "
                                         "or move it with model.backbone.feature_dir or FACEAGE_CACHE")

    # ---- filling ------------------------------------------------------------------------------------------------
    def missing(self, view: int, rows: Sequence[int]) -> np.ndarray:
        """The ``rows`` of ``view`` not computed yet."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows[self.state[view, rows] == MISSING]

    def fill(self, needed: dict[int, Sequence[int]], compute: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]],
             chunk: int = 64, progress: bool = True) -> int:
        """Computes the missing rows of each view in ``needed`` and stores them.

        Rows are processed in fixed chunks of the row index (``[k*chunk, (k+1)*chunk)``, the missing ones of each), so
        an interrupted fill resumed later computes the very batches an uninterrupted one would. Finished rows are
        flushed and marked done every :data:`FLUSH_SECONDS`, at the end, and when the fill stops on an error.

        Args:
            needed: view -> the rows that view must hold.
            compute: ``(view, rows) -> (values (k, *shape), ok (k,) bool)``; rows whose image failed have ``ok`` False.
            chunk: rows per batch.
            progress: show a progress bar.

        Returns:
            rows computed now.
        """
        todo = {v: self.missing(v, rows) for v, rows in needed.items()}
        total = sum(len(r) for r in todo.values())
        if not total:
            return 0
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"feature store {self.folder.name[:8]}", unit="face", disable=not progress)
        last = time.monotonic()
        try:
            try:
                for view, rows in todo.items():
                    for k in np.unique(rows // chunk):
                        part = rows[(rows // chunk) == k]
                        values, ok = compute(view, part)
                        self._arrays[view][part[ok]] = values[ok].astype(np.float16)
                        self.state[view, part] = np.where(ok, DONE, FAILED)
                        bar.update(len(part))
                        if time.monotonic() - last > FLUSH_SECONDS:
                            self.flush()
                            last = time.monotonic()
            except BaseException:
                with contextlib.suppress(OSError):  # keep the finished rows; the first error is the one to report
                    self.flush()
                raise
            self.flush()
        except OSError as e:
            raise self._full(e) if _no_space(e) else e
        finally:
            bar.close()
        return total

    def flush(self) -> None:
        """Writes the computed rows to disk, then (atomically) the state that marks them done."""
        for a in self._arrays:
            a.flush()
        self._save_state()

    def _save_state(self) -> None:
        with atomic_target(self.folder / "state.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.state)
            f.flush()
            os.fsync(f.fileno())

    def nbytes(self) -> int:
        """Size of the stored arrays in bytes."""
        return self.views * self.n * int(np.prod(self.shape)) * 2

    def close(self) -> None:
        self._arrays = []


def _allocate(path: Path) -> None:
    """Reserves the file's blocks now (a sparse memmap on a full disk would crash with SIGBUS on a later write)."""
    size = path.stat().st_size
    if hasattr(os, "posix_fallocate"):
        with open(path, "rb+") as f:
            os.posix_fallocate(f.fileno(), 0, size)


class StoreDataset(FaceDataset):
    """A :class:`FaceDataset` whose items carry stored activations instead of images: ``"features"`` ``(*shape)``
    float32 in place of ``"image"``, the other keys as ``FaceDataset`` gives them.

    With an item seed (training), each item picks one of the ``views`` stored views at random, a function of the seed
    (so of training seed, epoch and position: exact resume); without one, view 0. Rows whose image failed when the
    store was filled yield ``None``, as an unreadable image does.

    Args:
        records: the faces, in this dataset's order.
        folder: the store's folder (``FeatureStore.folder``).
        rows: each record's row in the store.
        views: views to pick from (the first ``views`` of the store).
        state: the store's ``(views, N)`` state (which rows failed).
        sources: dataset labels (see :class:`FaceDataset`).
    """

    def __init__(self, records: Sequence[FaceRecord], folder: str | os.PathLike, rows: Sequence[int], views: int,
                 state: np.ndarray, sources: Sequence[str] | None = None) -> None:
        super().__init__(records, transform=None, cache="none", sources=sources)
        self.folder, self.rows, self.views = Path(folder), np.asarray(rows, dtype=np.int64), int(views)
        self.ok = state[: self.views, self.rows] == DONE
        self._view = 0
        self._arrays: list[np.ndarray] | None = None

    def __getstate__(self) -> dict:  # loader workers open their own memmaps
        return {**self.__dict__, "_arrays": None}

    def preload(self, threads: int = 4) -> None:
        return None

    def _image(self, index: int) -> np.ndarray:
        if self._arrays is None:
            self._arrays = [np.load(self.folder / f"view_{v}.npy", mmap_mode="r") for v in range(self.views)]
        if not self.ok[self._view, index]:
            raise ImageLoadError(self.records[index].path, "unreadable when the feature store was filled")
        return self._arrays[self._view][self.rows[index]]

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=np.float32))

    def __getitem__(self, item: int | tuple[int, int]) -> dict | None:
        seed = item[1] if isinstance(item, tuple) else None
        self._view = int(np.random.default_rng(seed).integers(self.views)) if seed is not None and self.views > 1 else 0
        out = super().__getitem__(item)
        if out is not None:
            out["features"] = out.pop("image")
        return out
