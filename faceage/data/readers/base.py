"""What every dataset reader shares: the reader registry, label parsers, folder scanning and the read report.

Every reader has the same shape::

    records, report = reader(root, check_images=True, **dataset_specific_options)

and is registered in :data:`READERS` under the dataset's short name with ``@READERS.register("name")``;
:func:`read_dataset` picks one by name. Records and the report of rejected files (:class:`ReadReport`) are
defined in :mod:`faceage.data.records`.

Rules shared by all readers:

* A label that cannot be trusted is never guessed. If the age is unusable the whole record is skipped
  (``report.skip``); if only gender or race is unusable the record is kept with that field ``None``
  (``report.drop``). Either way the report counts the problem by kind and keeps a few example file names.
* With ``check_images=True`` each candidate file's header is checked (:func:`check_image_header`, no full
  decode) and unusable files are skipped with the problem as the kind, e.g. ``"empty file (0 bytes)"``.
* Files without an image extension are ignored silently when a reader scans folders; a metadata file that
  lists a missing or non-image file reports it.
* Records come back sorted by path, so the same folder always gives the same list.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceage._registry import Registry
from faceage.data.images import IMAGE_EXTENSIONS, check_image_header, is_image_file
from faceage.data.records import MAX_VALID_AGE, MIN_VALID_AGE, RACES, FaceRecord, ReadReport, drop_duplicates, group_age

Reader = Callable[..., tuple[list[FaceRecord], ReadReport]]
READERS: Registry[Reader] = Registry("dataset")

# Report kinds used by several readers (kept as constants so tests and callers can refer to them).
UNPARSEABLE_NAME = "unparseable file name"
UNPARSEABLE_AGE = "unparseable age"
MISSING_AGE = "missing age"
AGE_OUT_OF_RANGE = f"age out of range ({MIN_VALID_AGE}..{MAX_VALID_AGE})"
INVALID_GENDER = "invalid gender code"
INVALID_RACE = "invalid race code"
MISSING_RACE = "missing race field"
FILE_NOT_FOUND = "file not found"
NOT_IMAGE_EXTENSION = "not an image file (extension)"
MISSING_PATH = "missing file path"
UNPARSEABLE_AGE_GROUP = "unparseable age group"
AGE_GROUP_REVERSED = "age group with low > high"
INCOMPLETE_AGE_GROUP = "age_low or age_high missing"

# Header names that metadata CSVs use for the image file and for the identity (matched lower-cased).
FILE_COLUMNS = ("file", "path", "filename", "file_name", "image", "image_name", "image_path", "img", "img_path")
SUBJECT_COLUMNS = ("identity", "subject", "subject_id", "person", "person_id", "celebrity", "celeb_id", "id")

_GENDER_CODES = {"0": 0, "1": 1}
_GENDER_WORDS = {"m": 0, "male": 0, "man": 0, "f": 1, "female": 1, "woman": 1}
_RACE_WORDS = {name: i for i, name in enumerate(RACES)} | {
    "other": 4,
    "caucasian": 0,
    "afroamerican": 1,
    "african american": 1,
    "african-american": 1,
}
DIGITS = re.compile(r"\d+")
_NUMBER = r"(\d+(?:\.\d+)?)"
# "25-32", "25 - 32", "25–32", "(25, 32)" (Adience), "[25, 32]", "25 to 32"
_GROUP_RANGE = re.compile(rf"[(\[]?\s*{_NUMBER}\s*(?:-|–|,|to)\s*{_NUMBER}\s*[)\]]?")
# "60+", "more than 70" (FairFace's spelling of 70+), "over 70", "70 and over", "70 or older"
_GROUP_OPEN = re.compile(rf"{_NUMBER}\s*\+|(?:more than|over|above)\s+{_NUMBER}|{_NUMBER}\s+(?:and|or)\s+(?:over|more|older|above)")


class LabelError(ValueError):
    """A label source (file name, folder or metadata row) whose age cannot be used.

    Attributes:
        kind: the report category, e.g. ``"unparseable age"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


@dataclass
class Candidate:
    """A file with parsed labels, waiting for the image check; ``drops`` are reported only if it survives."""

    path: Path
    name: str
    labels: dict[str, Any]
    drops: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# Field parsers
# ----------------------------------------------------------------------------------------------------------


def is_blank(value: object) -> bool:
    """Whether a label cell is empty or a null spelling (``nan``, ``none``, ``null``, ``na``)."""
    return value is None or str(value).strip() == "" or str(value).strip().lower() in ("nan", "none", "null", "na")


