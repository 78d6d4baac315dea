"""Datasets of face pairs: index pairs over records, or a fixed pair CSV, as ``left``/``right`` image tensors."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from faceage.data.datasets import FaceDataset
from faceage.data.pair_csv import read_pair_csv
from faceage.data.pair_sampling import pair_labels
from faceage.data.records import FaceRecord


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


def pair_dataset_from_csv(
    path: str | os.PathLike, transform, records: Sequence[FaceRecord] = (), cache: bool = False
) -> PairDataset:
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
                raise ValueError(
                    f"{path}: row {row.row}: no label and no known age for {row.left if a is None else row.right}"
                )
            label = int(a > b)
        pairs.append(ids)
        labels.append(label)
    return PairDataset(
        faces, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), transform, np.asarray(labels, np.float32), cache=cache
    )
