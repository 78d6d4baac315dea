"""Output rows (``faceage/inference/output.py``) and ``faceage predict``'s output options: formats, stdout, escaped
file names, spreadsheet formulas, resume after a partial write and after a real ``kill -9``, exit codes, version,
progress."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from faceage.cli import main
from faceage.inference.output import PREDICT_COLUMNS, Column, OutputError, RowWriter, escape_text, neutralise_formula, output_format

FAST = ["--no-detect", "--threads", "1", "--workers", "1"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p), "OMP_NUM_THREADS": "1"}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def awkward_names(tmp_path):
    """A folder with a plain name, a name holding a non-UTF-8 byte, a formula name and a name with a newline."""
    root = tmp_path / "in"
    root.mkdir()
    names = [b"plain.png", b"bad\xff name.png", b"=HYPERLINK(\"http:x\").png", b"-minus.png", b"two\nlines.png"]
    for i, name in enumerate(names):
        Image.new("RGB", (32, 32), (10 * i, 100, 200)).save(os.path.join(os.fsencode(root), name), "PNG")
    return root


def test_text_escaping_and_formula_rule():
    assert escape_text("bad\udcff.jpg") == "bad\\xff.jpg"  # the undecodable byte 0xff, visible
    assert escape_text("a\nb\tc\x7f") == "a\\x0ab\\x09c\\x7f"  # one row per line, always
    assert escape_text("\ud800x") == "\\ud800x"  # a lone surrogate that is no escaped byte
    assert escape_text("éß 顔.jpg") == "éß 顔.jpg"  # valid text unchanged
    for text in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=x"):
        assert neutralise_formula(text) == "'" + text
    assert neutralise_formula("a=1") == "a=1" and neutralise_formula("") == ""
    assert [output_format(p) for p in ("a.csv", "a.JSONL", "a.ndjson", "a.parquet", "a.pq", "a.txt", "-", None)] == [
        "csv", "jsonl", "jsonl", "parquet", "parquet", "csv", "csv", "csv"]
    assert output_format("a.csv", "jsonl") == "jsonl"


def test_formula_rule_touches_text_columns_only(tmp_path):
    path = tmp_path / "x.csv"
    with RowWriter(path, [Column("name"), Column("delta", "float", "{:.1f}".format), Column("n", "int")]) as out:
        out.write([{"name": "-3", "delta": -3.0, "n": -3}])
    assert path.read_text().splitlines() == ["name,delta,n", "'-3,-3.0,-3"]
    jsonl = tmp_path / "x.jsonl"
    with RowWriter(jsonl, [Column("name"), Column("delta", "float")]) as out:
        out.write([{"name": "=1", "delta": None}])
    assert json.loads(jsonl.read_text()) == {"name": "=1", "delta": None}  # JSON is data, not a spreadsheet


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_awkward_file_names_never_crash_and_no_row_is_lost(fmt, awkward_names, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / f"ages.{fmt}"
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "summary: 5 ok, 0 failed" in err, err
    if fmt == "csv":
        rows = read_csv(out)
        assert len(out.read_text(encoding="utf-8").splitlines()) == 6  # header + one line per row
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert str(table.schema.field("age").type) == "double" and str(table.schema.field("face").type) == "int64"
        rows = table.to_pylist()
    files = {r["file"] for r in rows}
    assert len(rows) == len(files) == 5 and f"{awkward_names}/plain.png" in files and f"{awkward_names}/-minus.png" in files
    assert f"{awkward_names}/bad\\xff name.png" in files and f"{awkward_names}/two\\x0alines.png" in files
    assert f"{awkward_names}/=HYPERLINK(\"http:x\").png" in files  # a path starting with '/' is no formula
    ages = [float(r["age"]) for r in rows]
    assert all(0 <= a <= 110 for a in ages)


def test_bad_file_with_an_awkward_name_is_one_visible_error_line(awkward_names, tiny_model_dir, tmp_path, capsys):
    with open(os.path.join(os.fsencode(awkward_names), b"broken\xfe\n.jpg"), "wb") as f:
        f.write(b"not an image")
    out = tmp_path / "o.csv"
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error: ")] == [f"error: {awkward_names}/broken\\xfe\\x0a.jpg: not an image (unrecognised format)"]
    assert len(read_csv(out)) == 5 and err[-1].startswith("summary: 5 ok, 1 failed")


def test_formula_cell_in_csv_gets_a_quote(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative names: the cell starts with the name itself
    for name in ("=HYPERLINK(1).png", "@x.png", "ok.png"):
        Image.new("RGB", (32, 32), (40, 90, 160)).save(name, "PNG")
    assert main(["predict", "=HYPERLINK(1).png", "@x.png", "ok.png", "--model", str(tiny_model_dir), *FAST, "--output", "o.csv"]) == 0
    assert [r["file"] for r in read_csv("o.csv")] == ["'=HYPERLINK(1).png", "'@x.png", "ok.png"]
    assert main(["predict", "=HYPERLINK(1).png", "--model", str(tiny_model_dir), *FAST, "--output", "o.jsonl"]) == 0
    assert json.loads(open("o.jsonl").read())["file"] == "=HYPERLINK(1).png"
    capsys.readouterr()


def test_output_dash_is_stdout(awkward_names, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", "-"]) == 0
    captured = capsys.readouterr()
    assert not (tmp_path / "-").exists()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(rows) == 5 and any(r["file"].endswith("bad\\xff name.png") for r in rows)
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--format", "jsonl"]) == 0
    assert len([json.loads(line) for line in capsys.readouterr().out.splitlines()]) == 5
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--format", "parquet"]) == 2
    assert "parquet output needs --output FILE.parquet" in capsys.readouterr().err


def test_resume_drops_a_partial_line_and_skips_done_inputs(tmp_path):
    path = tmp_path / "r.csv"
    cols = [Column("file"), Column("n", "int")]
    with RowWriter(path, cols, key="file") as out:
        out.write([{"file": "a", "n": 0}, {"file": "a", "n": 1}])
        out.write([{"file": "=b", "n": 0}])
    with open(path, "ab") as f:
        f.write(b"c,0\r\nd,")  # a whole row of c, then a row cut off by a kill
    with RowWriter(path, cols, resume=True, key="file") as out:
        assert out.done == {"a", "'=b", "c"} and out.key_of("=b") in out.done and out.key_of("d") not in out.done
        out.write([{"file": "d", "n": 0}])
    assert path.read_text().splitlines() == ["file,n", "a,0", "a,1", "'=b,0", "c,0", "d,0"]
    with pytest.raises(OutputError, match="cannot resume: its columns are file,n, not file,m"):
        RowWriter(path, [Column("file"), Column("m")], resume=True, key="file")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(b'{"file": "a", "n": 0}\n{"file": "b", "n"')
    with RowWriter(jsonl, cols, resume=True, key="file") as out:
        assert out.done == {"a"}
        out.write([{"file": "b", "n": 1}])
    assert [json.loads(line)["file"] for line in jsonl.read_text().splitlines()] == ["a", "b"]


def test_parquet_resume_and_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from faceage.inference import output

    monkeypatch.setattr(output, "PARQUET_ROW_GROUP", 3)
    path = tmp_path / "r.parquet"
    cols = [Column("file"), Column("age", "float")]
    with RowWriter(path, cols, key="file") as out:
        for i in range(7):
            out.write([{"file": f"f{i}", "age": float(i)}])
        assert not path.exists()  # written beside, renamed at the end: never a half file under the name
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    with RowWriter(path, cols, resume=True, key="file") as out:
        assert out.done == {f"f{i}" for i in range(7)}
        out.write([{"file": "f7", "age": None}])
    assert pq.read_table(path).column("file").to_pylist() == [f"f{i}" for i in range(8)]


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(OutputError, match="parquet output needs the pyarrow package: pip install pyarrow"):
        RowWriter(tmp_path / "x.parquet", PREDICT_COLUMNS)


def test_cli_resume_after_a_partial_line(tiny_model_dir, tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(12):
        Image.new("RGB", (32, 32), (20 * i, 50, 90)).save(root / f"{i:02d}.png")
    out = tmp_path / "ages.csv"
    assert main(["predict", str(root), "--model", str(tiny_model_dir), *FAST, "--output", str(out)]) == 0
    full = out.read_bytes()
    lines = full.split(b"\r\n")
    out.write_bytes(b"\r\n".join(lines[:6]) + b"\r\n" + lines[6][:7])  # header + 5 rows, then half a row
    capsys.readouterr()
    assert main(["predict", str(root), "--model", str(tiny_model_dir), *FAST, "--output", str(out), "--resume"]) == 0
    assert "summary: 7 ok, 0 failed, 7 faces, 5 skipped" in capsys.readouterr().err
    assert sorted(out.read_bytes().split(b"\r\n")) == sorted(lines)  # the same rows, each once
    with pytest.raises(SystemExit):
        main(["predict", str(root), "--model", str(tiny_model_dir), *FAST, "--resume"])  # needs --output
    assert "--resume needs --output FILE" in capsys.readouterr().err


def test_kill_9_half_way_then_resume_gives_every_input_exactly_once(tiny_model_dir, tmp_path):
    """A real ``faceage predict`` process is killed with SIGKILL after some rows have appeared; ``--resume`` then
    completes it: every input is in the CSV exactly once and every line is a whole row."""
    root = tmp_path / "in"
    root.mkdir()
    n = 1500
    base = Image.effect_noise((192, 192), 60).convert("RGB")  # JPEG decode + resize per file: slow enough to kill
    for i in range(n):
        base.save(root / f"{i:04d}.jpg", quality=90)
    out = tmp_path / "ages.csv"
    cmd = [sys.executable, "-m", "faceage.cli", "predict", str(root), "--model", str(tiny_model_dir), *FAST, "--batch-size", "1", "--output", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") > 50:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "finished before it could be killed"
    before = len(read_csv(out))
    assert 50 <= before < n, before
    resumed = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{n - before} ok, 0 failed" in resumed.stderr or f"{n - before + 1} ok, 0 failed" in resumed.stderr, resumed.stderr[-500:]
    rows = read_csv(out)
    files = [r["file"] for r in rows]
    assert len(files) == n and sorted(files) == sorted(str(p) for p in root.iterdir())
    assert all(r["age"] and r["bottom"] == "192" for r in rows)  # whole rows only


def test_version(capsys):
    import faceage
    from faceage._version import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"faceage {__version__}"
    assert faceage.__version__ == __version__ and __version__.count(".") == 2


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 the run completed" in text and "1 with --strict" in text and "2 a failed run" in text


def test_progress_bar_on_request_and_quiet(awkward_names, tiny_model_dir, tmp_path, capsys):
    args = ["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", str(tmp_path / "o.csv")]
    assert main(args) == 0
    assert "face/s" not in capsys.readouterr().err  # stderr is not a terminal here: no bar
    assert main([*args, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "predict: 100%" in err and "5/5" in err and "face/s" in err, err
    assert main([*args, "--progress", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # quiet: no bar, no summary (errors would still print)


def test_prepare_shows_progress_on_request(tmp_path, capsys):
    src = tmp_path / "raw"
    src.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype="uint8")).save(src / f"{i}.jpg")
    assert main(["prepare", str(src), str(tmp_path / "chips"), "--workers", "1", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "prepare: 100%" in err and "4/4" in err, err
    assert main(["prepare", str(src), str(tmp_path / "chips2"), "--workers", "1"]) == 0
    assert "prepare:" not in capsys.readouterr().err  # stderr is no terminal here


def test_jsonl_carries_the_age_distribution_and_p_over(awkward_names, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        dist = row["distribution"]
        # the compact form drops tails under 1e-4: what is kept sums to one within that and its rounding
        assert isinstance(dist["start"], int) and abs(sum(dist["p"]) - 1) < 0.01
        assert 1 >= row["p_over_18"] >= row["p_over_21"] >= row["p_over_25"] >= 0
    # CSV keeps its columns unless asked
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--output", str(tmp_path / "o.csv")]) == 0
    assert "distribution" not in read_csv(tmp_path / "o.csv")[0]
    assert main(["predict", str(awkward_names), "--model", str(tiny_model_dir), *FAST, "--distribution",
                 "--output", str(tmp_path / "d.csv")]) == 0
    first = read_csv(tmp_path / "d.csv")[0]
    assert json.loads(first["distribution"])["p"] and 0 <= float(first["p_over_18"]) <= 1
