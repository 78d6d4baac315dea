"""Drawing face pairs labelled "left is older" from a list of ages, for the pairwise comparators.

A pair set is drawn from one list of records with the knobs of :class:`PairConfig`:

* ``year_diff``: only pairs whose ages differ by at least this many years (so the label is never a tie);
* ``data_size``: at most this many pairs (``<= 0``: every possible pair); drawn uniformly without building the
  ``O(n^2)`` candidate list, so 100k pairs out of 20k faces take milliseconds;
* ``duplicate_probability``: each pair is also added swapped (right, left) with this probability, so the set
  grows by that factor on average (the duplicates come on top of ``data_size``);
* ``unique_images``: every image takes part in at most one pair (``data_size`` may then not be reached);
* ``seed``: the same seed and records always give the same pairs.

Each pair's order is a fair coin, so labels are balanced; label 1 means the left face is older.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceage.data.records import FaceRecord


@dataclass
class PairConfig:
    """How a pair set is drawn from a list of records (the pair-set knobs).

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
    """Draws (left, right) index pairs over ``ages`` with the pair-set knobs (see the module docstring).

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
