"""Dataset readers: good records labelled exactly, bad ones skipped or partly dropped and reported, never guessed.

Each test builds a tiny dataset tree in ``tmp_path`` with real-form file names and 24x24 JPEGs, plus the dirt
real datasets contain: unparseable names, impossible ages, bad codes, empty files and text files named .jpg.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.data.readers import (
    AGE_OUT_OF_RANGE,
    FILE_NOT_FOUND,
    INVALID_GENDER,
    INVALID_RACE,
    MISSING_AGE,
    MISSING_RACE,
    NOT_IMAGE_EXTENSION,
    READERS,
    UNPARSEABLE_AGE,
    UNPARSEABLE_NAME,
    LabelError,
    parse_aaf_name,
    parse_cacd_name,
    parse_fgnet_name,
    parse_utkface_name,
    read_dataset,
)

EMPTY = "empty file (0 bytes)"
NOT_IMAGE = "not an image (unrecognised format)"
REAL_UTKFACE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "utkface"


def jpeg(path: Path, size: int = 24) -> Path:
    """Writes a small real JPEG (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (150, 110, 90)).save(path, "JPEG")
    return path


def empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def text(path: Path, content: str = "this is not an image\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def by_name(records) -> dict:
    return {Path(r.path).name: r for r in records}


def labels(rec) -> tuple:
    return rec.age, rec.gender, rec.race, rec.subject, rec.apparent_age


def assert_reported(report, kind: str, count: int, *names: str, dropped: bool = False) -> None:
    counter = report.dropped if dropped else report.skipped
    assert counter[kind] == count, report.summary()
    for name in names:
        assert any(name in example for example in report.examples[kind]), (name, report.examples.get(kind))


def assert_sorted_and_counted(records, report) -> None:
    assert [r.path for r in records] == sorted(r.path for r in records)
    assert report.n_ok == len(records)


def test_registry_has_every_reader():
    assert READERS.names() == sorted(["utkface", "afad", "cacd", "appa_real", "fgnet", "aaf", "fairface", "csv"])
    with pytest.raises(KeyError, match="utkface"):
        read_dataset("no_such_dataset", ".")


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dataset("utkface", tmp_path / "nowhere")


# every registered reader, so a new one is held to the shared rules without editing this file


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_names_a_missing_root(name, tmp_path):
    assert READERS.get(name).__doc__
    with pytest.raises(FileNotFoundError, match="not found") as err:
        read_dataset(name, tmp_path / "nowhere")
    assert "nowhere" in str(err.value)


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_on_an_empty_folder(name, tmp_path):
    """No faces: an empty list and its report, or a FileNotFoundError naming the folder; never a crash."""
    try:
        records, report = read_dataset(name, tmp_path)
    except FileNotFoundError as err:
        assert str(tmp_path) in str(err)
    else:
        assert records == [] and report.n_ok == 0 and report.source == name


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_takes_check_images(name):
    assert "check_images" in inspect.signature(READERS.get(name)).parameters


# ---------------------------------------------------------------------------------------------------------- UTKFace


@pytest.mark.parametrize(
    "name, expected, drops",
    [
        ("25_0_1_20170116174525125.jpg.chip.jpg", (25, 0, 1), []),
        ("3_1_4_20161219140623097.jpg", (3, 1, 4), []),
        ("61_1_20170109142408075.jpg.chip.jpg", (61, 1, None), [MISSING_RACE]),
        ("61_3_20170109150557335.jpg.chip.jpg", (61, None, None), [MISSING_RACE, INVALID_GENDER]),
        ("40_3_0_20170109150557335.jpg.chip.jpg", (40, None, 0), [INVALID_GENDER]),
        ("30_0_9_20170109150557335.jpg.chip.jpg", (30, 0, None), [INVALID_RACE]),
    ],
)
def test_parse_utkface_name(name, expected, drops):
    got, got_drops = parse_utkface_name(name)
    assert (got["age"], got["gender"], got["race"]) == expected
    assert sorted(got_drops) == sorted(drops)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("130_0_0_20170109150557335.jpg.chip.jpg", AGE_OUT_OF_RANGE),
        ("x1_0_0_20170109150557335.jpg.chip.jpg", UNPARSEABLE_AGE),
        ("-5_0_0_20170109150557335.jpg.chip.jpg", UNPARSEABLE_AGE),
        ("25_1.jpg", UNPARSEABLE_NAME),
        ("holiday.jpg", UNPARSEABLE_NAME),
        ("25_0_1_2_3_20170109150557335.jpg", UNPARSEABLE_NAME),
    ],
)
def test_parse_utkface_name_rejects(name, kind):
    with pytest.raises(LabelError) as err:
        parse_utkface_name(name)
    assert err.value.kind == kind


