"""Any dataset listed in a CSV ``path,age[,gender,race,subject,apparent_age]``, the age as a year or an age group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from faceage.data.readers.base import (
    AGE_GROUP_REVERSED,
    FILE_COLUMNS,
    INCOMPLETE_AGE_GROUP,
    MISSING_PATH,
    READERS,
    SUBJECT_COLUMNS,
    Candidate,
    LabelError,
    check_listed_file,
    finish,
    group_labels,
    is_blank,
    parse_age,
    parse_age_group,
    parse_age_or_group,
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


AGE_GROUP_COLUMNS = ("age_group", "age_range", "age_bin")


def _age_fields(row: dict[str, str], cols: dict[str, str | None]) -> dict[str, float]:
    """A row's age fields from the first non-blank of: ``age_low`` + ``age_high``, the age-group column, ``age``."""
    low, high = row.get(cols["age_low"] or ""), row.get(cols["age_high"] or "")
    if not (is_blank(low) and is_blank(high)):
        if is_blank(low) or is_blank(high):
            raise LabelError(INCOMPLETE_AGE_GROUP)
        low_age, high_age = parse_age(low), parse_age(high)
        if low_age > high_age:
            raise LabelError(AGE_GROUP_REVERSED)
        return group_labels(low_age, high_age)
    if not is_blank(row.get(cols["age_group"] or "")):
        return group_labels(*parse_age_group(row[cols["age_group"]]))
    return parse_age_or_group(row.get(cols["age"] or ""))


def _csv_candidate(row: dict[str, str], cols: dict[str, str | None], folder: Path, name: str) -> Candidate:
    """One generic-CSV row as a candidate; raises :class:`LabelError` when the row must be skipped."""
    age_fields = _age_fields(row, cols)
    path = Path(row.get(cols["path"] or "", "").strip()).expanduser()
    path = path if path.is_absolute() else folder / path
    problem = check_listed_file(path)
    if problem is not None:
        raise LabelError(problem)
    gender, gender_problem = parse_gender(row.get(cols["gender"] or ""))
    race, race_problem = parse_race(row.get(cols["race"] or ""))
    labels: dict[str, Any] = {**age_fields, "gender": gender, "race": race}
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

    The age of a row is an exact year, or an age group (see :class:`~faceage.data.records.FaceRecord`): the first
    non-blank of ``age_low`` + ``age_high`` (inclusive years), an ``age_group`` (or ``age_range``/``age_bin``) cell
    such as ``25-32``, ``(25, 32)`` or ``60+``, and ``age`` (a year, or a group written the same ways, as Adience's
    files do). A row whose age is unusable is skipped and counted in the report by problem.

    Paths are relative to the CSV's folder (absolute paths are used as they are). Gender may be ``0``/``1``
    or male/female/m/f; race ``0..4`` or a name from ``RACES``. Header names are matched case-insensitively
    (``file``/``filename``/``image`` also name the path column).

    Args:
        root: the CSV file, or a folder holding ``labels.csv``.
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.

    Raises:
        ValueError: when the CSV has no path column, or none of ``age``, an age-group column, ``age_low`` + ``age_high``.
    """
    csv_path = _generic_csv_path(Path(root).expanduser())
    header, rows = read_csv_rows(csv_path)
    cols = {
        "path": pick_column(header, ("path", *FILE_COLUMNS)),
        "age": pick_column(header, ("age", "real_age")),
        "age_group": pick_column(header, AGE_GROUP_COLUMNS),
        "age_low": pick_column(header, ("age_low",)),
        "age_high": pick_column(header, ("age_high",)),
        "gender": pick_column(header, ("gender", "sex")),
        "race": pick_column(header, ("race", "ethnicity")),
        "subject": pick_column(header, ("subject", *SUBJECT_COLUMNS)),
        "apparent_age": pick_column(header, ("apparent_age",)),
    }
    has_bounds = cols["age_low"] is not None and cols["age_high"] is not None
    if cols["path"] is None or (cols["age"] is None and cols["age_group"] is None and not has_bounds):
        raise ValueError(f"{csv_path}: needs a path column and an age column (age, age_group, or age_low and age_high); "
                         f"found columns {header}")
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
