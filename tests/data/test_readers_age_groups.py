"""Age-group labels: the group parser, FairFace's ``labels.csv``, and the generic CSV's group columns; bad rows are
skipped and reported by problem, the rest read."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from faceage.data.readers import (
    AGE_GROUP_REVERSED,
    AGE_OUT_OF_RANGE,
    FILE_NOT_FOUND,
    INCOMPLETE_AGE_GROUP,
    INVALID_GENDER,
    MISSING_AGE,
    UNPARSEABLE_AGE,
    UNPARSEABLE_AGE_GROUP,
    LabelError,
    parse_age_group,
    parse_age_or_group,
    read_dataset,
)
from faceage.data.readers.guess import guess_reader
from faceage.data.records import MAX_VALID_AGE, FaceRecord, group_age, group_name

REAL_FAIRFACE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fairface"
FAIRFACE_GROUPS = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]


def jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (150, 110, 90)).save(path, "JPEG")
    return path


def fields(rec: FaceRecord) -> tuple:
    return rec.age, rec.age_low, rec.age_high, rec.gender


@pytest.mark.parametrize(
    "text, bounds",
    [
        ("25-32", (25, 32)),
        ("(25, 32)", (25, 32)),
        ("[25,32]", (25, 32)),
        ("25 to 32", (25, 32)),
        ("0-2", (0, 2)),
        ("60+", (60, MAX_VALID_AGE)),
        ("70+", (70, MAX_VALID_AGE)),
        ("more than 70", (70, MAX_VALID_AGE)),
        ("More Than 70", (70, MAX_VALID_AGE)),
    ],
)
def test_parse_age_group(text, bounds):
    assert parse_age_group(text) == bounds


@pytest.mark.parametrize(
    "text, kind",
    [("", MISSING_AGE), ("adult", UNPARSEABLE_AGE_GROUP), ("35", UNPARSEABLE_AGE_GROUP), ("32-25", AGE_GROUP_REVERSED),
     ("20-130", AGE_OUT_OF_RANGE), ("130+", AGE_OUT_OF_RANGE)],
)
def test_parse_age_group_rejects(text, kind):
    with pytest.raises(LabelError) as err:
        parse_age_group(text)
    assert err.value.kind == kind


def test_age_cell_holds_a_year_or_a_group():
    assert parse_age_or_group("35") == {"age": 35.0}
    assert parse_age_or_group("(8, 12)") == {"age": 10.0, "age_low": 8.0, "age_high": 12.0}
    for text, kind in (("None", MISSING_AGE), ("old", UNPARSEABLE_AGE), ("-5", AGE_OUT_OF_RANGE), ("40-30", AGE_GROUP_REVERSED)):
        with pytest.raises(LabelError) as err:
            parse_age_or_group(text)
        assert err.value.kind == kind


def test_representative_age_and_names():
    assert group_age(0, 2) == 1 and group_age(20, 29) == 24.5
    assert group_age(70, MAX_VALID_AGE) == 80  # open group: top taken as OPEN_GROUP_TOP (90)
    assert group_age(100, MAX_VALID_AGE) == 100  # an open group starting above that top: its first year
    assert [group_name(0, 2), group_name(70, MAX_VALID_AGE), group_name(35, 35)] == ["0-2", "70+", "35"]
    exact, grouped = FaceRecord("a.jpg", 30.0), FaceRecord("b.jpg", 24.5, age_low=20, age_high=29)
    assert not exact.is_grouped and (exact.age_low, exact.age_high) == (None, None)
    assert grouped.is_grouped


def write_fairface(root: Path) -> Path:
    """A FairFace-form folder: good rows, the two spellings of 70+, and bad rows of each kind."""
    rows = [
        ("a.jpg", "20-29", "male"),
        ("b.jpg", "0-2", "female"),
        ("c.jpg", "more than 70", "female"),
        ("d.jpg", "70+", "Male"),
        ("e.jpg", "3-9", "unknown"),  # bad gender: dropped, the face kept
        ("f.jpg", "adult", "male"),  # bad group: skipped
        ("g.jpg", "", "male"),  # missing group: skipped
        ("h.jpg", "30-20", "female"),  # reversed group: skipped
        ("missing.jpg", "40-49", "male"),  # no such file: skipped
    ]
    for name, *_ in rows:
        if name != "missing.jpg":
            jpeg(root / name)
    (root / "labels.csv").write_text("file,age_group,gender\n" + "".join(",".join(r) + "\n" for r in rows))
    return root


def test_fairface(tmp_path):
    root = write_fairface(tmp_path / "ff")
    assert guess_reader(root) == "fairface"
    records, report = read_dataset("fairface", root)
    got = {Path(r.path).name: fields(r) for r in records}
    assert got == {
        "a.jpg": (24.5, 20, 29, 0),
        "b.jpg": (1, 0, 2, 1),
        "c.jpg": (80, 70, MAX_VALID_AGE, 1),
        "d.jpg": (80, 70, MAX_VALID_AGE, 0),
        "e.jpg": (6, 3, 9, None),
    }
    assert report.n_ok == 5 and report.n_skipped == 4
    assert report.skipped == {UNPARSEABLE_AGE_GROUP: 1, MISSING_AGE: 1, AGE_GROUP_REVERSED: 1, FILE_NOT_FOUND: 1}
    assert report.examples[UNPARSEABLE_AGE_GROUP] == ["f.jpg"] and report.examples[FILE_NOT_FOUND] == ["missing.jpg"]
    assert report.dropped == {INVALID_GENDER: 1}
    summary = report.summary().splitlines()  # one line per problem, naming the file
    assert "skipped 1 x unparseable age group: e.g. f.jpg" in [line.strip() for line in summary]
    # the CSV itself as root reads the same
    assert [r.path for r in read_dataset("fairface", root / "labels.csv")[0]] == [r.path for r in records]


def test_fairface_needs_its_columns(tmp_path):
    (tmp_path / "labels.csv").write_text("file,gender\na.jpg,male\n")
    with pytest.raises(ValueError, match="age_group"):
        read_dataset("fairface", tmp_path)


def test_csv_with_age_groups(tmp_path):
    for name in "abcdefgh":
        jpeg(tmp_path / f"{name}.jpg")
    (tmp_path / "labels.csv").write_text(
        "path,age,age_group,age_low,age_high,gender\n"
        "a.jpg,35,,,,m\n"  # exact age
        'b.jpg,"(25, 32)",,,,f\n'  # Adience's group in the age column
        "c.jpg,,60+,,,f\n"  # age-group column, open group
        "d.jpg,,,10,19,m\n"  # explicit bounds
        "e.jpg,,,10,,m\n"  # half the bounds: skipped
        "f.jpg,,teen,,,m\n"  # unparseable group: skipped
        "g.jpg,24.5,20-29,,,f\n"  # a representative age beside the group: the group wins
        "h.jpg,,,30,20,m\n"  # reversed bounds: skipped
    )
    records, report = read_dataset("csv", tmp_path)
    got = {Path(r.path).name: fields(r) for r in records}
    assert got == {
        "a.jpg": (35, None, None, 0),
        "b.jpg": (28.5, 25, 32, 1),
        "c.jpg": (75, 60, MAX_VALID_AGE, 1),
        "d.jpg": (14.5, 10, 19, 0),
        "g.jpg": (24.5, 20, 29, 1),
    }
    assert report.skipped == {INCOMPLETE_AGE_GROUP: 1, UNPARSEABLE_AGE_GROUP: 1, AGE_GROUP_REVERSED: 1}
    assert report.examples[INCOMPLETE_AGE_GROUP] == ["e.jpg"]


def test_csv_with_bounds_only(tmp_path):
    jpeg(tmp_path / "a.jpg")
    (tmp_path / "groups.csv").write_text("file,age_low,age_high\na.jpg,3,9\n")
    records, _ = read_dataset("csv", tmp_path / "groups.csv")
    assert [fields(r) for r in records] == [(6, 3, 9, None)]
    (tmp_path / "nothing.csv").write_text("file,age_low\na.jpg,3\n")
    with pytest.raises(ValueError, match="age_low and age_high"):
        read_dataset("csv", tmp_path / "nothing.csv")


def test_real_fairface_folder():
    if not (REAL_FAIRFACE / "labels.csv").is_file():
        pytest.skip(f"FairFace sample not found at {REAL_FAIRFACE.resolve()} (shared data is optional)")
    assert guess_reader(REAL_FAIRFACE) == "fairface"
    records, report = read_dataset("fairface", REAL_FAIRFACE, check_images=True)
    assert len(records) == 270 and report.n_skipped == 0, report.summary()
    assert all(r.is_grouped and r.gender in (0, 1) for r in records)
    counts = {name: 0 for name in FAIRFACE_GROUPS}
    for r in records:
        counts[group_name(r.age_low, r.age_high)] += 1
        assert r.age_low <= r.age <= r.age_high
    assert counts == dict.fromkeys(FAIRFACE_GROUPS, 30)  # 30 photos per group, as the data's README says