def make_utkface(root: Path) -> None:
    jpeg(root / "25_0_1_20170116174525125.jpg.chip.jpg")
    jpeg(root / "3_1_4_20161219140623097.jpg")
    jpeg(root / "sub" / "70_1_0_20170120221920654.jpg.chip.jpg")
    jpeg(root / "61_1_20170109142408075.jpg.chip.jpg")  # no race field
    jpeg(root / "40_3_0_20170119180543421.jpg.chip.jpg")  # gender 3
    jpeg(root / "30_0_9_20170119180543421.jpg.chip.jpg")  # race 9
    jpeg(root / "130_0_0_20170119180543421.jpg.chip.jpg")  # impossible age
    jpeg(root / "abc_0_0_20170119180543421.jpg.chip.jpg")
    jpeg(root / "holiday.jpg")
    empty(root / "22_0_0_20170119180543421.jpg.chip.jpg")
    text(root / "33_1_2_20170119180543421.jpg.chip.jpg")
    text(root / "README.txt")  # not an image extension: ignored silently


def test_utkface(tmp_path):
    make_utkface(tmp_path)
    records, report = read_dataset("utkface", tmp_path)
    got = {n: (r.age, r.gender, r.race, r.subject) for n, r in by_name(records).items()}
    assert got == {
        "25_0_1_20170116174525125.jpg.chip.jpg": (25, 0, 1, None),
        "3_1_4_20161219140623097.jpg": (3, 1, 4, None),
        "70_1_0_20170120221920654.jpg.chip.jpg": (70, 1, 0, None),
        "61_1_20170109142408075.jpg.chip.jpg": (61, 1, None, None),
        "40_3_0_20170119180543421.jpg.chip.jpg": (40, None, 0, None),
        "30_0_9_20170119180543421.jpg.chip.jpg": (30, 0, None, None),
    }
    assert report.source == "utkface"
    assert_sorted_and_counted(records, report)
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "130_0_0_")
    assert_reported(report, UNPARSEABLE_AGE, 1, "abc_0_0_")
    assert_reported(report, UNPARSEABLE_NAME, 1, "holiday.jpg")
    assert_reported(report, EMPTY, 1, "22_0_0_")
    assert_reported(report, NOT_IMAGE, 1, "33_1_2_")
    assert_reported(report, MISSING_RACE, 1, "61_1_20170109142408075", dropped=True)
    assert_reported(report, INVALID_GENDER, 1, "40_3_0_", dropped=True)
    assert_reported(report, INVALID_RACE, 1, "30_0_9_", dropped=True)
    assert report.n_skipped == 5
    assert "README" not in report.summary()
    assert "sub/70_1_0_20170120221920654.jpg.chip.jpg" in [r.path[len(str(tmp_path)) + 1 :] for r in records]


def test_utkface_without_image_check_keeps_unchecked_files(tmp_path):
    make_utkface(tmp_path)
    records, report = read_dataset("utkface", tmp_path, check_images=False)
    got = by_name(records)
    assert len(records) == 8
    assert labels(got["22_0_0_20170119180543421.jpg.chip.jpg"])[:3] == (22, 0, 0)
    assert EMPTY not in report.skipped and NOT_IMAGE not in report.skipped


