"""Face pairs labelled "left is older" for the pairwise comparators (seed 003), built over any age dataset.

A pair set is drawn from one list of records with seed 003's knobs (see :class:`PairConfig`):

* ``year_diff``: only pairs whose ages differ by at least this many years (so the label is never a tie);
* ``data_size``: at most this many pairs (``<= 0``: every possible pair); drawn uniformly without building the
  ``O(n^2)`` candidate list, so 100k pairs out of 20k faces take milliseconds;
* ``duplicate_probability``: each pair is also added swapped (right, left) with this probability, so the set
  grows by that factor on average (the duplicates come on top of ``data_size``);
* ``unique_images``: every image takes part in at most one pair (``data_size`` may then not be reached);
* ``seed``: the same seed and records always give the same pairs.

Each pair's order is a fair coin, so labels are balanced; label 1 means the left face is older.

:class:`PairDataModule` splits the *records* first (``split_records``: stratified, subject-exclusive where the
dataset has subjects) and builds pairs inside each split, so no image appears in two splits. Fixed pair sets can
be read and written as CSV (``left,right[,label]``, see :func:`read_pair_csv`); the validation and test pairs of a
run are written to its log folder so they can be reused.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from faceage.data.datamodule import AgeDataModule, SplitConfig
from faceage.data.datasets import FaceDataset
from faceage.data.records import FaceRecord
from faceage.data.splits import SPLIT_NAMES
from faceage.data.transforms import AugmentConfig, build_eval_transform, build_train_transform

log = logging.getLogger(__name__)

PAIR_CSV_COLUMNS = ("left", "right", "label")


@dataclass
class PairConfig:
    """How a pair set is drawn from a list of records (seed 003's knobs).

    Attributes:
        seed: seed of the draw; the same seed and records give the same pairs.
        year_diff: minimum age difference of a pair, in years (> 0).
        data_size: maximum number of pairs before duplication; ``<= 0`` means every possible pair.
        duplicate_probability: probability of also adding a pair swapped.
        unique_images: use each image in at most one pair.
    """

    seed: int = 0
    year_diff: float = 1.0
    data_size: int = 100_000
    duplicate_probability: float = 0.0
    unique_images: bool = False


# ----------------------------------------------------------------------------------------------------------
# Drawing pairs
# ----------------------------------------------------------------------------------------------------------


def _check(year_diff: float, duplicate_probability: float) -> None:
    if not year_diff > 0:
        raise ValueError(f"year_diff must be > 0 (pairs of equal age have no 'older' face), got {year_diff}")
    if not 0.0 <= duplicate_probability <= 1.0:
        raise ValueError(f"duplicate_probability must be in [0, 1], got {duplicate_probability}")


def count_pairs(ages: Sequence[float], year_diff: float = 1.0) -> int:
    """Number of unordered pairs whose ages differ by at least ``year_diff``."""
    s = np.sort(np.asarray(ages, dtype=np.float64))
    return int((len(s) - np.searchsorted(s, s + year_diff, side="left")).sum())


def _sampled_pairs(ages: np.ndarray, year_diff: float, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform draw of ``limit`` distinct unordered pairs (all, shuffled, when ``limit <= 0``).

    Sorted by age, the partners of position ``p`` that are at least ``year_diff`` older form the suffix
    ``hi[p]..n-1``; numbering all such pairs row by row maps a flat index to a pair without listing them.
    """
    order = np.argsort(ages, kind="stable")
    s = ages[order]
    hi = np.searchsorted(s, s + year_diff, side="left")
    counts = len(s) - hi
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    flat = rng.permutation(total) if limit <= 0 or limit >= total else rng.choice(total, size=limit, replace=False)
    row = np.searchsorted(ends, flat, side="right")
    col = hi[row] + (flat - (ends[row] - counts[row]))
    return np.stack([order[row], order[col]], axis=1).astype(np.int64)


class _Fenwick:
    """Counts of still-unused positions: prefix sums and "k-th unused position" in ``O(log n)``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tree = [0] * (n + 1)
        for i in range(1, n + 1):  # all ones, built in O(n)
            self.tree[i] += 1
            parent = i + (i & -i)
            if parent <= n:
                self.tree[parent] += self.tree[i]
        self.step = 1 << max(0, n.bit_length() - 1)

    def remove(self, pos: int) -> None:
        i = pos + 1
        while i <= self.n:
            self.tree[i] -= 1
            i += i & -i

    def prefix(self, end: int) -> int:
        """Unused positions in ``[0, end)``."""
        total, i = 0, end
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total

    def kth(self, k: int) -> int:
        """Position of the ``k``-th (0-based) unused position."""
        pos, step = 0, self.step
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= k:
                pos, k = nxt, k - self.tree[nxt]
            step >>= 1
        return pos


def _unique_pairs(ages: np.ndarray, year_diff: float, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy random matching: images in random order, each paired with a random still-unused image at least
    ``year_diff`` years younger or older; stops after ``limit`` pairs (``<= 0``: when nobody can be matched)."""
    n = len(ages)
    order = np.argsort(ages, kind="stable")
    s = ages[order]
    younger_end = np.searchsorted(s, s - year_diff, side="right")  # positions [0, end) are young enough
    older_start = np.searchsorted(s, s + year_diff, side="left")  # positions [start, n) are old enough
    unused = _Fenwick(n)
    is_used = np.zeros(n, dtype=bool)
    draws = rng.random(n)
    remaining = n
    pairs: list[tuple[int, int]] = []
    for p in rng.permutation(n).tolist():
        if is_used[p]:
            continue
        n_young = unused.prefix(int(younger_end[p]))
        before_old = unused.prefix(int(older_start[p]))
        n_old = remaining - before_old
        if n_young + n_old == 0:
            continue
        r = min(int(draws[p] * (n_young + n_old)), n_young + n_old - 1)
        q = unused.kth(r if r < n_young else before_old + r - n_young)
        for pos in (p, q):
            is_used[pos] = True
            unused.remove(pos)
        remaining -= 2
        pairs.append((int(order[p]), int(order[q])))
        if 0 < limit <= len(pairs):
            break
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def sample_pairs(
    ages: Sequence[float],
    year_diff: float = 1.0,
    data_size: int = 0,
    duplicate_probability: float = 0.0,
    unique_images: bool = False,
    seed: int | Sequence[int] = 0,
) -> np.ndarray:
    """Draws (left, right) index pairs over ``ages`` with seed 003's semantics (see the module docstring).

    Args:
        ages: age of each image, in years.
        year_diff: minimum age difference of a pair (> 0).
        data_size: maximum number of pairs before duplication; ``<= 0`` means every possible pair.
        duplicate_probability: probability of also adding each pair swapped (right after it).
        unique_images: use each image in at most one pair (duplicates repeat the same two images).
        seed: seed (or seed sequence) of the ``numpy`` generator.

    Returns:
        ``(m, 2)`` int64 array of indices into ``ages``; label ``ages[left] > ages[right]``.

    Raises:
        ValueError: for ``year_diff <= 0`` or a probability outside ``[0, 1]``.
    """
    _check(year_diff, duplicate_probability)
    a = np.asarray(ages, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draw = _unique_pairs if unique_images else _sampled_pairs
    base = draw(a, float(year_diff), int(data_size), rng)
    swap = rng.random(len(base)) < 0.5
    base[swap] = base[swap][:, ::-1]
    duplicate = rng.random(len(base)) < duplicate_probability
    rows = np.repeat(base, 1 + duplicate.astype(np.int64), axis=0)
    copies = (np.cumsum(1 + duplicate.astype(np.int64)) - 1)[duplicate]
    rows[copies] = rows[copies][:, ::-1]
    return rows


def pair_labels(ages: Sequence[float], pairs: np.ndarray) -> np.ndarray:
    """``1`` where the left face is older, else ``0`` (float32, for the BCE loss)."""
    a = np.asarray(ages, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return (a[pairs[:, 0]] > a[pairs[:, 1]]).astype(np.float32)


def pairs_from_config(records: Sequence[FaceRecord], config: PairConfig, stream: int = 0) -> np.ndarray:
    """:func:`sample_pairs` over records' ages; ``stream`` separates the draws of different splits."""
    ages = [r.age for r in records]
    if any(a is None for a in ages):
        raise ValueError("pairs need an age for every record")
    return sample_pairs(
        ages,
        year_diff=config.year_diff,
        data_size=config.data_size,
        duplicate_probability=config.duplicate_probability,
        unique_images=config.unique_images,
        seed=[int(config.seed), int(stream)],
    )


# ----------------------------------------------------------------------------------------------------------
# Pair CSV files
# ----------------------------------------------------------------------------------------------------------


# torch-free, for `faceage compare` on the ONNX engine; re-exported here
from faceage.data.pair_csv import PairRow, _parse_label, read_pair_csv, resolve_pair_path  # noqa: E402, F401


def _relative_to(path: str, folder: Path) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(path), folder)).as_posix()
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


def write_pair_csv(path: str | os.PathLike, rows: Iterable[tuple], relative: bool = True) -> int:
    """Writes ``left,right,label`` rows (``label`` blank when ``None``).

    Args:
        path: CSV file to write.
        rows: ``(left, right)`` or ``(left, right, label)`` tuples, or :class:`PairRow` objects.
        relative: store image paths relative to the CSV's folder, as :func:`read_pair_csv` resolves them.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PAIR_CSV_COLUMNS)
        for row in rows:
            if isinstance(row, PairRow):
                left, right, label = row.left, row.right, row.label
            else:
                left, right, label = (*row, None)[:3]
            if relative:
                left, right = _relative_to(str(left), folder), _relative_to(str(right), folder)
            writer.writerow([left, right, "" if label is None else int(label)])
            n += 1
    return n


# ----------------------------------------------------------------------------------------------------------
# Dataset and data module
# ----------------------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """Pairs over records -> ``{"left", "right": (3,S,S), "label": float, "age_left", "age_right": float, "index"}``.

    Images load through a :class:`FaceDataset` (so caching, unreadable-file handling and logging are shared); a pair
    with an unreadable image yields ``None`` and is dropped by ``collate_skip_none``. Left and right get independent
    random augmentations, seeded per item when the loader passes ``(index, item_seed)``.

    Args:
        records: the faces the pair indices refer to.
        pairs: ``(m, 2)`` indices into ``records``.
        transform: PIL image -> tensor.
        labels: per-pair labels; default from the records' ages.
        cache: keep decoded images in memory.
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        pairs: np.ndarray,
        transform: Callable[[Image.Image], torch.Tensor],
        labels: np.ndarray | None = None,
        cache: bool = False,
    ) -> None:
        self.faces = FaceDataset(records, transform, cache=cache)
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if labels is None:
            labels = pair_labels([r.age for r in self.faces.records], self.pairs)
        self.labels = np.asarray(labels, dtype=np.float32)
        if len(self.labels) != len(self.pairs):
            raise ValueError(f"{len(self.labels)} labels for {len(self.pairs)} pairs")

    @property
    def records(self) -> list[FaceRecord]:
        return self.faces.records

    def __len__(self) -> int:
        return len(self.pairs)

    def preload(self, threads: int = 4) -> None:
        self.faces.preload(threads)

    def __getitem__(self, item: int | tuple[int, int]) -> dict | None:
        index, item_seed = item if isinstance(item, tuple) else (item, None)
        if item_seed is not None:
            torch.manual_seed(item_seed)
        i, j = (int(v) for v in self.pairs[index])
        left, right = self.faces[i], self.faces[j]
        if left is None or right is None:
            return None
        return {
            "left": left["image"],
            "right": right["image"],
            "label": float(self.labels[index]),
            "age_left": left["age"],
            "age_right": right["age"],
            "index": index,
        }

    def rows(self) -> list[tuple[str, str, int]]:
        """``(left path, right path, label)`` per pair, e.g. for :func:`write_pair_csv`."""
        recs = self.faces.records
        return [(recs[i].path, recs[j].path, int(lab)) for (i, j), lab in zip(self.pairs.tolist(), self.labels)]


