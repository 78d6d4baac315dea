"""FG-NET: subject and age from file names ``001A02.JPG``."""

from __future__ import annotations

import os
import re
from typing import Any

from faceage.data.readers.base import READERS, UNPARSEABLE_NAME, LabelError, from_file_names, parse_age, strip_image_ext
from faceage.data.records import FaceRecord, ReadReport


def parse_fgnet_name(name: str) -> dict[str, Any]:
    """Labels from an FG-NET file name ``001A02.JPG`` (subject 001, age 2), also ``078A11a.JPG``.

    Raises:
        LabelError: when the name does not have that form or the age is out of range.
    """
    match = re.fullmatch(r"(\d+)a(\d+)[a-z]?", strip_image_ext(name), flags=re.IGNORECASE)
    if match is None:
        raise LabelError(UNPARSEABLE_NAME)
    return {"age": parse_age(match.group(2), integer=True), "subject": match.group(1)}


@READERS.register("fgnet")
def read_fgnet(root: str | os.PathLike, *, check_images: bool = True) -> tuple[list[FaceRecord], ReadReport]:
    """Reads FG-NET: ``001A02.JPG`` is subject ``"001"`` at age 2 (``078A11a.JPG`` variants too).

    Args:
        root: the FG-NET ``images`` folder (searched recursively; ``.pts`` landmark files are ignored).
        check_images: skip files whose image header is unusable.

    Returns:
        ``(records, report)``.
    """
    return from_file_names(root, "fgnet", lambda p, _: (parse_fgnet_name(p.name), []), check_images)
