"""Dataset readers: each turns one public face-age dataset's on-disk layout into :class:`FaceRecord` objects.

Every reader has the same shape::

    records, report = reader(root, check_images=True, **dataset_specific_options)

and is registered in :data:`READERS` under the dataset's short name (``utkface``, ``afad``, ``cacd``,
``appa_real``, ``fgnet``, ``aaf``, ``csv``). :func:`read_dataset` picks one by name.

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
from faceage.data.records import MAX_VALID_AGE, MIN_VALID_AGE, RACES, FaceRecord, ReadReport, drop_duplicates

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

_GENDER_CODES = {"0": 0, "1": 1}
_GENDER_WORDS = {"m": 0, "male": 0, "man": 0, "f": 1, "female": 1, "woman": 1}
_RACE_WORDS = {name: i for i, name in enumerate(RACES)} | {
    "other": 4,
    "caucasian": 0,
    "afroamerican": 1,
    "african american": 1,
    "african-american": 1,
}
_DIGITS = re.compile(r"\d+")
_UTK_DATETIME = re.compile(r"\d{8,}")  # UTKFace's last field, yyyymmddHHMMSSfff


class LabelError(ValueError):
    """A label source (file name, folder or metadata row) whose age cannot be used.

    Attributes:
        kind: the report category, e.g. ``"unparseable age"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


@dataclass
class _Candidate:
    """A file with parsed labels, waiting for the image check; ``drops`` are reported only if it survives."""

    path: Path
    name: str
    labels: dict[str, Any]
    drops: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# Field parsers
# ----------------------------------------------------------------------------------------------------------


def _is_blank(value: object) -> bool:
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
    if _is_blank(value):
        raise LabelError(MISSING_AGE)
    text = str(value).strip()
    if integer and not _DIGITS.fullmatch(text):
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


def _integral_text(value: object) -> str:
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
    if _is_blank(value):
        return None, None
    text = _integral_text(value)
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
    if _is_blank(value):
        return None, None
    text = _integral_text(value)
    if text in ("0", "1", "2", "3", "4"):
        return int(text), None
    if words and text in _RACE_WORDS:
        return _RACE_WORDS[text], None
    return None, INVALID_RACE


def _subject_text(value: object) -> str | None:
    """Normalises an identity value (``"12.0"`` -> ``"12"``); blank gives ``None``."""
    if _is_blank(value):
        return None
    text = str(value).strip()
    integral = _integral_text(text)
    return integral if _DIGITS.fullmatch(integral) else text


def _strip_image_ext(name: str) -> str:
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


# ----------------------------------------------------------------------------------------------------------
# File-name parsers (public so that callers and tests can label single files)
# ----------------------------------------------------------------------------------------------------------


def parse_utkface_name(name: str) -> tuple[dict[str, Any], list[str]]:
    """Labels from a UTKFace file name ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` (or ``...jpg``).

    A three-field name whose last field is a datetime lacks the race: age and gender are kept, race is ``None``.

    Returns:
        ``(labels, dropped_kinds)`` with labels ``age``, ``gender``, ``race``.

    Raises:
        LabelError: when the name has no usable age.
    """
    stem = _strip_image_ext(name)
    if stem.lower().endswith(".chip"):
        stem = _strip_image_ext(stem[: -len(".chip")])
    fields = stem.split("_")
    drops: list[str] = []
    if len(fields) == 4 or (len(fields) == 3 and not _UTK_DATETIME.fullmatch(fields[2])):
        age_text, gender_text, race_text = fields[:3]
    elif len(fields) == 3:
        age_text, gender_text, race_text = fields[0], fields[1], None
        drops.append(MISSING_RACE)
    else:
        raise LabelError(UNPARSEABLE_NAME)
    age = parse_age(age_text, integer=True)
    gender, _ = parse_gender(gender_text, words=False)
    if gender is None:  # a blank field is as untrustworthy as a bad code here
        drops.append(INVALID_GENDER)
    race = None
    if race_text is not None:
        race, _ = parse_race(race_text, words=False)
        if race is None:
            drops.append(INVALID_RACE)
    return {"age": age, "gender": gender, "race": race}, drops


