"""faceage describe: exact shares on a known set of records, side by side, and the command on a folder."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from faceage.cli import main
from faceage.data.records import FaceRecord
from faceage.evaluation.describe import describe_records, format_side_by_side


def test_shares_by_band_gender_and_race():
    recs = [FaceRecord("a", 5, 0, 0), FaceRecord("b", 25, 1, 1), FaceRecord("c", 25, 1, None), FaceRecord("d", 70, None, 2)]
    d = describe_records(recs, sizes=False)
    assert d["n"] == 4 and d["age"] == {"mean": 31.25, "median": 25.0, "min": 5.0, "max": 70.0}
    assert d["age_bands"] == {"0-9": 0.25, "10-19": 0.0, "20-29": 0.5, "30-44": 0.0, "45-59": 0.0, "60+": 0.25}
    assert d["gender"] == {"male": 0.25, "female": 0.5, "unknown": 0.25}
    assert d["race"]["white"] == 0.25 and d["race"]["unknown"] == 0.25 and "indian" in d["race"]
    table = format_side_by_side({"one": d, "two": describe_records(recs[:2], sizes=False)})
    lines = table.splitlines()
    assert lines[0].split() == ["one", "two"]
    assert lines[1].split() == ["faces", "4", "2"] and "age 20-29" in table and "50.0%" in table


def test_command_prints_table_and_writes_plot_and_json(tmp_path, capsys):
    root = tmp_path / "faces"
    root.mkdir()
    for i, age in enumerate([3, 30, 31, 64]):
        Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(root / f"{age}_{i % 2}_0_2017{i}.jpg.chip.jpg")
    out_json = tmp_path / "d.json"
    assert main(["describe", str(root), "--plot", str(tmp_path / "d.png"), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "faces" in printed and "age 30-44" in printed and "50.0%" in printed
    assert (tmp_path / "d.png").stat().st_size > 10_000
    data = json.loads(out_json.read_text())["faces"]
    assert data["n"] == 4 and data["image_sizes"]["median_side"] == 40
    assert main(["describe", str(tmp_path / "missing")]) == 2
