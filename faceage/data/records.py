"""The one record schema every dataset reader yields, and the report of records it had to reject."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field

GENDERS = ("male", "female")  # UTKFace coding: 0 male, 1 female
RACES = ("white", "black", "asian", "indian", "others")  # UTKFace coding 0..4
MIN_VALID_AGE, MAX_VALID_AGE = 0, 120
# an open group ("70+") has MAX_VALID_AGE as its top; its representative age takes this top instead (70+ -> 80)
OPEN_GROUP_TOP = 90


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face image.

    Attributes:
        path: image file.
        age: age in years (real age), ``None`` only for unlabelled prediction inputs.
        gender: 0 male, 1 female, ``None`` when unknown or untrusted.
        race: 0..4 (see ``RACES``), ``None`` when unknown.
        subject: identity id where the dataset has one (FG-NET, CACD, AAF), used for subject-exclusive splits.
        apparent_age: APPA-REAL's mean apparent age, when known.
        source: the dataset the record came from (its label in a multi-dataset recipe), ``None`` when single.
        age_low: for a face labelled with an age *group*, the group's first year (inclusive); ``None`` for an exact age.
        age_high: the group's last year (inclusive; ``MAX_VALID_AGE`` for an open group such as "70+"), ``None`` for an
            exact age. A grouped record's ``age`` is the group's representative age (:func:`group_age`), so code that
            needs one number still has one; code that scores or trains on groups reads the bounds.
    """

    path: str
    age: float | None
    gender: int | None = None
    race: int | None = None
    subject: str | None = None
    apparent_age: float | None = None
    source: str | None = None
    age_low: float | None = None
    age_high: float | None = None

    @property
    def is_grouped(self) -> bool:
        """Whether the label is an age group (``age_low``/``age_high`` set) rather than an exact age."""
        return self.age_low is not None and self.age_high is not None

    def to_dict(self) -> dict:
        return asdict(self)


def group_age(low: float, high: float) -> float:
    """The representative age of the group ``[low, high]``: its middle, an open group's top taken as ``OPEN_GROUP_TOP``
    (an open group starting above that top gets its first year).

    >>> group_age(20, 29), group_age(70, MAX_VALID_AGE)
    (24.5, 80.0)
    """
    return (low + min(high, max(OPEN_GROUP_TOP, low))) / 2


def group_name(low: float, high: float) -> str:
    """A group's display name: ``"20-29"``, ``"70+"`` for an open group (``high >= MAX_VALID_AGE``), ``"35"`` for one year.

    >>> group_name(20, 29), group_name(70, MAX_VALID_AGE), group_name(35, 35)
    ('20-29', '70+', '35')
    """
    if high >= MAX_VALID_AGE:
        return f"{low:g}+"
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


@dataclass
class ReadReport:
    """What a reader rejected or partly distrusted, by kind, with the first few file names of each kind.

    ``skipped`` kinds lost the whole record (no usable age); ``dropped`` kinds lost one field only
    (e.g. an invalid gender code leaves the age usable and the gender unknown).
    """

    source: str = ""
    n_ok: int = 0
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    def skip(self, kind: str, name: str) -> None:
        self.skipped[kind] += 1
        self._example(kind, name)

    def drop(self, kind: str, name: str) -> None:
        self.dropped[kind] += 1
        self._example(kind, name)

    def _example(self, kind: str, name: str) -> None:
        names = self.examples.setdefault(kind, [])
        if len(names) < self.max_examples:
            names.append(str(name))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """Human-readable lines: totals, then each kind with its count and example names."""
        lines = [f"{self.source}: {self.n_ok} records ok, {self.n_skipped} skipped"]
        for kind, n in sorted(self.skipped.items()):
            lines.append(f"  skipped {n} x {kind}: e.g. {', '.join(self.examples.get(kind, []))}")
        for kind, n in sorted(self.dropped.items()):
            lines.append(f"  kept age but dropped field for {n} x {kind}: e.g. {', '.join(self.examples.get(kind, []))}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "n_ok": self.n_ok,
            "skipped": dict(self.skipped),
            "dropped": dict(self.dropped),
            "examples": self.examples,
        }


def drop_duplicates(records: list[FaceRecord], report: ReadReport) -> list[FaceRecord]:
    """The records with each image file once (the first row wins); every later row naming the same file is reported
    as ``skipped N x duplicate``, like other bad rows, so one repeated row never stops a run."""
    seen: set[str] = set()
    kept = []
    for r in records:
        key = os.path.normcase(os.path.abspath(r.path))
        if key in seen:
            report.skip("duplicate", r.path)
            report.n_ok -= 1
            continue
        seen.add(key)
        kept.append(r)
    return kept
