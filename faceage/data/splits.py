"""Reproducible train/val/test splits and cross-validation folds over a list of :class:`FaceRecord`.

All functions return *indices* into the record list. Splits are

* **stratified by age**: records are binned by age (5-year bins, sparse bins merged into neighbours) and each
  bin is divided in the requested proportions, so every split sees the whole age range;
* **subject-exclusive** where the data has identities (FG-NET, CACD, ...): all images of one person land in
  the same split, otherwise a model is tested on faces it has already seen. Whole subjects are assigned,
  stratified by the subject's mean age, so the fractions hold in records only approximately;
* **deterministic**: a seeded ``numpy.random.Generator`` drives every random choice.

:func:`save_split` stores a split with the file paths, and :func:`load_split` maps it back onto a freshly read
record list by path, so a changed dataset folder is detected instead of silently shifting indices.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceage._io import write_text_atomic
from faceage.data.records import FaceRecord

SPLIT_NAMES = ("train", "val", "test")
AGE_BIN_WIDTH = 5  # years
_UNKNOWN_AGE_BIN = 10**6  # stratum for units without any age
SPLIT_FORMAT = "faceage-split"


# ----------------------------------------------------------------------------------------------------------
# Units (records or subjects) and age strata
# ----------------------------------------------------------------------------------------------------------


def _use_subjects(records: Sequence[FaceRecord], setting: bool | str) -> bool:
    if setting == "auto":
        return any(r.subject is not None for r in records)
    if not isinstance(setting, bool):
        raise ValueError(f"subject grouping must be True, False or 'auto', got {setting!r}")
    return setting


def _units(records: Sequence[FaceRecord], by_subject: bool) -> list[list[int]]:
    """Groups record indices into units that must stay together: one per subject, or one per record.

    Records without a subject are units of their own. Units are ordered deterministically (by first index).
    """
    if not by_subject:
        return [[i] for i in range(len(records))]
    groups: dict[str, list[int]] = {}
    units: list[list[int]] = []
    for i, rec in enumerate(records):
        if rec.subject is None:
            units.append([i])
        elif rec.subject in groups:
            groups[rec.subject].append(i)
        else:
            groups[rec.subject] = [i]
            units.append(groups[rec.subject])
    return units


def _unit_age(records: Sequence[FaceRecord], unit: list[int]) -> float:
    ages = [records[i].age for i in unit if records[i].age is not None]
    return float(np.mean(ages)) if ages else math.nan


def _strata(records: Sequence[FaceRecord], units: list[list[int]], min_size: int, stratify: bool) -> list[list[int]]:
    """Unit indices per age stratum: ``AGE_BIN_WIDTH``-year bins, each merged with the next until it holds at
    least ``min_size`` records (a short last bin joins the one before). Units without an age form their own
    stratum."""
    if not stratify:
        return [list(range(len(units)))]
    bins: dict[int, list[int]] = defaultdict(list)
    for u, unit in enumerate(units):
        age = _unit_age(records, unit)
        bins[_UNKNOWN_AGE_BIN if math.isnan(age) else int(age // AGE_BIN_WIDTH)].append(u)
    unknown = bins.pop(_UNKNOWN_AGE_BIN, None)
    strata: list[list[int]] = []
    current: list[int] = []
    for key in sorted(bins):
        current += bins[key]
        if sum(len(units[u]) for u in current) >= min_size:
            strata.append(current)
            current = []
    if current:
        if strata:
            strata[-1] += current
        else:
            strata.append(current)
    if unknown:
        strata.append(unknown)
    return strata


def _min_stratum_size(fractions: Sequence[float]) -> int:
    """Records a stratum needs so that the smallest non-zero fraction gets about one record from it."""
    smallest = min((f for f in fractions if f > 0), default=1.0)
    return max(2, math.ceil(1.0 / smallest))


# ----------------------------------------------------------------------------------------------------------
# Train / val / test
# ----------------------------------------------------------------------------------------------------------


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")


def _assign(
    units: list[list[int]], strata: list[list[int]], fractions: Sequence[float], rng: np.random.Generator
) -> list[int]:
    """Assigns every unit to a split; returns the split number per unit.

    Each stratum is shuffled and its units given one by one to the split furthest below its target record
    count. Targets accumulate across strata (so rounding errors do not add up) and splits with fraction 0
    receive nothing.
    """
    n_splits = len(fractions)
    assigned = [0] * n_splits  # records given so far, over all strata
    expected = [0.0] * n_splits  # records each split should have had so far
    open_splits = [s for s in range(n_splits) if fractions[s] > 0]
    choice = [0] * len(units)
    for stratum in strata:
        size = sum(len(units[u]) for u in stratum)
        expected = [e + size * f for e, f in zip(expected, fractions)]
        current = list(assigned)
        for u in rng.permutation(np.asarray(stratum, dtype=np.int64)).tolist():
            split = max(open_splits, key=lambda s: (round(expected[s]) - current[s], -s))
            choice[u] = split
            current[split] += len(units[u])
        assigned = current
    return choice


def split_records(
    records: Sequence[FaceRecord],
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    stratify: bool = True,
    subject_exclusive: bool | str = "auto",
) -> dict[str, list[int]]:
    """Splits records into train, val and test, stratified by age and optionally subject-exclusive.

    Args:
        records: the records to split.
        val_fraction: share of records for validation (may be 0).
        test_fraction: share of records for testing (may be 0).
        seed: seed of the ``numpy`` generator; the same seed always gives the same split.
        stratify: keep each split's age distribution close to the whole's.
        subject_exclusive: keep each subject's records in one split; ``"auto"`` does so when any record has a
            subject. Records without a subject are their own group.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted index lists, disjoint and together complete.

    Raises:
        ValueError: for fractions outside ``[0, 1)`` or summing to 1 or more.
    """
    _check_fractions(val_fraction, test_fraction)
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    units = _units(records, _use_subjects(records, subject_exclusive))
    strata = _strata(records, units, _min_stratum_size(fractions), stratify)
    choice = _assign(units, strata, fractions, np.random.default_rng(seed))
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for unit, s in zip(units, choice):
        split[SPLIT_NAMES[s]] += unit
    return {name: sorted(idx) for name, idx in split.items()}


# ----------------------------------------------------------------------------------------------------------
# Cross-validation
# ----------------------------------------------------------------------------------------------------------


def kfold_records(
    records: Sequence[FaceRecord], n_folds: int = 5, seed: int = 0, by_subject: bool | str = "auto"
) -> list[list[int]]:
    """Age-stratified k-fold partition; subject-grouped (each subject in one fold) when subjects exist.

    Args:
        records: the records to partition.
        n_folds: number of folds, at least 2.
        seed: seed of the ``numpy`` generator.
        by_subject: keep each subject in one fold; ``"auto"`` does so when any record has a subject.

    Returns:
        ``n_folds`` sorted index lists; every index is in exactly one fold.

    Raises:
        ValueError: for ``n_folds < 2`` or more folds than there are records (or subjects).
    """
    units = _units(records, _use_subjects(records, by_subject))
    if n_folds < 2 or n_folds > len(units):
        raise ValueError(f"n_folds must be between 2 and the number of groups ({len(units)}), got {n_folds}")
    rng = np.random.default_rng(seed)
    strata = _strata(records, units, n_folds, stratify=True)
    tie_order = rng.permutation(n_folds).tolist()
    sizes = [0] * n_folds
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for stratum in strata:
        for u in rng.permutation(np.asarray(stratum, dtype=np.int64)).tolist():
            fold = min(tie_order, key=lambda f: sizes[f])  # smallest fold; ties in a seeded order
            folds[fold] += units[u]
            sizes[fold] += len(units[u])
            tie_order.append(tie_order.pop(tie_order.index(fold)))  # rotate, so ties spread round-robin
    return [sorted(f) for f in folds]


def leave_one_subject_out(records: Sequence[FaceRecord]) -> list[list[int]]:
    """One fold per subject (sorted by subject id), the usual protocol on FG-NET.

    Raises:
        ValueError: when some record has no subject.
    """
    missing = [r.path for r in records if r.subject is None]
    if missing:
        raise ValueError(
            f"leave-one-subject-out needs a subject for every record; {len(missing)} have none, e.g. {missing[:3]}"
        )
    folds: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        folds[rec.subject].append(i)  # type: ignore[index]
    return [folds[s] for s in sorted(folds)]


def fold_split(
    records: Sequence[FaceRecord], folds: Sequence[Sequence[int]], fold: int, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[int]]:
    """Train/val/test for one cross-validation round: test is ``folds[fold]``, train and val come from the rest.

    The rest is divided with :func:`split_records` (stratified, subject-exclusive when subjects exist).

    Args:
        records: the records the folds index into.
        folds: output of :func:`kfold_records` or :func:`leave_one_subject_out`.
        fold: which fold is the test set, ``0 <= fold < len(folds)``.
        val_fraction: share of the remaining records used for validation.
        seed: seed for the train/val division.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted index lists.
    """
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold must be in [0, {len(folds)}), got {fold}")
    test = sorted(folds[fold])
    test_set = set(test)
    rest = [i for i in range(len(records)) if i not in test_set]
    inner = split_records([records[i] for i in rest], val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    return {"train": [rest[i] for i in inner["train"]], "val": [rest[i] for i in inner["val"]], "test": test}


# ----------------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------------


def _common_root(paths: Sequence[str]) -> str:
    if not paths:
        return ""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath(absolute)
    return os.path.dirname(root) if len(set(absolute)) == 1 else root


def _relative(paths: Sequence[str], root: str) -> list[str]:
    return [Path(os.path.relpath(os.path.abspath(p), root)).as_posix() for p in paths]


def _path_index(paths: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, p in enumerate(paths):
        if p in index:
            raise ValueError(f"the same file appears twice in the records: {p}")
        index[p] = i
    return index


def save_split(split: dict[str, Sequence[int]], path: str | os.PathLike, records: Sequence[FaceRecord]) -> None:
    """Writes a split as JSON: per split name its indices and its files' paths (relative to the records' common
    folder, which is stored too), so :func:`load_split` can detect a changed or moved dataset.

    Args:
        split: e.g. the output of :func:`split_records`; any split names are allowed.
        path: JSON file to write.
        records: the records the indices refer to.
    """
    paths = [r.path for r in records]
    _path_index(paths)
    root = _common_root(paths)
    rel = _relative(paths, root) if paths else []
    data = {
        "format": SPLIT_FORMAT,
        "version": 1,
        "root": root,
        "n_records": len(records),
        "splits": {
            name: {"indices": [int(i) for i in idx], "paths": [rel[int(i)] for i in idx]} for name, idx in split.items()
        },
    }
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")  # another DDP rank may be reading it


def load_split(path: str | os.PathLike, records: Sequence[FaceRecord]) -> dict[str, list[int]]:
    """Reads a split written by :func:`save_split` and maps it onto ``records`` by file path.

    Paths are matched relative to the records' common folder, so a dataset moved as a whole still matches.
    Records that the saved split does not mention are left out (with a warning).

    Args:
        path: JSON file written by :func:`save_split`.
        records: the current records (any order).

    Returns:
        ``{split name: sorted indices into records}``.

    Raises:
        ValueError: when the file is not a saved split or a saved path is not among ``records`` (the message
            names the first missing paths).
    """
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a faceage split file (invalid JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path}: not a faceage split file")
    current = [r.path for r in records]
    by_rel = _path_index(_relative(current, _common_root(current))) if current else {}
    by_abs = _path_index([os.path.abspath(p) for p in current])
    result: dict[str, list[int]] = {}
    missing: list[str] = []
    for name, entry in data["splits"].items():
        indices = []
        for rel in entry["paths"]:
            full = os.path.abspath(os.path.join(data["root"], rel))
            i = by_abs.get(full, by_rel.get(rel))
            if i is None:
                missing.append(rel)
            else:
                indices.append(i)
        result[name] = sorted(indices)
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} file(s) of the saved split are not in the records (dataset changed?), "
            f"e.g. {missing[:5]}"
        )
    n_unused = len(records) - len({i for idx in result.values() for i in idx})
    if n_unused:
        warnings.warn(f"{path}: {n_unused} record(s) are in no split of the saved split file", stacklevel=2)
    return result