def test_utkface_drops_are_reported_only_for_kept_records(tmp_path):
    text(tmp_path / "61_1_20170109142408075.jpg.chip.jpg")  # no race AND not an image
    records, report = read_dataset("utkface", tmp_path)
    assert records == [] and report.skipped[NOT_IMAGE] == 1 and not report.dropped


@pytest.mark.data
def test_real_utkface_folder():
    if not REAL_UTKFACE.is_dir():
        pytest.skip(f"real UTKFace sample not found at {REAL_UTKFACE.resolve()} (shared data is optional)")
    files = sorted(p.name for p in REAL_UTKFACE.iterdir() if p.name.endswith(".jpg"))
    assert len(files) == 18977
    records, report = read_dataset("utkface", REAL_UTKFACE, check_images=True)
    assert len(records) >= 18970, report.summary()
    got = by_name(records)
    # every well-formed name is labelled exactly as it reads
    full = re.compile(r"(\d+)_([01])_([0-4])_\d+\.jpg\.chip\.jpg")
    for name in files:
        m = full.fullmatch(name)
        if m:
            assert labels(got[name])[:3] == (int(m[1]), int(m[2]), int(m[3])), name
    # names lacking the race field keep age (and gender when valid), race unknown
    short = [n for n in files if len(n.split(".")[0].split("_")) == 3]
    assert short, "the sample is documented to contain names lacking a field"
    for name in short:
        age, gender = name.split("_")[:2]
        assert labels(got[name])[:3] == (int(age), int(gender) if gender in "01" else None, None), name
    assert report.dropped[MISSING_RACE] == len(short)
    if "61_1_20170109142408075.jpg.chip.jpg" in got:
        assert labels(got["61_1_20170109142408075.jpg.chip.jpg"])[:3] == (61, 1, None)
    gender3 = [n for n in files if n.split("_")[1] == "3"]  # utkface-part1 had one; the utkface/ folder has none
    for name in gender3:
        assert got[name].gender is None and got[name].age == int(name.split("_")[0])
    assert report.dropped[INVALID_GENDER] == len(gender3)


# ---------------------------------------------------------------------------------------------------------- AFAD


def test_afad(tmp_path):
    jpeg(tmp_path / "25" / "111" / "a.jpg")
    jpeg(tmp_path / "25" / "112" / "b.jpg")
    jpeg(tmp_path / "72" / "112" / "c.jpg")
    jpeg(tmp_path / "30" / "113" / "d.jpg")  # unknown gender folder: age kept, gender dropped
    jpeg(tmp_path / "130" / "111" / "e.jpg")
    jpeg(tmp_path / "abc" / "111" / "f.jpg")
    jpeg(tmp_path / "stray.jpg")
    empty(tmp_path / "40" / "111" / "g.jpg")
    text(tmp_path / "40" / "112" / "h.jpg")
    text(tmp_path / "40" / "112" / "notes.txt")
    records, report = read_dataset("afad", tmp_path)
    got = {n: labels(r) for n, r in by_name(records).items()}
    assert got == {
        "a.jpg": (25, 0, None, None, None),
        "b.jpg": (25, 1, None, None, None),
        "c.jpg": (72, 1, None, None, None),
        "d.jpg": (30, None, None, None, None),
    }
    assert_sorted_and_counted(records, report)
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "130/111/e.jpg")
    layout = next(k for k in report.skipped if k.startswith("unexpected folder layout"))
    assert_reported(report, layout, 2, "abc/111/f.jpg", "stray.jpg")
    assert_reported(report, EMPTY, 1, "40/111/g.jpg")
    assert_reported(report, NOT_IMAGE, 1, "40/112/h.jpg")
    assert sum(report.dropped.values()) == 1 and "30/113/d.jpg" in str(report.examples)


# ---------------------------------------------------------------------------------------------------------- CACD


