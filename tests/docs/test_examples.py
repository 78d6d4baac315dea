"""The predictions the README and the documentation print are what the bundled model prints now.

Every CSV row about the demo photo (skimage's astronaut, saved as ``make demo`` saves it) in ``README.md`` and
``docs/``, every ``age (low-high)`` label of it, and the README's picture of it, are compared with ``faceage
predict`` run on that photo: a new model or detector that changes the answer fails here until the pages say so.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PHOTO = "astronaut.jpg"
# `age (low-high)` and `age (low-high) F` labels of the photo in the pages' prose and alt texts
LABEL = re.compile(r"(\d+) \((\d+)-(\d+)\)(?: ([FM]))?")

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A folder where `faceage predict astronaut.jpg --annotate out` ran: its printed rows in ``printed.csv``, the
    annotated photo in ``out/``."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("demo")
    Image.fromarray(skimage_data.astronaut()).save(folder / PHOTO, quality=95)  # as scripts/demo.py saves it
    run = subprocess.run([str(Path(sys.executable).parent / "faceage"), "predict", PHOTO, "--annotate", "out"],
                         cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    (folder / "printed.csv").write_text(run.stdout.split("summary:")[0])
    return folder


@pytest.fixture(scope="module")
def printed(demo) -> dict[str, str]:
    """The row `faceage predict astronaut.jpg` prints, as a dict of the CSV's columns."""
    rows = list(csv.DictReader(io.StringIO((demo / "printed.csv").read_text())))
    assert len(rows) == 1, rows
    return rows[0]


def page_rows(text: str) -> list[dict[str, str]]:
    """Every CSV row about the photo in a page: the rows under a ``file,face,age,...`` header."""
    rows, header = [], None
    for line in text.splitlines():
        if line.startswith("file,face,age"):
            header = line.split(",")
        elif header and line.split(",")[0].endswith(PHOTO):
            rows.append(dict(zip(header, line.split(","))))
        elif not line.strip() or line.startswith("```"):
            header = None
    return rows


def test_every_page_prints_the_rows_the_model_prints(printed):
    found = 0
    for page in PAGES:
        for row in page_rows(page.read_text(encoding="utf-8")):
            found += 1
            name = page.relative_to(REPO)
            for key in ("face", "age", "age_low", "age_high", "gender", "race", "left", "top", "right", "bottom"):
                assert row[key] == printed[key], f"{name}: {key} {row[key]} but faceage predict prints {printed[key]}"
            for key in ("gender_p", "race_p"):
                assert float(row[key]) == pytest.approx(float(printed[key]), abs=0.002), f"{name}: {key}"
    assert found >= 2  # the README and the getting-started page


def test_every_label_of_the_photo_is_the_printed_one(printed):
    expected = (printed["age"], printed["age_low"], printed["age_high"])
    found = 0
    for page in PAGES:
        for paragraph in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
            if "astronaut" not in paragraph or "file,face,age" in paragraph:
                continue
            for match in LABEL.finditer(paragraph):
                found += 1
                assert match.groups()[:3] == expected, f"{page.relative_to(REPO)}: {match.group(0)!r}, predict prints {expected}"
                if match.group(4):
                    assert match.group(4) == printed["gender"][0].upper()
    assert found >= 2  # the README's picture and the getting-started page's prose


def test_the_readme_picture_is_the_printed_prediction(demo):
    """The picture the README and the home page show is what `--annotate` draws now (same box and label)."""
    import numpy as np
    from PIL import Image

    shown = Image.open(REPO / "docs" / "predict_astronaut.png").convert("RGB")
    drawn = Image.open(demo / "out" / PHOTO).convert("RGB").resize(shown.size, Image.Resampling.LANCZOS)
    # the picture is the annotated photo resized so (a box moved by a few pixels or another label: 4-5 grey levels)
    difference = np.abs(np.asarray(drawn, dtype=np.float64) - np.asarray(shown, dtype=np.float64)).mean()
    assert difference < 1.0, (f"docs/predict_astronaut.png is not what `faceage predict --annotate` draws (mean "
                              f"difference {difference:.2f}); save the annotated photo resized to {shown.size} with LANCZOS")
