"""UTKFace: age, gender and race from file names ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg``."""

from __future__ import annotations

import os
import re
from typing import Any

from faceage.data.readers.base import (
    INVALID_GENDER,
    INVALID_RACE,
    MISSING_RACE,
    READERS,
    UNPARSEABLE_NAME,
    LabelError,
    from_file_names,
    parse_age,
    parse_gender,
    parse_race,
    strip_image_ext,
)
from faceage.data.records import FaceRecord, ReadReport

_UTK_DATETIME = re.compile(r"\d{8,}")  # UTKFace's last field, yyyymmddHHMMSSfff


def parse_utkface_name(name: str) -> tuple[dict[str, Any], list[str]]:
    """Labels from a UTKFace file name ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` (or ``...jpg``).

    A three-field name whose last field is a datetime lacks the race: age and gender are kept, race is ``None``.

    Returns:
        ``(labels, dropped_kinds)`` with labels ``age``, ``gender``, ``race``.

    Raises:
        LabelError: when the name has no usable age.
    """
    stem = strip_image_ext(name)
    if stem.lower().endswith(".chip"):
        stem = strip_image_ext(stem[: -len(".chip")])
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
    return from_file_names(root, "utkface", lambda p, _: parse_utkface_name(p.name), check_images)
