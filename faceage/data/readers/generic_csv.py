"""Any dataset listed in a CSV ``path,age[,gender,race,subject,apparent_age]``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from faceage.data.readers.base import (
    FILE_COLUMNS,
    MISSING_PATH,
    READERS,
    SUBJECT_COLUMNS,
    Candidate,
    LabelError,
    check_listed_file,
    finish,
    is_blank,
    parse_age,
    parse_gender,
    parse_race,
    pick_column,
    read_csv_rows,
    subject_text,
)
from faceage.data.records import FaceRecord, ReadReport


def _generic_csv_path(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    raise FileNotFoundError(f"no labels.csv in {root}; pass the CSV file itself as root")


def _csv_candidate(row: dict[str, str], cols: dict[str, str | None], folder: Path, name: str) -> Candidate:
    """One generic-CSV row as a candidate; raises :class:`LabelError` when the row must be skipped."""
    age = parse_age(row.get(cols["age"] or ""))
    path = Path(row.get(cols["path"] or "", "").strip()).expanduser()
    path = path if path.is_absolute() else folder / path
    problem = check_listed_file(path)
    if problem is not None:
        raise LabelError(problem)
    gender, gender_problem = parse_gender(row.get(cols["gender"] or ""))
    race, race_problem = parse_race(row.get(cols["race"] or ""))
    labels: dict[str, Any] = {"age": age, "gender": gender, "race": race}
    labels["subject"] = subject_text(row.get(cols["subject"] or ""))
    drops = [p for p in (gender_problem, race_problem) if p]
    if cols["apparent_age"] and not is_blank(row.get(cols["apparent_age"])):
        try:
            labels["apparent_age"] = parse_age(row.get(cols["apparent_age"]))
        except LabelError:
            drops.append("invalid apparent age")
    return Candidate(path, name, labels, drops)


@READERS.register("csv")
def read_csv_labels(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads a generic CSV ``path,age[,gender,race,subject,apparent_age]`` with a header row.

    Paths are relative to the CSV's folder (absolute paths are used as they are). Gender may be ``0``/``1``
    or male/female/m/f; race ``0..4`` or a name from ``RACES``. Header names are matched case-insensitively
    (``file``/``filename``/``image`` also name the path column).

    Args:
        root: the CSV file, or a folder holding ``labels.csv``.
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.

    Raises:
        ValueError: when the CSV has no path or no age column.
    """
    csv_path = _generic_csv_path(Path(root).expanduser())
    header, rows = read_csv_rows(csv_path)
    cols = {
        "path": pick_column(header, ("path", *FILE_COLUMNS)),
        "age": pick_column(header, ("age", "real_age")),
        "gender": pick_column(header, ("gender", "sex")),
        "race": pick_column(header, ("race", "ethnicity")),
        "subject": pick_column(header, ("subject", *SUBJECT_COLUMNS)),
        "apparent_age": pick_column(header, ("apparent_age",)),
    }
    if cols["path"] is None or cols["age"] is None:
        raise ValueError(f"{csv_path}: needs a path and an age column; found columns {header}")
    report = ReadReport(source="csv")
    candidates = []
    for line, row in enumerate(rows, start=2):
        value = row.get(cols["path"], "").strip()
        name = value or f"{csv_path.name}:{line}"
        try:
            if not value:
                raise LabelError(MISSING_PATH)
            candidates.append(_csv_candidate(row, cols, csv_path.parent, name))
        except LabelError as e:
            report.skip(e.kind, name)
    return finish(candidates, report, check_images), report