def make_cacd_images(root: Path) -> Path:
    images = root / "CACD2000"
    jpeg(images / "53_Robin_Williams_0001.jpg")
    jpeg(images / "54_Robin_Williams_0002.jpg")
    jpeg(images / "20_Adele_0001.jpg")
    jpeg(images / "25_50_Cent_0003.jpg")
    empty(images / "30_Empty_Person_0001.jpg")
    text(images / "31_Text_Person_0001.jpg")
    jpeg(images / "130_Old_Person_0001.jpg")
    jpeg(images / "Robin_Williams_0009.jpg")
    return images


CACD_CSV_ROWS = [
    "53_Robin_Williams_0001.jpg,53,2",
    "54_Robin_Williams_0002.jpg,54,2",
    "20_Adele_0001.jpg,20,7",
    "25_50_Cent_0003.jpg,25.0,9",
    "30_Empty_Person_0001.jpg,30,11",
    "31_Text_Person_0001.jpg,31,12",
    "130_Old_Person_0001.jpg,130,13",
    "Robin_Williams_0009.jpg,,2",
    "41_Someone_0001.jpg,forty-one,14",
    "42_Missing_0001.jpg,42,15",
]


def check_cacd_bad_rows(report) -> None:
    assert_reported(report, EMPTY, 1, "30_Empty_Person_0001.jpg")
    assert_reported(report, NOT_IMAGE, 1, "31_Text_Person_0001.jpg")
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "130_Old_Person_0001.jpg")
    assert_reported(report, MISSING_AGE, 1, "Robin_Williams_0009.jpg")
    assert_reported(report, UNPARSEABLE_AGE, 1, "41_Someone_0001.jpg")
    assert_reported(report, FILE_NOT_FOUND, 1, "42_Missing_0001.jpg")


def test_cacd_csv_in_root_with_lenient_header(tmp_path):
    make_cacd_images(tmp_path)
    (tmp_path / "cacd_meta.csv").write_text("File , AGE,Identity\n" + "\n".join(CACD_CSV_ROWS) + "\n")
    records, report = read_dataset("cacd", tmp_path)
    got = {n: (r.age, r.subject, r.gender) for n, r in by_name(records).items()}
    assert got == {
        "53_Robin_Williams_0001.jpg": (53, "2", None),
        "54_Robin_Williams_0002.jpg": (54, "2", None),
        "20_Adele_0001.jpg": (20, "7", None),
        "25_50_Cent_0003.jpg": (25, "9", None),
    }
    assert_sorted_and_counted(records, report)
    check_cacd_bad_rows(report)


def test_cacd_metadata_argument_with_name_as_file_column(tmp_path):
    images = make_cacd_images(tmp_path / "data")
    meta = tmp_path / "elsewhere" / "celebs.csv"
    meta.parent.mkdir()
    meta.write_text("name,age,identity\n" + "\n".join(CACD_CSV_ROWS) + "\n")
    records, report = read_dataset("cacd", tmp_path / "data", metadata=meta)
    assert {Path(r.path).parent for r in records} == {images}
    assert by_name(records)["20_Adele_0001.jpg"].subject == "7"
    check_cacd_bad_rows(report)


def test_cacd_csv_name_column_as_subject(tmp_path):
    make_cacd_images(tmp_path)
    (tmp_path / "meta.csv").write_text(
        "path,age,name\nCACD2000/53_Robin_Williams_0001.jpg,53,Robin Williams\nCACD2000/20_Adele_0001.jpg,20,Adele\n"
    )
    records, _ = read_dataset("cacd", tmp_path)
    assert {n: r.subject for n, r in by_name(records).items()} == {
        "53_Robin_Williams_0001.jpg": "Robin Williams",
        "20_Adele_0001.jpg": "Adele",
    }


def test_cacd_csv_without_needed_columns_is_an_error(tmp_path):
    make_cacd_images(tmp_path)
    (tmp_path / "meta.csv").write_text("identity,year\n1,2004\n")
    with pytest.raises(ValueError, match="age column"):
        read_dataset("cacd", tmp_path)


