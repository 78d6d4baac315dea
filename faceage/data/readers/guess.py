"""Which reader a dataset folder needs, recognised from its layout and file names (``--dataset auto``)."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# file-name patterns, most specific first: AAF's 5-digit person numbers before FG-NET's 3-digit ones
NAME_PATTERNS = (
    ("aaf", re.compile(r"\d{5}a\d{2}", re.IGNORECASE)),
    ("fgnet", re.compile(r"\d{3}a\d{2}[a-z]?", re.IGNORECASE)),
    ("utkface", re.compile(r"\d{1,3}_\d_(\d_)?\d+")),
    ("cacd", re.compile(r"\d{1,3}_[^\W\d_].*_\d{4}")),
)
SAMPLE = 200  # file names looked at


def _names(root: Path) -> list[str]:
    files = (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p.name.split(".")[0] for p in itertools.islice(files, SAMPLE)]


def _labels_csv_reader(root: Path) -> str | None:
    """``fairface`` for a ``labels.csv`` with an ``age_group`` but no ``age`` column, ``csv`` for another
    ``labels.csv``, ``None`` without one."""
    labels = root / "labels.csv"
    if not labels.is_file():
        return None
    with open(labels, encoding="utf-8-sig") as f:
        header = [h.strip().lower() for h in f.readline().replace(";", ",").replace("\t", ",").split(",")]
    return "fairface" if "age_group" in header and "age" not in header else "csv"


def guess_reader(root: str | os.PathLike) -> str:
    """The reader name for ``root``: ``csv`` for a CSV file, ``appa_real`` when APPA-REAL's ``gt_avg_*.csv`` are
    there, ``afad`` for its ``AGE/GENDER/`` folders, else the name pattern most of its image files match, else
    ``fairface`` or ``csv`` for a folder with a ``labels.csv`` (``fairface`` when it has ``age_group`` and no ``age``).

    Raises:
        ValueError: naming the folder when nothing matches (pass the reader by name then).
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise ValueError(f"{root}: not a dataset folder or CSV file")
    if any(root.glob("gt_avg_*.csv")) or any(root.glob("*/gt_avg_*.csv")):
        return "appa_real"
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if subdirs and all(p.name.isdigit() for p in subdirs) and any(q.is_dir() and q.name in ("111", "112") for p in subdirs[:5] for q in p.iterdir()):
        return "afad"
    names = _names(root)
    counts = {reader: sum(1 for n in names if pattern.fullmatch(n)) for reader, pattern in NAME_PATTERNS}
    best = max(counts, key=counts.get)
    if not names or counts[best] < len(names) / 2:
        labelled = _labels_csv_reader(root)
        if labelled is not None:
            return labelled
        raise ValueError(f"{root}: cannot tell which dataset this is from its file names; pass --dataset "
                         "(utkface, afad, cacd, appa_real, fgnet, aaf, fairface, csv)")
    return best
