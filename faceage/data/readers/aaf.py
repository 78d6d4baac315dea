"""All-Age-Faces: age from file names ``00000A02.jpg``, gender from the person number."""

from __future__ import annotations

import os
import re
from typing import Any

from faceage.data.readers.base import READERS, UNPARSEABLE_NAME, LabelError, from_file_names, parse_age, strip_image_ext
from faceage.data.records import FaceRecord, ReadReport

AAF_LAST_FEMALE, AAF_LAST_MALE = 7380, 13321  # All-Age-Faces numbers females 00000-07380, males 07381-13321


def parse_aaf_name(name: str) -> tuple[dict[str, Any], list[str]]:
    """Labels from an All-Age-Faces file name ``00000A02.jpg`` (person 00000, age 2).

    The gender comes from the person number: ``<= 7380`` female, ``7381..13321`` male, otherwise unknown.

    Returns:
        ``(labels, dropped_kinds)`` with labels ``age`` and ``gender``.

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)a(\d+)", strip_image_ext(name), flags=re.IGNORECASE)
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    age = parse_age(match.group(2), integer=True)
    number = int(match.group(1))
    if number <= AAF_LAST_FEMALE:
        return {"age": age, "gender": 1}, []
    if number <= AAF_LAST_MALE:
        return {"age": age, "gender": 0}, []
    return {"age": age, "gender": None}, ["person number outside AAF's gender ranges"]


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
    return from_file_names(root, "aaf", lambda p, _: parse_aaf_name(p.name), check_images)