def test_cacd_mat_metadata(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    make_cacd_images(tmp_path)
    names = np.array(["53_Robin_Williams_0001.jpg", "20_Adele_0001.jpg", "130_Old_Person_0001.jpg"], dtype=object)
    data = {"age": np.array([53, 20, 130]), "identity": np.array([2, 7, 13]), "name": names}
    scipy_io.savemat(tmp_path / "celebrity2000_meta.mat", {"celebrityImageData": data})
    records, report = read_dataset("cacd", tmp_path)
    assert {n: (r.age, r.subject) for n, r in by_name(records).items()} == {
        "53_Robin_Williams_0001.jpg": (53, "2"),
        "20_Adele_0001.jpg": (20, "7"),
    }
    assert report.skipped[AGE_OUT_OF_RANGE] == 1


def test_cacd_file_names_without_metadata(tmp_path):
    make_cacd_images(tmp_path)
    records, report = read_dataset("cacd", tmp_path)
    got = {n: (r.age, r.subject) for n, r in by_name(records).items()}
    assert got == {
        "53_Robin_Williams_0001.jpg": (53, "Robin_Williams"),
        "54_Robin_Williams_0002.jpg": (54, "Robin_Williams"),
        "20_Adele_0001.jpg": (20, "Adele"),
        "25_50_Cent_0003.jpg": (25, "50_Cent"),
    }
    assert_sorted_and_counted(records, report)
    assert_reported(report, UNPARSEABLE_NAME, 1, "Robin_Williams_0009.jpg")
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "130_Old_Person_0001.jpg")
    assert_reported(report, EMPTY, 1, "30_Empty_Person_0001.jpg")
    assert_reported(report, NOT_IMAGE, 1, "31_Text_Person_0001.jpg")


def test_parse_cacd_name():
    assert parse_cacd_name("53_Robin_Williams_0001.jpg") == {"age": 53, "subject": "Robin_Williams"}
    for bad in ("Robin_Williams_0001.jpg", "53_0001.jpg", "53.jpg"):
        with pytest.raises(LabelError):
            parse_cacd_name(bad)


# ---------------------------------------------------------------------------------------------------------- APPA-REAL

APPA_HEADER = "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"


def make_appa(root: Path) -> None:
    jpeg(root / "train" / "000000.jpg")
    jpeg(root / "train" / "000000.jpg_face.jpg")
    jpeg(root / "train" / "000001.jpg")
    jpeg(root / "train" / "000002.jpg")
    jpeg(root / "train" / "000003.jpg")
    empty(root / "train" / "000004.jpg")
    text(root / "train" / "000005.jpg")
    (root / "gt_avg_train.csv").write_text(
        APPA_HEADER
        + "000000.jpg,38,4.53,1.47,4\n"
        + "000001.jpg,63,18.01,3.1,18\n"
        + "000002.jpg,40,50.2,5.0,130\n"  # impossible real age
        + "000003.jpg,40,33.3,5.0,\n"  # missing real age
        + "000004.jpg,40,20.0,2.0,21\n"
        + "000005.jpg,40,20.0,2.0,22\n"
        + "000006.jpg,40,20.0,2.0,23\n"  # image missing
    )
    jpeg(root / "valid" / "004113.jpg_face.jpg")
    jpeg(root / "valid" / "004114.jpg")
    (root / "gt_avg_valid.csv").write_text(APPA_HEADER + "004113.jpg,30,60.5,8.2,64\n004114.jpg,30,n/a,8.2,65\n")
    jpeg(root / "test" / "005613.jpg")
    (root / "gt_avg_test.csv").write_text(APPA_HEADER + "005613.jpg,37,25.92,3.1,27\n")
    (root / "allcategories_train.csv").write_text(
        "file,gender,race,makeup,time,happiness\n000000.jpg,female,asian,0,1,2\n000001.jpg,male,alien,0,1,2\n"
    )


