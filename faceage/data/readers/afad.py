"""AFAD (Asian Face Age Dataset): age and gender from ``AGE/GENDER/`` folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from faceage.data.readers.base import DIGITS, READERS, LabelError, from_file_names, parse_age
from faceage.data.records import FaceRecord, ReadReport

AFAD_GENDER_FOLDERS = {"111": 0, "112": 1}


def _afad_labels(path: Path, root: Path) -> tuple[dict[str, Any], list[str]]:
    gender_dir, age_dir = path.parent.name, path.parent.parent.name
    if not (DIGITS.fullmatch(gender_dir) and DIGITS.fullmatch(age_dir)):
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
    return from_file_names(root, "afad", _afad_labels, check_images)