def parse_age(value: object, *, integer: bool = False) -> float:
    """Parses an age in years and checks it is within ``MIN_VALID_AGE..MAX_VALID_AGE``.

    Args:
        value: text or number.
        integer: accept only a plain non-negative integer (file-name fields).

    Returns:
        The age as a float.

    Raises:
        LabelError: ``missing age``, ``unparseable age`` or ``age out of range``.
    """
    if is_blank(value):
        raise LabelError(MISSING_AGE)
    text = str(value).strip()
    if integer and not DIGITS.fullmatch(text):
        raise LabelError(UNPARSEABLE_AGE)
    try:
        age = float(text)
    except ValueError:
        raise LabelError(UNPARSEABLE_AGE) from None
    if not math.isfinite(age):
        raise LabelError(UNPARSEABLE_AGE)
    if not MIN_VALID_AGE <= age <= MAX_VALID_AGE:
        raise LabelError(AGE_OUT_OF_RANGE)
    return age


def parse_age_group(value: object) -> tuple[float, float]:
    """Parses an age group into inclusive whole-year bounds ``(low, high)``.

    Accepted spellings: ``"25-32"``, ``"(25, 32)"`` (Adience), ``"[25, 32]"``, ``"25 to 32"``, and open groups
    ``"60+"``, ``"more than 70"`` (FairFace), ``"over 70"``, ``"70 and over"``, whose ``high`` is ``MAX_VALID_AGE``.

    >>> parse_age_group("(25, 32)"), parse_age_group("more than 70")
    ((25.0, 32.0), (70.0, 120.0))

    Raises:
        LabelError: ``missing age``, ``unparseable age group``, ``age out of range`` or ``age group with low > high``.
    """
    if is_blank(value):
        raise LabelError(MISSING_AGE)
    text = str(value).strip().lower()
    if match := _GROUP_RANGE.fullmatch(text):
        low, high = float(match.group(1)), float(match.group(2))
    elif match := _GROUP_OPEN.fullmatch(text):
        low, high = float(next(g for g in match.groups() if g is not None)), float(MAX_VALID_AGE)
    else:
        raise LabelError(UNPARSEABLE_AGE_GROUP)
    if not MIN_VALID_AGE <= low <= MAX_VALID_AGE or not MIN_VALID_AGE <= high <= MAX_VALID_AGE:
        raise LabelError(AGE_OUT_OF_RANGE)
    if low > high:
        raise LabelError(AGE_GROUP_REVERSED)
    return low, high


def group_labels(low: float, high: float) -> dict[str, float]:
    """The record fields of a face labelled with the group ``[low, high]``: ``age`` (:func:`group_age`), ``age_low``,
    ``age_high``."""
    return {"age": group_age(low, high), "age_low": low, "age_high": high}


def parse_age_or_group(value: object) -> dict[str, float]:
    """An age cell that holds either a year (``"35"``) or a group (``"(25, 32)"``, ``"60+"``), as record fields.

    Returns:
        ``{"age": age}`` for a year, :func:`group_labels` for a group.

    Raises:
        LabelError: ``missing age``, ``age out of range``, or ``unparseable age`` when it is neither.
    """
    try:
        return {"age": parse_age(value)}
    except LabelError as e:
        if e.kind != UNPARSEABLE_AGE:
            raise
    try:
        return group_labels(*parse_age_group(value))
    except LabelError as e:
        raise LabelError(UNPARSEABLE_AGE if e.kind == UNPARSEABLE_AGE_GROUP else e.kind) from None


def integral_text(value: object) -> str:
    """``"1.0"`` -> ``"1"`` (CSV files written by pandas), anything else unchanged and stripped."""
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number == int(number) else text


def parse_gender(value: object, *, words: bool = True) -> tuple[int | None, str | None]:
    """Parses a gender label: ``0``/``1`` codes (0 male, 1 female), and with ``words`` male/female/m/f.

    Returns:
        ``(gender, problem)``: a blank value gives ``(None, None)``; an unknown one ``(None, "invalid gender code")``.
    """
    if is_blank(value):
        return None, None
    text = integral_text(value)
    if text in _GENDER_CODES:
        return _GENDER_CODES[text], None
    if words and text in _GENDER_WORDS:
        return _GENDER_WORDS[text], None
    return None, INVALID_GENDER


