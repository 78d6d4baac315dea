"""Dataset readers, chosen by name: ``read_dataset("utkface", root)`` -> ``(records, report)``; ``READERS.names()``.

Each reader turns one public face-age dataset's on-disk layout into :class:`FaceRecord` objects and a
:class:`ReadReport` of what it rejected. :mod:`~faceage.data.readers.base` holds what they share (the
:data:`READERS` registry, :func:`read_dataset`, the label parsers, folder scanning and the report kinds); one
module per dataset registers its reader with ``@READERS.register("name")``: :mod:`.utkface`, :mod:`.afad`,
:mod:`.cacd`, :mod:`.appa_real`, :mod:`.fgnet`, :mod:`.aaf`, :mod:`.fairface` (age groups) and :mod:`.generic_csv`
(``"csv"``). A new dataset
is one file plus one import line here.
"""

from faceage.data.readers import aaf, afad, appa_real, cacd, fairface, fgnet, generic_csv, utkface  # noqa: F401  (fills READERS)
from faceage.data.readers.aaf import AAF_LAST_FEMALE, AAF_LAST_MALE, parse_aaf_name, read_aaf
from faceage.data.readers.afad import AFAD_GENDER_FOLDERS, read_afad
from faceage.data.readers.appa_real import APPA_SPLITS, read_appa_real
from faceage.data.readers.base import (
    AGE_GROUP_REVERSED,
    AGE_OUT_OF_RANGE,
    FILE_NOT_FOUND,
    INCOMPLETE_AGE_GROUP,
    INVALID_GENDER,
    INVALID_RACE,
    MISSING_AGE,
    MISSING_PATH,
    MISSING_RACE,
    NOT_IMAGE_EXTENSION,
    READERS,
    UNPARSEABLE_AGE,
    UNPARSEABLE_AGE_GROUP,
    UNPARSEABLE_NAME,
    LabelError,
    Reader,
    group_labels,
    parse_age,
    parse_age_group,
    parse_age_or_group,
    parse_gender,
    parse_race,
    read_dataset,
)
from faceage.data.readers.cacd import parse_cacd_name, read_cacd
from faceage.data.readers.fairface import read_fairface
from faceage.data.readers.fgnet import parse_fgnet_name, read_fgnet
from faceage.data.readers.generic_csv import read_csv_labels
from faceage.data.readers.utkface import parse_utkface_name, read_utkface
from faceage.data.records import FaceRecord, ReadReport

__all__ = [
    "AAF_LAST_FEMALE",
    "AAF_LAST_MALE",
    "AFAD_GENDER_FOLDERS",
    "AGE_GROUP_REVERSED",
    "AGE_OUT_OF_RANGE",
    "APPA_SPLITS",
    "FILE_NOT_FOUND",
    "INCOMPLETE_AGE_GROUP",
    "INVALID_GENDER",
    "INVALID_RACE",
    "MISSING_AGE",
    "MISSING_PATH",
    "MISSING_RACE",
    "NOT_IMAGE_EXTENSION",
    "READERS",
    "UNPARSEABLE_AGE",
    "UNPARSEABLE_AGE_GROUP",
    "UNPARSEABLE_NAME",
    "FaceRecord",
    "LabelError",
    "ReadReport",
    "Reader",
    "group_labels",
    "parse_aaf_name",
    "parse_age",
    "parse_age_group",
    "parse_age_or_group",
    "parse_cacd_name",
    "parse_fgnet_name",
    "parse_gender",
    "parse_race",
    "parse_utkface_name",
    "read_aaf",
    "read_afad",
    "read_appa_real",
    "read_cacd",
    "read_csv_labels",
    "read_dataset",
    "read_fairface",
    "read_fgnet",
    "read_utkface",
]
