"""APPA-REAL: real and apparent age from ``gt_avg_<split>.csv``, gender and race from ``allcategories_<split>.csv``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from faceage.data.readers.base import (
    MISSING_PATH,
    READERS,
    Candidate,
    LabelError,
    check_listed_file,
    finish,
    parse_age,
    parse_gender,
    parse_race,
    pick_column,
    read_csv_rows,
    require_dir,
)
from faceage.data.records import FaceRecord, ReadReport

APPA_SPLITS = ("train", "valid", "test")


def _appa_base(root: Path) -> Path:
    """``root`` itself or its ``appa-real-release`` subfolder, whichever holds the ``gt_avg_*.csv`` files."""
    for base in (root, root / "appa-real-release"):
        if any((base / f"gt_avg_{s}.csv").is_file() for s in APPA_SPLITS):
            return base
    raise FileNotFoundError(f"no APPA-REAL gt_avg_{{train,valid,test}}.csv found in {root}")


def _appa_categories(base: Path, split: str) -> dict[str, tuple[str, str]]:
    """``file -> (gender, race)`` from the optional ``allcategories_<split>.csv`` (best effort)."""
    path = base / f"allcategories_{split}.csv"
    if not path.is_file():
        return {}
    try:
        header, rows = read_csv_rows(path)
    except (OSError, ValueError, csv.Error):
        return {}
    file_col = pick_column(header, ("file", "file_name"))
    if file_col is None:
        return {}
    return {r.get(file_col, "").strip(): (r.get("gender", ""), r.get("race", "")) for r in rows}


def _appa_image(folder: Path, file_name: str) -> Path:
    face = folder / f"{file_name}_face.jpg"
    return face if face.exists() else folder / file_name


def _appa_candidates(base: Path, split: str, report: ReadReport) -> list[Candidate]:
    header, rows = read_csv_rows(base / f"gt_avg_{split}.csv")
    if "file_name" not in header or "real_age" not in header:
        raise ValueError(f"{base / f'gt_avg_{split}.csv'}: needs file_name and real_age columns; found {header}")
    categories = _appa_categories(base, split)
    candidates = []
    for row in rows:
        file_name = row.get("file_name", "").strip()
        name = f"{split}/{file_name}"
        try:
            if not file_name:
                raise LabelError(MISSING_PATH)
            age = parse_age(row.get("real_age"))
        except LabelError as e:
            report.skip(e.kind, name)
            continue
        path = _appa_image(base / split, file_name)
        problem = check_listed_file(path)
        if problem is not None:
            report.skip(problem, name)
            continue
        labels, drops = _appa_labels(age, row.get("apparent_age_avg"), categories.get(file_name))
        candidates.append(Candidate(path, name, labels, drops))
    return candidates


def _appa_labels(age: float, apparent: str | None, category: tuple[str, str] | None) -> tuple[dict, list[str]]:
    drops = []
    try:
        apparent_age: float | None = parse_age(apparent)
    except LabelError:
        apparent_age = None
        drops.append("invalid apparent age")
    gender, race = None, None
    if category is not None:
        gender, problem = parse_gender(category[0])
        race, race_problem = parse_race(category[1])
        drops += [p for p in (problem, race_problem) if p]
    return {"age": age, "apparent_age": apparent_age, "gender": gender, "race": race}, drops


@READERS.register("appa_real")
def read_appa_real(
    root: str | os.PathLike, *, check_images: bool = True, split: str = "all"
) -> tuple[list[FaceRecord], ReadReport]:
    """Reads APPA-REAL: ``gt_avg_{train,valid,test}.csv`` with images in ``train/``, ``valid/``, ``test/``.

    ``age`` is ``real_age`` and ``apparent_age`` is ``apparent_age_avg``. The aligned ``000000.jpg_face.jpg``
    is used when it exists, else ``000000.jpg``. Gender and race come from ``allcategories_<split>.csv`` when
    present.

    Args:
        root: the ``appa-real-release`` folder (or its parent).
        check_images: skip files whose image header is unusable.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"all"`` (every split whose CSV exists).

    Returns:
        ``(records, report)``; subjects are ``None``.

    Raises:
        ValueError: for an unknown ``split``.
        FileNotFoundError: when the requested split's CSV is missing.
    """
    if split not in (*APPA_SPLITS, "all"):
        raise ValueError(f"split must be one of {(*APPA_SPLITS, 'all')}, got {split!r}")
    base = _appa_base(require_dir(root))
    splits = [s for s in APPA_SPLITS if (base / f"gt_avg_{s}.csv").is_file()] if split == "all" else [split]
    if not (base / f"gt_avg_{splits[0]}.csv").is_file():
        raise FileNotFoundError(f"APPA-REAL split file not found: {base / f'gt_avg_{split}.csv'}")
    report = ReadReport(source="appa_real")
    candidates = [c for s in splits for c in _appa_candidates(base, s, report)]
    return finish(candidates, report, check_images), report