def parse_race(value: object, *, words: bool = True) -> tuple[int | None, str | None]:
    """Parses a race label: codes ``0..4`` (see ``RACES``) and with ``words`` the names in ``RACES``.

    Returns:
        ``(race, problem)`` as :func:`parse_gender`.
    """
    if is_blank(value):
        return None, None
    text = integral_text(value)
    if text in ("0", "1", "2", "3", "4"):
        return int(text), None
    if words and text in _RACE_WORDS:
        return _RACE_WORDS[text], None
    return None, INVALID_RACE


def subject_text(value: object) -> str | None:
    """Normalises an identity value (``"12.0"`` -> ``"12"``); blank gives ``None``."""
    if is_blank(value):
        return None
    text = str(value).strip()
    integral = integral_text(text)
    return integral if DIGITS.fullmatch(integral) else text


def strip_image_ext(name: str) -> str:
    """``name`` without its image extension (``"1_0_0.jpg"`` -> ``"1_0_0"``), unchanged when it has none."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


# ----------------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------------


def require_dir(root: str | os.PathLike) -> Path:
    """``root`` as a path; raises ``FileNotFoundError``/``NotADirectoryError`` naming it when it is no folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset root not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset root is not a folder: {path}")
    return path


def walk_images(root: Path) -> Iterator[Path]:
    """Every file (dangling links included) under ``root`` with an image extension, in sorted order."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if is_image_file(name):
                yield Path(folder) / name


def display_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` for reports (the full path when it lies outside)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def finish(candidates: Iterable[Candidate], report: ReadReport, check_images: bool) -> list[FaceRecord]:
    """Checks image headers, reports the survivors' dropped fields, builds sorted records."""
    records = []
    for cand in candidates:
        if check_images:
            problem = check_image_header(cand.path)
            if problem is not None:
                report.skip(problem, cand.name)
                continue
        for kind in cand.drops:
            report.drop(kind, cand.name)
        records.append(FaceRecord(path=str(cand.path), **cand.labels))
    records.sort(key=lambda r: r.path)
    report.n_ok = len(records)
    return records


def from_file_names(
    root: str | os.PathLike,
    source: str,
    label: Callable[[Path, Path], tuple[dict[str, Any], list[str]]],
    check_images: bool,
) -> tuple[list[FaceRecord], ReadReport]:
    """Runs ``label(path, root)`` on every image under ``root``; a :class:`LabelError` skips the file."""
    base = require_dir(root)
    report = ReadReport(source=source)
    candidates = []
    for path in walk_images(base):
        name = display_name(path, base)
        try:
            labels, drops = label(path, base)
        except LabelError as e:
            report.skip(e.kind, name)
            continue
        candidates.append(Candidate(path, name, labels, drops))
    return finish(candidates, report, check_images), report


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Reads a CSV (comma, semicolon or tab) with a header; keys are lower-cased, stripped header names."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        raise ValueError(f"{path}: empty CSV file")
    header = [h.strip().lower() for h in rows[0]]
    return header, [dict(zip(header, row)) for row in rows[1:] if any(cell.strip() for cell in row)]


def pick_column(header: list[str], names: Iterable[str]) -> str | None:
    """The first of ``names`` present in ``header``, or ``None``."""
    return next((n for n in names if n in header), None)


def check_listed_file(path: Path) -> str | None:
    """Problem with a file named by metadata (before any header check), or ``None``."""
    if not path.exists():
        return "dangling symbolic link" if path.is_symlink() else FILE_NOT_FOUND
    if path.is_dir():
        return "is a directory, not an image"
    if not is_image_file(path):
        return NOT_IMAGE_EXTENSION
    return None


# ----------------------------------------------------------------------------------------------------------
# Choosing a reader by name
# ----------------------------------------------------------------------------------------------------------


def read_dataset(name: str, root: str | os.PathLike, **kwargs: Any) -> tuple[list[FaceRecord], ReadReport]:
    """Reads a dataset with the reader registered as ``name`` (see ``READERS.names()``).

    Args:
        name: reader name, e.g. ``"utkface"``.
        root: dataset folder (or CSV file for ``"csv"``).
        **kwargs: reader options, e.g. ``check_images=False``, ``split="train"`` (APPA-REAL),
            ``metadata=...`` (CACD).

    Returns:
        ``(records, report)`` with ``report.source`` set to ``name``.

    Raises:
        KeyError: for an unknown reader name, listing the valid ones.
    """
    records, report = READERS.get(name)(root, **kwargs)
    records = drop_duplicates(records, report)
    report.source = name
    return records, report