def parse_fgnet_name(name: str) -> dict[str, Any]:
    """Labels from an FG-NET file name ``001A02.JPG`` (subject 001, age 2), also ``078A11a.JPG``.

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)a(\d+)[a-z]?", _strip_image_ext(name), flags=re.IGNORECASE)
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    return {"age": parse_age(match.group(2), integer=True), "subject": match.group(1)}


AAF_LAST_FEMALE, AAF_LAST_MALE = 7380, 13321  # All-Age-Faces numbers females 00000-07380, males 07381-13321


def parse_aaf_name(name: str) -> tuple[dict[str, Any], list[str]]:
    """Labels from an All-Age-Faces file name ``00000A02.jpg`` (person 00000, age 2).

    The gender comes from the person number: ``<= 7380`` female, ``7381..13321`` male, otherwise unknown.

    Returns:
        ``(labels, dropped_kinds)`` with labels ``age`` and ``gender``.

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)a(\d+)", _strip_image_ext(name), flags=re.IGNORECASE)
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    age = parse_age(match.group(2), integer=True)
    number = int(match.group(1))
    if number <= AAF_LAST_FEMALE:
        return {"age": age, "gender": 1}, []
    if number <= AAF_LAST_MALE:
        return {"age": age, "gender": 0}, []
    return {"age": age, "gender": None}, ["person number outside AAF's gender ranges"]


def parse_cacd_name(name: str) -> dict[str, Any]:
    """Labels from a CACD file name ``53_Robin_Williams_0001.jpg`` (age 53, subject ``Robin_Williams``).

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)_(.*?[^\W\d_].*?)(?:_\d+)?", _strip_image_ext(name))
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    return {"age": parse_age(match.group(1), integer=True), "subject": match.group(2)}


# ----------------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------------


def _require_dir(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset root not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset root is not a folder: {path}")
    return path


def _walk_images(root: Path) -> Iterator[Path]:
    """Every file (dangling links included) under ``root`` with an image extension, in sorted order."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if is_image_file(name):
                yield Path(folder) / name


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _finish(candidates: Iterable[_Candidate], report: ReadReport, check_images: bool) -> list[FaceRecord]:
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


def _from_file_names(
    root: str | os.PathLike,
    source: str,
    label: Callable[[Path, Path], tuple[dict[str, Any], list[str]]],
    check_images: bool,
) -> tuple[list[FaceRecord], ReadReport]:
    """Runs ``label(path, root)`` on every image under ``root``; a :class:`LabelError` skips the file."""
    base = _require_dir(root)
    report = ReadReport(source=source)
    candidates = []
    for path in _walk_images(base):
        name = _display_name(path, base)
        try:
            labels, drops = label(path, base)
        except LabelError as e:
            report.skip(e.kind, name)
            continue
        candidates.append(_Candidate(path, name, labels, drops))
    return _finish(candidates, report, check_images), report


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
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


def _pick_column(header: list[str], names: Iterable[str]) -> str | None:
    return next((n for n in names if n in header), None)


def _check_listed_file(path: Path) -> str | None:
    """Problem with a file named by metadata (before any header check), or ``None``."""
    if not path.exists():
        return "dangling symbolic link" if path.is_symlink() else FILE_NOT_FOUND
    if path.is_dir():
        return "is a directory, not an image"
    if not is_image_file(path):
        return NOT_IMAGE_EXTENSION
    return None


# ----------------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------------