def test_appa_real_all(tmp_path):
    make_appa(tmp_path)
    records, report = read_dataset("appa_real", tmp_path)
    got = {Path(r.path).relative_to(tmp_path).as_posix(): labels(r) for r in records}
    assert got == {
        "train/000000.jpg_face.jpg": (4, 1, 2, None, 4.53),
        "train/000001.jpg": (18, 0, None, None, 18.01),
        "valid/004113.jpg_face.jpg": (64, None, None, None, 60.5),
        "valid/004114.jpg": (65, None, None, None, None),
        "test/005613.jpg": (27, None, None, None, 25.92),
    }
    assert_sorted_and_counted(records, report)
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "train/000002.jpg")
    assert_reported(report, MISSING_AGE, 1, "train/000003.jpg")
    assert_reported(report, EMPTY, 1, "train/000004.jpg")
    assert_reported(report, NOT_IMAGE, 1, "train/000005.jpg")
    assert_reported(report, FILE_NOT_FOUND, 1, "train/000006.jpg")
    assert_reported(report, "invalid apparent age", 1, "valid/004114.jpg", dropped=True)
    assert_reported(report, INVALID_RACE, 1, "train/000001.jpg", dropped=True)


def test_appa_real_one_split_and_release_subfolder(tmp_path):
    make_appa(tmp_path / "appa-real-release")
    records, _ = read_dataset("appa_real", tmp_path, split="valid")
    assert sorted(Path(r.path).name for r in records) == ["004113.jpg_face.jpg", "004114.jpg"]
    with pytest.raises(ValueError, match="split"):
        read_dataset("appa_real", tmp_path, split="validation")
    (tmp_path / "appa-real-release" / "gt_avg_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="gt_avg_test"):
        read_dataset("appa_real", tmp_path, split="test")


# ---------------------------------------------------------------------------------------------------------- FG-NET


def test_fgnet(tmp_path):
    jpeg(tmp_path / "images" / "001A02.JPG")
    jpeg(tmp_path / "images" / "001A43a.JPG")
    jpeg(tmp_path / "images" / "078A11a.JPG")
    jpeg(tmp_path / "images" / "078A00.jpg")
    jpeg(tmp_path / "images" / "002A130.JPG")
    jpeg(tmp_path / "images" / "001B02.JPG")
    jpeg(tmp_path / "images" / "photo.JPG")
    empty(tmp_path / "images" / "003A05.JPG")
    text(tmp_path / "images" / "004A06.JPG")
    text(tmp_path / "points" / "001a02.pts")
    records, report = read_dataset("fgnet", tmp_path)
    got = {n: (r.age, r.subject, r.gender) for n, r in by_name(records).items()}
    assert got == {
        "001A02.JPG": (2, "001", None),
        "001A43a.JPG": (43, "001", None),
        "078A11a.JPG": (11, "078", None),
        "078A00.jpg": (0, "078", None),
    }
    assert_sorted_and_counted(records, report)
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "002A130.JPG")
    assert_reported(report, UNPARSEABLE_NAME, 2, "001B02.JPG", "photo.JPG")
    assert_reported(report, EMPTY, 1, "003A05.JPG")
    assert_reported(report, NOT_IMAGE, 1, "004A06.JPG")
    assert parse_fgnet_name("078a11A.jpg") == {"age": 11, "subject": "078"}


# ---------------------------------------------------------------------------------------------------------- AAF


