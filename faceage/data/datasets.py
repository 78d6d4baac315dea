"""Torch datasets over :class:`FaceRecord` lists, and the resumable sampler/loader used for training.

Exact resume (a killed run continues to the same weights as an uninterrupted one) needs the data order and every
random augmentation to be a function of (seed, epoch, position) only, and the loader to say how far it got.
Lightning saves and restores a loader's ``state_dict`` when it has one, so :class:`ResumableLoader` provides it.
PyTorch's ``DataLoader`` has no such state and torchdata's ``StatefulDataLoader`` is not a dependency here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from faceage.data.images import ImageLoadError, load_image
from faceage.data.records import FaceRecord
from faceage.data.transforms import ChipTransform

log = logging.getLogger(__name__)


def cache_mode(cache: bool | str) -> str:
    """``"none"``, ``"memory"`` or ``"disk"`` from a cache setting (``True`` is ``"memory"``, ``False`` ``"none"``)."""
    mode = ("memory" if cache else "none") if isinstance(cache, bool) else str(cache)
    if mode not in ("none", "memory", "disk"):
        raise ValueError(f"cache must be 'none', 'memory' or 'disk', got {cache!r}")
    return mode


class FaceDataset(Dataset):
    """Records -> ``{"image": (3,S,S), "age": float, "age_low": float, "age_high": float, "gender": int (-1 unknown),
    "race": int, "index": int, "source": int}`` (plus ``"seed"``, the item's augmentation seed, when the sampler gives
    one). ``age_low``/``age_high`` are the bounds of an age-group label, both equal to ``age`` for an exact age.
    ``source`` is the position of the record's dataset in ``sources`` (-1 when absent).

    Unreadable images yield ``None`` (dropped by :func:`collate_skip_none`) and are logged once with the file
    name and the problem, so one bad file never stops a run.

    Args:
        records: the faces.
        transform: PIL image -> tensor; a :class:`~faceage.data.transforms.ChipTransform` lets the cache keep its
            static stage's small uint8 output instead of the decoded image.
        cache: ``"none"`` (decode every time), ``"memory"`` (keep decoded chips in memory after first use; ``True``
            means this) or ``"disk"`` (the memory-mapped chip cache of :mod:`faceage.data.chips`, built by
            :meth:`preload`, shared by loader workers and reused by later runs; needs a ``ChipTransform``).
        cache_dir: folder of the disk cache (default ``$FACEAGE_CACHE/chips`` or ``~/.cache/faceage/chips``).
        sources: dataset labels; each item's ``source`` indexes this list (a multi-dataset recipe's datasets).
    """

    def __init__(self, records: Sequence[FaceRecord], transform: Callable[[Image.Image], torch.Tensor],
                 cache: bool | str = False, cache_dir: str | None = None, sources: Sequence[str] | None = None) -> None:
        self.records = list(records)
        position = {name: i for i, name in enumerate(sources or [])}
        self.sources = list(sources or [])
        self.source_ids = np.array([position.get(r.source, -1) for r in self.records], dtype=np.int64)
        self.transform = transform
        mode = cache_mode(cache)
        self._staged = isinstance(transform, ChipTransform)
        if mode == "disk" and not self._staged:
            mode = "memory"  # only a two-stage transform has a fixed-size static output to store
        self.cache_mode, self.cache_dir = mode, cache_dir
        self._cache: dict[int, np.ndarray] | None = {} if mode == "memory" else None
        self._chips: np.ndarray | None = None
        self.failed: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.records)

    def preload(self, threads: int = 4) -> None:
        """Fills the cache: the disk chip cache (built once, then memory-mapped), or every chip decoded into memory
        (before loader workers fork, so they share it)."""
        if self.cache_mode == "disk":
            if self._chips is None:
                from faceage.data.chips import chip_array

                chips, failed = chip_array([r.path for r in self.records], self.transform.static, self.transform.key,
                                           folder=self.cache_dir, threads=threads)
                for i, problem in failed.items():
                    if self.records[i].path not in self.failed:
                        self.failed[self.records[i].path] = problem
                        log.warning("skipping %s: %s", self.records[i].path, problem)
                self._chips = chips
            return
        if self._cache is None:
            return
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int) -> None:
            try:
                self._image(i)
            except ImageLoadError as e:
                self.failed.setdefault(self.records[i].path, e.problem)
                log.warning("skipping %s", e)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(self.records))))

    def _image(self, index: int) -> Image.Image | np.ndarray:
        """The static-stage output (uint8 ``S x S x 3`` array) with a ``ChipTransform``, else the decoded image."""
        if self._chips is not None:
            path = self.records[index].path
            if path in self.failed:
                raise ImageLoadError(path, self.failed[path])
            return self._chips[index]
        if self._cache is not None and index in self._cache:
            arr = self._cache[index]
            return arr if self._staged else Image.fromarray(arr)
        img = load_image(self.records[index].path)
        if self._staged:
            img = np.asarray(self.transform.static(img))
        if self._cache is not None:
            self._cache[index] = np.asarray(img)
        return img

    def _tensor(self, img: Image.Image | np.ndarray) -> torch.Tensor:
        if self._staged:  # HWC uint8 -> CHW uint8 tensor for the dynamic stage (a copy: the memmap is read-only)
            return self.transform.dynamic(torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1))
        return self.transform(img)

    def __getitem__(self, item: int | tuple[int, int]) -> dict | None:
        index, item_seed = item if isinstance(item, tuple) else (item, None)
        if item_seed is not None:
            torch.manual_seed(item_seed)  # augmentation depends on (seed, epoch, position) only: exact resume
        rec = self.records[index]
        try:
            img = self._image(index)
        except ImageLoadError as e:
            if rec.path not in self.failed:
                self.failed[rec.path] = e.problem
                log.warning("skipping %s", e)
            return None
        age = float(rec.age if rec.age is not None else -1)
        return {
            "image": self._tensor(img),
            "age": age,
            "age_low": float(rec.age_low) if rec.is_grouped else age,
            "age_high": float(rec.age_high) if rec.is_grouped else age,
            "gender": -1 if rec.gender is None else int(rec.gender),
            "race": -1 if rec.race is None else int(rec.race),
            "index": index,
            "source": int(self.source_ids[index]),
            **({"seed": item_seed} if item_seed is not None else {}),
        }


def collate_skip_none(batch: list[dict | None]) -> dict | None:
    """``default_collate`` over the samples that loaded; ``None`` when none did."""
    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None


class EpochSampler(Sampler):
    """Seeded order for epoch ``e`` (a fresh permutation per epoch when ``shuffle``), yielding
    ``(index, item_seed)`` pairs; ``skip`` drops the first positions (used when resuming mid-epoch).

    With ``groups`` (a group id per item) and ``group_weights`` (one per group), a shuffled epoch draws
    ``round(weight * size)`` items of each group: a weight of 0.5 shows half a dataset's faces each epoch (a fresh
    half every epoch), 2 shows each face twice. The epoch length stays the same from epoch to epoch.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 groups: Sequence[int] | None = None, group_weights: Sequence[float] | None = None) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0
        self.groups = None if groups is None or group_weights is None else np.asarray(groups)
        self.group_weights = None if self.groups is None else [float(w) for w in group_weights]

    def _weighted(self, rng: np.random.Generator) -> np.ndarray:
        parts = []
        for g, weight in enumerate(self.group_weights):
            members = np.flatnonzero(self.groups == g)
            k = int(round(weight * len(members)))
            if k and len(members):
                reps = -(-k // len(members))
                parts.append(np.concatenate([rng.permutation(members) for _ in range(reps)])[:k])
        order = np.concatenate(parts) if parts else np.arange(0)
        return rng.permutation(order)

    def _order(self) -> np.ndarray:
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(self.n) if self.groups is None else self._weighted(rng)
        else:
            order = np.arange(self.n)
        if self.world_size > 1:  # pad to equal shards, as DistributedSampler does
            per = -(-self.n // self.world_size)
            order = np.resize(order, per * self.world_size)[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        for pos in range(self.skip, len(order)):
            yield int(order[pos]), int(np.random.default_rng([self.seed, self.epoch, pos, self.rank]).integers(2**31))

    def __len__(self) -> int:
        # the whole epoch, also when resuming mid-epoch: Lightning counts the batches already done itself
        return len(self._order())


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochSampler` whose ``state_dict`` records the epoch and the batches the
    training loop has consumed; Lightning stores it in checkpoints and restores it on resume.

    Lightning's fetcher reads one batch ahead, so "yielded" is not "consumed": the training module reports
    consumption through :meth:`mark_consumed` at the start of each training batch.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 groups: Sequence[int] | None = None, group_weights: Sequence[float] | None = None, **kwargs) -> None:
        sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle, rank=rank, world_size=world_size, groups=groups, group_weights=group_weights)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_skip_none, **kwargs)
        self._next_epoch = 0
        self._epoch = 0
        self._consumed = 0
        self._resume: dict | None = None

    def __iter__(self):
        sampler: EpochSampler = self.sampler  # type: ignore[assignment]
        skip = 0
        if self._resume is not None:
            self._next_epoch, skip = self._resume["epoch"], self._resume["batches_done"]
            self._resume = None
        self._epoch, self._consumed = self._next_epoch, skip
        sampler.epoch = self._epoch
        sampler.skip = skip * self.batch_size
        self._next_epoch += 1
        yield from super().__iter__()

    def mark_consumed(self, batches: int) -> None:
        """Batches of the current epoch the training loop has taken (including the one starting now)."""
        self._consumed = batches

    def state_dict(self) -> dict:
        if self._consumed >= len(self):
            return {"epoch": self._epoch + 1, "batches_done": 0}
        return {"epoch": self._epoch, "batches_done": self._consumed}

    def load_state_dict(self, state: dict) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches_done": int(state["batches_done"])}