@READERS.register("utkface")
def read_utkface(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads UTKFace: labels from file names ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` anywhere under ``root``.

    Gender 0 male, 1 female; race 0..4 (see ``RACES``). UTKFace has no subject ids.

    Args:
        root: folder holding the images (searched recursively).
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.
    """
    return _from_file_names(root, "utkface", lambda p, _: parse_utkface_name(p.name), check_images)


AFAD_GENDER_FOLDERS = {"111": 0, "112": 1}


def _afad_labels(path: Path, root: Path) -> tuple[dict[str, Any], list[str]]:
    gender_dir, age_dir = path.parent.name, path.parent.parent.name
    if not (_DIGITS.fullmatch(gender_dir) and _DIGITS.fullmatch(age_dir)):
        raise LabelError("unexpected folder layout (want AGE/111|112/image)")
    age = parse_age(age_dir, integer=True)
    if gender_dir in AFAD_GENDER_FOLDERS:
        return {"age": age, "gender": AFAD_GENDER_FOLDERS[gender_dir]}, []
    return {"age": age, "gender": None}, ["invalid gender folder (want 111 or 112)"]


@READERS.register("afad")
def read_afad(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads AFAD: images in ``ROOT/AGE/GENDER/`` folders, gender folder ``111`` male, ``112`` female.

    Args:
        root: the AFAD-Full or AFAD-Lite folder (searched recursively).
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``; subjects are ``None`` (AFAD has no identities).
    """
    return _from_file_names(root, "afad", _afad_labels, check_images)


@READERS.register("fgnet")
def read_fgnet(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads FG-NET: ``001A02.JPG`` is subject ``"001"`` at age 2 (``078A11a.JPG`` variants too).

    Args:
        root: the FG-NET ``images`` folder (searched recursively; ``.pts`` landmark files are ignored).
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.
    """
    return _from_file_names(root, "fgnet", lambda p, _: (parse_fgnet_name(p.name), []), check_images)


@READERS.register("aaf")
def read_aaf(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads All-Age-Faces: ``00000A02.jpg`` is age 2; gender from the person number (see :func:`parse_aaf_name`).

    AAF ships the same names twice (original images and aligned faces): point ``root`` at one of the two folders.

    Args:
        root: folder holding the images (searched recursively).
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``; subjects are ``None``.
    """
    return _from_file_names(root, "aaf", lambda p, _: parse_aaf_name(p.name), check_images)


# --- CACD -------------------------------------------------------------------------------------------------

_FILE_COLUMNS = ("file", "path", "filename", "file_name", "image", "image_name", "image_path", "img", "img_path")
_SUBJECT_COLUMNS = ("identity", "subject", "subject_id", "person", "person_id", "celebrity", "celeb_id", "id")


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
            for p in _walk_images(self.root):
                self._by_name.setdefault(p.name, p)
        return self._by_name.get(rel.name, (self.bases[0] if self.bases else self.root) / rel)


def _cacd_columns(header: list[str], rows: list[dict[str, str]], path: Path) -> tuple[str, str, str | None]:
    """Names the (file, age, subject) columns of a CACD CSV; ``name`` is the file column if it holds file names."""
    age_col = _pick_column(header, ("age", "real_age"))
    file_col = _pick_column(header, _FILE_COLUMNS)
    if file_col is None and "name" in header and any(is_image_file(r.get("name", "")) for r in rows[:20]):
        file_col = "name"
    subject_col = _pick_column(header, _SUBJECT_COLUMNS)
    if subject_col is None and "name" in header and file_col != "name":
        subject_col = "name"
    if age_col is None or file_col is None:
        raise ValueError(f"{path}: CACD metadata needs an age column and a file column; found columns {header}")
    return file_col, age_col, subject_col


def _cacd_rows_from_csv(path: Path) -> list[tuple[str, str, str | None]]:
    header, rows = _read_csv(path)
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


def _cacd_candidates_from_metadata(root: Path, meta: Path, report: ReadReport) -> list[_Candidate]:
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
        problem = _check_listed_file(path)
        if problem is not None:
            report.skip(problem, name)
            continue
        subject = _subject_text(subject_value)
        drops = ["missing subject"] if subject is None else []
        candidates.append(_Candidate(path, name, {"age": age, "subject": subject}, drops))
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
    base = _require_dir(root)
    meta = Path(metadata).expanduser() if metadata is not None else _find_cacd_metadata(base)
    if meta is None:
        return _from_file_names(base, "cacd", lambda p, _: (parse_cacd_name(p.name), []), check_images)
    if not meta.is_file():
        raise FileNotFoundError(f"CACD metadata file not found: {meta}")
    report = ReadReport(source="cacd")
    candidates = _cacd_candidates_from_metadata(base, meta, report)
    return _finish(candidates, report, check_images), report


# --- APPA-REAL --------------------------------------------------------------------------------------------

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
        header, rows = _read_csv(path)
    except (OSError, ValueError, csv.Error):
        return {}
    file_col = _pick_column(header, ("file", "file_name"))
    if file_col is None:
        return {}
    return {r.get(file_col, "").strip(): (r.get("gender", ""), r.get("race", "")) for r in rows}


def _appa_image(folder: Path, file_name: str) -> Path:
    face = folder / f"{file_name}_face.jpg"
    return face if face.exists() else folder / file_name


def _appa_candidates(base: Path, split: str, report: ReadReport) -> list[_Candidate]:
    header, rows = _read_csv(base / f"gt_avg_{split}.csv")
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
        problem = _check_listed_file(path)
        if problem is not None:
            report.skip(problem, name)
            continue
        labels, drops = _appa_labels(age, row.get("apparent_age_avg"), categories.get(file_name))
        candidates.append(_Candidate(path, name, labels, drops))
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
    base = _appa_base(_require_dir(root))
    splits = [s for s in APPA_SPLITS if (base / f"gt_avg_{s}.csv").is_file()] if split == "all" else [split]
    if not (base / f"gt_avg_{splits[0]}.csv").is_file():
        raise FileNotFoundError(f"APPA-REAL split file not found: {base / f'gt_avg_{split}.csv'}")
    report = ReadReport(source="appa_real")
    candidates = [c for s in splits for c in _appa_candidates(base, s, report)]
    return _finish(candidates, report, check_images), report


# --- generic CSV ------------------------------------------------------------------------------------------


def _generic_csv_path(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    raise FileNotFoundError(f"no labels.csv in {root}; pass the CSV file itself as root")


def _csv_candidate(row: dict[str, str], cols: dict[str, str | None], folder: Path, name: str) -> _Candidate:
    """One generic-CSV row as a candidate; raises :class:`LabelError` when the row must be skipped."""
    age = parse_age(row.get(cols["age"] or ""))
    path = Path(row.get(cols["path"] or "", "").strip()).expanduser()
    path = path if path.is_absolute() else folder / path
    problem = _check_listed_file(path)
    if problem is not None:
        raise LabelError(problem)
    gender, gender_problem = parse_gender(row.get(cols["gender"] or ""))
    race, race_problem = parse_race(row.get(cols["race"] or ""))
    labels: dict[str, Any] = {"age": age, "gender": gender, "race": race}
    labels["subject"] = _subject_text(row.get(cols["subject"] or ""))
    drops = [p for p in (gender_problem, race_problem) if p]
    if cols["apparent_age"] and not _is_blank(row.get(cols["apparent_age"])):
        try:
            labels["apparent_age"] = parse_age(row.get(cols["apparent_age"]))
        except LabelError:
            drops.append("invalid apparent age")
    return _Candidate(path, name, labels, drops)


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
    header, rows = _read_csv(csv_path)
    cols = {
        "path": _pick_column(header, ("path", *_FILE_COLUMNS)),
        "age": _pick_column(header, ("age", "real_age")),
        "gender": _pick_column(header, ("gender", "sex")),
        "race": _pick_column(header, ("race", "ethnicity")),
        "subject": _pick_column(header, ("subject", *_SUBJECT_COLUMNS)),
        "apparent_age": _pick_column(header, ("apparent_age",)),
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
    return _finish(candidates, report, check_images), report


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
