"""The pair CSV format (``left,right[,label]``): one reader and one writer, without importing torch, so that
``faceage compare`` on the ONNX engine starts without PyTorch; :mod:`faceage.data.pairs` re-exports everything here."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faceage._io import atomic_target

PAIR_CSV_COLUMNS = ("left", "right", "label")


@dataclass(frozen=True)
class PairRow:
    """One row of a pair CSV.

    Attributes:
        left: left image path (as written, or resolved against the CSV's folder).
        right: right image path.
        label: 1 left older, 0 not, ``None`` when the file has no label.
        row: 1-based data row number (the header is not counted).
        error: what is wrong with the row (only with ``strict=False``), else ``None``.
    """

    left: str
    right: str
    label: int | None = None
    row: int = 0
    error: str | None = None


def resolve_pair_path(path: str, folder: str | os.PathLike) -> str:
    """An image path of a pair CSV: absolute as it is, relative ones joined to ``folder`` (the CSV's own folder,
    so that a CSV and its images move together)."""
    expanded = os.path.expanduser(path)
    return os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(os.path.abspath(folder), expanded))


def _parse_label(text: str) -> int:
    value = text.strip().lower()
    if value in ("1", "1.0", "true"):
        return 1
    if value in ("0", "0.0", "false"):
        return 0
    raise ValueError(f"label must be 0 or 1, got {text!r}")


def read_pair_csv(path: str | os.PathLike, resolve: bool = True, strict: bool = True) -> list[PairRow]:
    """Reads ``left,right[,label]`` rows; a first row ``left,right[,label]`` is a header, blank lines are skipped.

    Args:
        path: the CSV file.
        resolve: turn relative image paths into paths relative to the CSV's folder (see :func:`resolve_pair_path`).
        strict: raise on a malformed row; with ``False`` the row is returned with ``error`` set.

    Returns:
        The rows in file order.

    Raises:
        ValueError: (``strict``) naming the row and the problem.
        OSError: when the file cannot be read.
    """
    rows: list[PairRow] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        number = 0
        for cells in csv.reader(f):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if (
                number == 0
                and not rows
                and [c.lower() for c in cells[:3]] in (["left", "right"], ["left", "right", "label"])
            ):
                continue
            number += 1
            error = None
            label = None
            if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
                error = f"expected 'left,right[,label]', got {len(cells)} field(s): {','.join(cells)[:80]!r}"
            elif len(cells) == 3 and cells[2]:
                try:
                    label = _parse_label(cells[2])
                except ValueError as e:
                    error = str(e)
            if error is not None:
                if strict:
                    raise ValueError(f"{path}: row {number}: {error}")
                rows.append(PairRow(cells[0] if cells else "", cells[1] if len(cells) > 1 else "", None, number, error))
                continue
            left, right = (resolve_pair_path(c, Path(path).parent) for c in cells[:2]) if resolve else cells[:2]
            rows.append(PairRow(left, right, label, number))
    return rows


def _relative_to(path: str, folder: Path) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(path), folder)).as_posix()
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


def write_pair_csv(path: str | os.PathLike, rows: Iterable[tuple], relative: bool = True) -> int:
    """Writes ``left,right,label`` rows (``label`` blank when ``None``).

    Args:
        path: CSV file to write.
        rows: ``(left, right)`` or ``(left, right, label)`` tuples, or :class:`PairRow` objects.
        relative: store image paths relative to the CSV's folder, as :func:`read_pair_csv` resolves them.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    n = 0
    with atomic_target(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PAIR_CSV_COLUMNS)
        for row in rows:
            if isinstance(row, PairRow):
                left, right, label = row.left, row.right, row.label
            else:
                left, right, label = (*row, None)[:3]
            if relative:
                left, right = _relative_to(str(left), folder), _relative_to(str(right), folder)
            writer.writerow([left, right, "" if label is None else int(label)])
            n += 1
    return n
