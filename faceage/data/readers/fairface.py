"""FairFace: age *groups* (``0-2`` ... ``60-69``, ``more than 70``) and gender from ``labels.csv``."""

from __future__ import annotations

import os
from pathlib import Path

from faceage.data.readers.base import (
    FILE_COLUMNS,
    MISSING_PATH,
    READERS,
    Candidate,
    LabelError,
    check_listed_file,
    finish,
    group_labels,
    parse_age_group,
    parse_gender,
    pick_column,
    read_csv_rows,
)
from faceage.data.records import FaceRecord, ReadReport

FAIRFACE_LABELS = "labels.csv"


def _labels_path(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / FAIRFACE_LABELS).is_file():
        return root / FAIRFACE_LABELS
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    raise FileNotFoundError(f"no {FAIRFACE_LABELS} in {root}; pass the label CSV itself as root")


@READERS.register("fairface")
def read_fairface(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads FairFace (Karkkainen & Joo, WACV 2021): ``file,age_group,gender`` rows, images beside the CSV.

    Every face carries an age group, never a year: ``0-2``, ``3-9``, ``10-19``, ..., ``60-69`` and ``more than 70``
    (or ``70+``), open at the top. Records get ``age_low``/``age_high`` and the group's representative ``age``
    (:func:`~faceage.data.records.group_age`: ``70+`` -> 80). FairFace's own ``fairface_label_*.csv`` (group in an
    ``age`` column, ``file`` relative to the CSV's folder) read the same way; its seven race groups are not UTKFace's
    five, so race is left unknown. Rows with an unusable group or file are skipped and counted in the report.

    Args:
        root: folder holding ``labels.csv``, or the label CSV itself.
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.

    Raises:
        ValueError: when the CSV has no file or no age-group column.
    """
    csv_path = _labels_path(Path(root).expanduser())
    header, rows = read_csv_rows(csv_path)
    file_col = pick_column(header, FILE_COLUMNS)
    group_col = pick_column(header, ("age_group", "age"))
    gender_col = pick_column(header, ("gender", "sex"))
    if file_col is None or group_col is None:
        raise ValueError(f"{csv_path}: FairFace labels need a file and an age_group column; found columns {header}")
    report = ReadReport(source="fairface")
    candidates = []
    for line, row in enumerate(rows, start=2):
        value = row.get(file_col, "").strip()
        name = value or f"{csv_path.name}:{line}"
        try:
            if not value:
                raise LabelError(MISSING_PATH)
            labels = group_labels(*parse_age_group(row.get(group_col)))
            path = csv_path.parent / value
            problem = check_listed_file(path)
            if problem is not None:
                raise LabelError(problem)
        except LabelError as e:
            report.skip(e.kind, name)
            continue
        gender, gender_problem = parse_gender(row.get(gender_col or ""))
        candidates.append(Candidate(path, name, {**labels, "gender": gender}, [gender_problem] if gender_problem else []))
    return finish(candidates, report, check_images), report
