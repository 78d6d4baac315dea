"""CACD (Cross-Age Celebrity Dataset): age and identity from a CSV, CACD's ``.mat`` or file names."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from faceage.data.images import is_image_file
from faceage.data.readers.base import (
    FILE_COLUMNS,
    MISSING_PATH,
    READERS,
    SUBJECT_COLUMNS,
    UNPARSEABLE_NAME,
    Candidate,
    LabelError,
    check_listed_file,
    finish,
    from_file_names,
    parse_age,
    pick_column,
    read_csv_rows,
    require_dir,
    strip_image_ext,
    subject_text,
    walk_images,
)
from faceage.data.records import FaceRecord, ReadReport


def parse_cacd_name(name: str) -> dict[str, Any]:
    """Labels from a CACD file name ``53_Robin_Williams_0001.jpg`` (age 53, subject ``Robin_Williams``).

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)_(.*?[^\W\d_].*?)(?:_\d+)?", strip_image_ext(name))
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    return {"age": parse_age(match.group(1), integer=True), "subject": match.group(2)}


class _FileFinder:
    """Resolves metadata file names against a few base folders, then by base name anywhere under ``root``."""

    def __init__(self, root: Path, bases: Iterable[Path]) -> None:
        self.root = root
        self.bases = [b for b in dict.fromkeys(bases) if b.is_dir()]
        self._by_name: dict[str, Path] | None = None

    def find(self, value: str) -> Path:
        rel = Path(value.strip())
        if rel.is_absolute():
            return rel
        for base in self.bases:
            if (base / rel).exists():
                return base / rel
        if self._by_name is None:
            self._by_name = {}
            for p in walk_images(self.root):
                self._by_name.setdefault(p.name, p)
        return self._by_name.get(rel.name, (self.bases[0] if self.bases else self.root) / rel)


def _cacd_columns(header: list[str], rows: list[dict[str, str]], path: Path) -> tuple[str, str, str | None]:
    """Names the (file, age, subject) columns of a CACD CSV; ``name`` is the file column if it holds file names."""
    age_col = pick_column(header, ("age", "real_age"))
    file_col = pick_column(header, FILE_COLUMNS)
    if file_col is None and "name" in header and any(is_image_file(r.get("name", "")) for r in rows[:20]):
        file_col = "name"
    subject_col = pick_column(header, SUBJECT_COLUMNS)
    if subject_col is None and "name" in header and file_col != "name":
        subject_col = "name"
    if age_col is None or file_col is None:
        raise ValueError(f"{path}: CACD metadata needs an age column and a file column; found columns {header}")
    return file_col, age_col, subject_col


def _cacd_rows_from_csv(path: Path) -> list[tuple[str, str, str | None]]:
    header, rows = read_csv_rows(path)
    file_col, age_col, subject_col = _cacd_columns(header, rows, path)
    return [(r.get(file_col, ""), r.get(age_col, ""), r.get(subject_col) if subject_col else None) for r in rows]


def _mat_field(struct: Any, name: str) -> list:
    """One field of a loadmat struct as a flat Python list (handles record arrays and mat_struct objects)."""
    import numpy as np

    value = getattr(struct, name) if hasattr(struct, name) else struct[name]
    arr = np.asarray(value)
    if arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.item())
    return [v.item() if hasattr(v, "item") else v for v in arr.ravel()]


def _cacd_rows_from_mat(path: Path) -> list[tuple[str, str, str | None]]:
    """Rows from CACD's ``celebrity2000_meta.mat`` (``celebrityImageData``: ``age``, ``identity``, ``name``)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True)
        data = mat["celebrityImageData"]
        ages, ids, names = (_mat_field(data, f) for f in ("age", "identity", "name"))
    except (NotImplementedError, KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: cannot read CACD metadata ({e})") from None
    return [(str(n), str(a), str(i)) for n, a, i in zip(names, ages, ids)]


def _find_cacd_metadata(root: Path) -> Path | None:
    """A CSV in ``root`` (preferring names with 'cacd' or 'meta'), else ``celebrity2000_meta.mat``."""
    csvs = sorted(p for p in root.glob("*.csv") if p.is_file())
    preferred = [p for p in csvs if "cacd" in p.name.lower() or "meta" in p.name.lower()]
    if preferred or csvs:
        return (preferred or csvs)[0]
    mats = [root / "celebrity2000_meta.mat", root / "celebrity2000.mat"]
    return next((p for p in mats if p.is_file()), None)


def _cacd_candidates_from_metadata(root: Path, meta: Path, report: ReadReport) -> list[Candidate]:
    rows = _cacd_rows_from_mat(meta) if meta.suffix.lower() == ".mat" else _cacd_rows_from_csv(meta)
    finder = _FileFinder(root, [root, root / "CACD2000", meta.parent, meta.parent / "CACD2000"])
    candidates = []
    for line, (file_value, age_value, subject_value) in enumerate(rows, start=2):
        name = file_value.strip() or f"{meta.name}:{line}"
        try:
            if not file_value.strip():
                raise LabelError(MISSING_PATH)
            age = parse_age(age_value)
        except LabelError as e:
            report.skip(e.kind, name)
            continue
        path = finder.find(file_value)
        problem = check_listed_file(path)
        if problem is not None:
            report.skip(problem, name)
            continue
        subject = subject_text(subject_value)
        drops = ["missing subject"] if subject is None else []
        candidates.append(Candidate(path, name, {"age": age, "subject": subject}, drops))
    return candidates


@READERS.register("cacd")
def read_cacd(
    root: str | os.PathLike, *, check_images: bool = True, metadata: str | os.PathLike | None = None
) -> tuple[list[FaceRecord], ReadReport]:
    """Reads CACD (Cross-Age Celebrity Dataset).

    Labels come from, in order: ``metadata`` if given; a CSV in ``root`` with an age column, a file column
    (``file``/``path``/``name``...) and an identity column (``identity``/``name``...), header names matched
    case-insensitively; CACD's own ``celebrity2000_meta.mat``; otherwise the file names
    ``53_Robin_Williams_0001.jpg`` (age 53, subject ``Robin_Williams``).

    Args:
        root: folder holding the images, directly or in ``CACD2000/``.
        check_images: skip files whose image header is unusable.
        metadata: CSV or ``.mat`` metadata file.

    Returns:
        ``(records, report)``; subjects are the identity (or name) strings.

    Raises:
        ValueError: when the metadata file lacks the needed columns or cannot be read.
    """
    base = require_dir(root)
    meta = Path(metadata).expanduser() if metadata is not None else _find_cacd_metadata(base)
    if meta is None:
        return from_file_names(base, "cacd", lambda p, _: (parse_cacd_name(p.name), []), check_images)
    if not meta.is_file():
        raise FileNotFoundError(f"CACD metadata file not found: {meta}")
    report = ReadReport(source="cacd")
    candidates = _cacd_candidates_from_metadata(base, meta, report)
    return finish(candidates, report, check_images), report