def test_aaf(tmp_path):
    for name in ("00000A02.jpg", "07380A30.jpg", "07381A45.jpg", "13321A80.jpg", "13322A20.jpg", "00001A130.jpg"):
        jpeg(tmp_path / "aglined faces" / name)
    jpeg(tmp_path / "aglined faces" / "face.jpg")
    empty(tmp_path / "aglined faces" / "00002A05.jpg")
    text(tmp_path / "aglined faces" / "00003A06.jpg")
    records, report = read_dataset("aaf", tmp_path)
    got = {n: (r.age, r.gender, r.subject) for n, r in by_name(records).items()}
    assert got == {
        "00000A02.jpg": (2, 1, None),
        "07380A30.jpg": (30, 1, None),
        "07381A45.jpg": (45, 0, None),
        "13321A80.jpg": (80, 0, None),
        "13322A20.jpg": (20, None, None),
    }
    assert_sorted_and_counted(records, report)
    assert sum(report.dropped.values()) == 1
    assert_reported(report, AGE_OUT_OF_RANGE, 1, "00001A130.jpg")
    assert_reported(report, UNPARSEABLE_NAME, 1, "face.jpg")
    assert_reported(report, EMPTY, 1, "00002A05.jpg")
    assert_reported(report, NOT_IMAGE, 1, "00003A06.jpg")
    assert parse_aaf_name("07381a45.JPG")[0] == {"age": 45, "gender": 0}


# ---------------------------------------------------------------------------------------------------------- CSV


def make_csv_dataset(root: Path) -> Path:
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        jpeg(root / "imgs" / f"{name}.jpg")
    empty(root / "imgs" / "empty.jpg")
    text(root / "imgs" / "text.jpg")
    text(root / "imgs" / "notes.txt")
    labels_csv = root / "labels.csv"
    labels_csv.write_text(
        "Path,Age,Gender,Race,Subject\n"
        "imgs/a.jpg,25,male,white,s1\n"
        "imgs/b.jpg,30.5,1,2,s2\n"
        "imgs/c.jpg,40,3,,\n"
        "imgs/d.jpg,50,F,martian,s1\n"
        "imgs/e.jpg,,0,0,\n"
        "imgs/f.jpg,abc,0,0,\n"
        "imgs/g.jpg,130,0,0,\n"
        f"{(root / 'imgs' / 'h.jpg').resolve()},7,m,4,\n"
        "imgs/missing.jpg,20,0,0,\n"
        "imgs/empty.jpg,20,0,0,\n"
        "imgs/text.jpg,20,0,0,\n"
        "imgs/notes.txt,20,0,0,\n"
        ",20,0,0,\n"
    )
    return labels_csv


def test_csv(tmp_path):
    labels_csv = make_csv_dataset(tmp_path)
    for root in (tmp_path, labels_csv):
        records, report = read_dataset("csv", root)
        got = {n: (r.age, r.gender, r.race, r.subject) for n, r in by_name(records).items()}
        assert got == {
            "a.jpg": (25, 0, 0, "s1"),
            "b.jpg": (30.5, 1, 2, "s2"),
            "c.jpg": (40, None, None, None),
            "d.jpg": (50, 1, None, "s1"),
            "h.jpg": (7, 0, 4, None),
        }
        assert_sorted_and_counted(records, report)
        assert_reported(report, MISSING_AGE, 1, "imgs/e.jpg")
        assert_reported(report, UNPARSEABLE_AGE, 1, "imgs/f.jpg")
        assert_reported(report, AGE_OUT_OF_RANGE, 1, "imgs/g.jpg")
        assert_reported(report, FILE_NOT_FOUND, 1, "imgs/missing.jpg")
        assert_reported(report, EMPTY, 1, "imgs/empty.jpg")
        assert_reported(report, NOT_IMAGE, 1, "imgs/text.jpg")
        assert_reported(report, NOT_IMAGE_EXTENSION, 1, "imgs/notes.txt")
        assert_reported(report, "missing file path", 1, "labels.csv:14")
        assert_reported(report, INVALID_GENDER, 1, "imgs/c.jpg", dropped=True)
        assert_reported(report, INVALID_RACE, 1, "imgs/d.jpg", dropped=True)


def test_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        read_dataset("csv", tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("file_path,years\na.jpg,3\n")
    with pytest.raises(ValueError, match="age column"):
        read_dataset("csv", bad)