def pair_dataset_from_csv(path: str | os.PathLike, transform, records: Sequence[FaceRecord] = (), cache: bool = False) -> PairDataset:
    """A fixed pair set from a CSV; a row without a label takes it from the ages of ``records`` (matched by path).

    Raises:
        ValueError: for malformed rows, or a row without label whose images have no known age.
    """
    ages = {os.path.abspath(r.path): r.age for r in records}
    index: dict[str, int] = {}
    faces: list[FaceRecord] = []
    pairs, labels = [], []
    for row in read_pair_csv(path):
        ids = []
        for p in (row.left, row.right):
            key = os.path.abspath(p)
            if key not in index:
                index[key] = len(faces)
                faces.append(FaceRecord(path=p, age=ages.get(key)))
            ids.append(index[key])
        label = row.label
        if label is None:
            a, b = (faces[i].age for i in ids)
            if a is None or b is None:
                raise ValueError(f"{path}: row {row.row}: no label and no known age for {row.left if a is None else row.right}")
            label = int(a > b)
        pairs.append(ids)
        labels.append(label)
    return PairDataset(faces, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), transform, np.asarray(labels, np.float32), cache=cache)


class PairDataModule(AgeDataModule):
    """Pairs of faces labelled "left is older", built inside each split of any age dataset.

    Reading, splitting (saved as ``split.json``), loaders and resume work as in :class:`AgeDataModule`; the model's
    ``input_config`` decides the transforms. The generated validation and test pairs are written to the log folder
    (``pairs_val.csv``, ``pairs_test.csv``) so that other models can be evaluated on the same pairs.

    Args:
        dataset: reader name (``utkface``, ``afad``, ...).
        root: dataset folder (or CSV for ``csv``).
        reader_kwargs: extra reader arguments.
        split: how records are split (pairs never cross splits).
        split_file: JSON split to load, or where to write it.
        test_dataset: a second dataset used whole for test pairs (cross-dataset evaluation).
        test_root: its folder.
        pairs: how training pairs are drawn.
        eval_pairs: how validation and test pairs are drawn (default: 5000 pairs, other knobs as ``pairs``).
        pair_files: fixed pair CSVs by split name (``{"val": "val_pairs.csv"}``) used instead of drawing; their
            images need not be in the dataset, rows without a label take it from the dataset's ages.
        batch_size: pairs per batch.
        num_workers: loader worker processes.
        augment: training augmentation (left and right independently).
        cache_images: keep decoded images in memory.
        max_samples: use only this many records (seeded subsample); 0 = all.
        check_images: let the reader check each file's header up front.
    """

    def __init__(
        self,
        dataset: str = "utkface",
        root: str = "../shared/data/utkface",
        reader_kwargs: dict | None = None,
        split: SplitConfig | None = None,
        split_file: str | None = None,
        test_dataset: str | None = None,
        test_root: str | None = None,
        pairs: PairConfig | None = None,
        eval_pairs: PairConfig | None = None,
        pair_files: dict[str, str] | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        augment: AugmentConfig | None = None,
        cache_images: bool = True,
        max_samples: int = 0,
        check_images: bool = True,
    ) -> None:
        super().__init__(
            dataset=dataset, root=root, reader_kwargs=reader_kwargs, split=split, split_file=split_file,
            test_dataset=test_dataset, test_root=test_root, batch_size=batch_size, num_workers=num_workers,
            augment=augment, cache_images=cache_images, max_samples=max_samples, check_images=check_images,
        )
        self.pairs_config = pairs or PairConfig()
        if eval_pairs is None:
            p = self.pairs_config
            eval_pairs = PairConfig(p.seed, p.year_diff, 5000, p.duplicate_probability, p.unique_images)
        self.eval_pairs_config = eval_pairs
        self.pair_files = dict(pair_files or {})
        unknown = set(self.pair_files) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"pair_files keys must be among {SPLIT_NAMES}, got {sorted(unknown)}")
        self.datasets: dict[str, PairDataset] = {}  # type: ignore[assignment]

    def _module_input_config(self) -> dict | None:
        module = getattr(self.trainer, "lightning_module", None) if getattr(self, "trainer", None) else None
        if module is None:
            return self.input_config
        return getattr(module, "input_config", None) or module.model.input_config

    def build_pairs(self, name: str) -> np.ndarray:
        """Index pairs into ``self.subset(name)`` for split ``name`` (``train`` uses ``pairs``, others ``eval_pairs``)."""
        config = self.pairs_config if name == "train" else self.eval_pairs_config
        return pairs_from_config(self.subset(name), config, stream=SPLIT_NAMES.index(name))

    def setup(self, stage: str | None = None) -> None:
        self.prepare_records()
        self.input_config = self._module_input_config()
        if self.input_config is None:
            raise RuntimeError("PairDataModule needs input_config (set by the model) before setup")
        eval_tf = build_eval_transform(self.input_config)
        transforms = {"train": build_train_transform(self.input_config, self.augment), "val": eval_tf, "test": eval_tf}
        for name in SPLIT_NAMES:
            if name in self.pair_files:
                self.datasets[name] = pair_dataset_from_csv(self.pair_files[name], transforms[name], self.records, cache=self.cache_images)
            elif name == "test" and self.test_dataset:
                records = self._read(self.test_dataset, self.test_root or "")
                self.datasets[name] = PairDataset(records, pairs_from_config(records, self.eval_pairs_config, 2), eval_tf)
            else:
                self.datasets[name] = PairDataset(self.subset(name), self.build_pairs(name), transforms[name], cache=self.cache_images)
        print("pairs: " + ", ".join(f"{k} {len(v)}" for k, v in self.datasets.items()))
        self._write_eval_pairs()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", SPLIT_NAMES)
        for name in wanted:
            self.datasets[name].preload()

    def _write_eval_pairs(self) -> None:
        trainer = getattr(self, "trainer", None)
        log_dir = trainer.log_dir if trainer is not None else None
        if not log_dir or (trainer is not None and not trainer.is_global_zero):
            return
        for name in ("val", "test"):
            if name not in self.pair_files and len(self.datasets[name]):
                write_pair_csv(Path(log_dir) / f"pairs_{name}.csv", self.datasets[name].rows())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pairs": asdict(self.pairs_config), "eval_pairs": asdict(self.eval_pairs_config)}
