"""``faceage compare``: two images and pair CSVs, with an age model (age-difference comparator) or a pair model;
bad rows reported per row while the others are written (``--no-detect`` on generated faces)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from faceage.cli import main
from faceage.inference.compare import FaceComparer
from faceage.models.pairs import create_pair_model, load_pair_model

FAST = ["--no-detect", "--threads", "1", "--workers", "1"]


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Six generated faces (24..32 px, UTKFace-style names) in ``faces/``, a non-image and a pair-file folder."""
    root = tmp_path_factory.mktemp("compare")
    (root / "faces").mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        size = 24 + i
        path = root / "faces" / f"{10 + 10 * i}_{i % 2}_{i % 5}_2017010{i}000000000.jpg.chip.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (root / "faces" / "notes.jpg").write_text("not an image\n")
    return root, paths


@pytest.fixture(scope="module")
def siamese_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_pair_model("siamese", backbone="resnet18", image_size=32, hidden=[8])
    return model.save_pretrained(tmp_path_factory.mktemp("siamese"))


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("which", ["age", "pair"])
def test_two_images(which, faces, tiny_model_dir, siamese_dir, capsys):
    _, paths = faces
    model = tiny_model_dir if which == "age" else siamese_dir
    assert main(["compare", str(paths[0]), str(paths[1]), "--model", str(model), *FAST]) == 0
    out = capsys.readouterr().out
    assert "is older than" in out or "cannot tell" in out
    p = float(out.split("p_left_older=")[1].split()[0])
    expected = FaceComparer(str(model), detect=False, threads=1).compare_files(str(paths[0]), str(paths[1]))
    assert p == pytest.approx(expected, abs=1e-4)
    assert ("(siamese)" if which == "pair" else "(age_difference)") in out


def test_age_model_path_matches_torch_comparator(faces, tiny_model_dir):
    """The engine (numpy) path of ``compare`` and the torch ``AgeDifferenceComparator`` agree."""
    _, paths = faces
    comparer = FaceComparer(str(tiny_model_dir), detect=False, threads=1)
    left = np.stack([comparer.prepare(str(p)) for p in paths[:3]])
    right = np.stack([comparer.prepare(str(p)) for p in paths[3:]])
    numpy_p = comparer.p_left_older(left, right)
    torch_p = load_pair_model(tiny_model_dir).predict_proba(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    assert np.allclose(numpy_p, torch_p, atol=1e-4)
    assert np.allclose(comparer.p_left_older(left, right) + comparer.p_left_older(right, left), 1.0, atol=1e-4)


@pytest.mark.parametrize("which", ["age", "pair"])
def test_pair_csv(which, faces, tiny_model_dir, siamese_dir, tmp_path, capsys):
    root, paths = faces
    pairs = root / "pairs.csv"  # paths relative to the CSV's folder
    pairs.write_text("left,right,label\n" + "".join(f"faces/{a.name},faces/{b.name},\n" for a, b in zip(paths[:3], paths[3:])))
    out = tmp_path / "out.csv"
    model = tiny_model_dir if which == "age" else siamese_dir
    assert main(["compare", "--pairs", str(pairs), "--output", str(out), "--model", str(model), *FAST]) == 0
    rows = read_rows(out)
    assert rows[0] == ["left", "right", "p_left_older"] and len(rows) == 4
    assert [r[:2] for r in rows[1:]] == [[f"faces/{a.name}", f"faces/{b.name}"] for a, b in zip(paths[:3], paths[3:])]
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows[1:])
    assert "summary: 3 pairs ok, 0 failed" in capsys.readouterr().err


def test_bad_rows_are_reported_and_the_rest_written(faces, tiny_model_dir, tmp_path, capsys):
    root, paths = faces
    pairs = tmp_path / "pairs.csv"
    good = [(str(paths[0]), str(paths[1])), (str(paths[2]), str(paths[3]))]
    pairs.write_text(
        f"{good[0][0]},{good[0][1]}\n"
        f"{root}/faces/missing.jpg,{paths[1]}\n"
        f"{paths[2]},{root}/faces/notes.jpg\n"
        "just-one-field\n"
        f"{good[1][0]},{good[1][1]}\n"
    )
    out = tmp_path / "out.csv"
    assert main(["compare", "--pairs", str(pairs), "--output", str(out), "--model", str(tiny_model_dir), *FAST]) == 0
    err = capsys.readouterr().err  # the run completed: bad rows get their error lines, the exit status stays 0
    assert f"error: row 2: {root}/faces/missing.jpg: file not found" in err
    assert f"error: row 3: {root}/faces/notes.jpg: not an image" in err
    assert "error: row 4: expected 'left,right[,label]'" in err
    assert "summary: 2 pairs ok, 3 failed" in err
    assert [r[:2] for r in read_rows(out)[1:]] == [list(g) for g in good]
    assert main(["compare", "--pairs", str(pairs), "--output", str(out), "--model", str(tiny_model_dir), *FAST, "--strict"]) == 1
    capsys.readouterr()
    empty = tmp_path / "empty.csv"
    empty.write_text("left,right\n")
    assert main(["compare", "--pairs", str(empty), "--model", str(tiny_model_dir), *FAST]) == 2
    assert "no pairs in" in capsys.readouterr().err


def test_each_distinct_face_is_run_once(faces, tiny_model_dir, tmp_path, capsys):
    """A pair file over few faces: the engine sees each distinct face once (cache by path and detection settings),
    and the probabilities equal the pair-by-pair ones."""
    root, paths = faces
    rng = np.random.default_rng(0)
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, 6, (300, 2)) if a != b]
    (root / "many.csv").write_text("".join(f"faces/{paths[a].name},faces/{paths[b].name}\n" for a, b in pairs))
    comparer = FaceComparer(str(tiny_model_dir), detect=False, threads=1, workers=1)
    seen, run = [0], comparer.prepper.run

    def counting(batch):
        seen[0] += len(batch)
        return run(batch)

    comparer.prepper.run = counting
    from faceage.inference.compare import compare_pair_file

    results = list(compare_pair_file(comparer, root / "many.csv"))
    assert seen[0] == 6  # 6 distinct faces, not 2 x len(pairs) crops
    assert len(results) == len(pairs) and all(r.error is None for r in results)
    direct = FaceComparer(str(tiny_model_dir), detect=False, threads=1, workers=1)
    left = np.stack([direct.prepare(str(paths[a])) for a, _ in pairs])
    right = np.stack([direct.prepare(str(paths[b])) for _, b in pairs])
    np.testing.assert_allclose([r.p_left_older for r in results], direct.p_left_older(left, right), atol=1e-6)
    assert comparer.cache_key("x") != FaceComparer(str(tiny_model_dir), detect=True, threads=1).cache_key("x")
    list(compare_pair_file(comparer, root / "many.csv"))
    assert seen[0] == 6  # a second pass over the same faces comes from the cache


def test_pair_output_formats_and_progress(faces, tiny_model_dir, tmp_path, capsys):
    import json

    root, paths = faces
    pairs = root / "fmt.csv"
    pairs.write_text(f"faces/{paths[0].name},faces/{paths[1].name}\n=cmd,faces/{paths[1].name}\n")
    out = tmp_path / "o.jsonl"
    assert main(["compare", "--pairs", str(pairs), "--output", str(out), "--model", str(tiny_model_dir), *FAST, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "compare: 100%" in err and "2/2" in err and "error: row 2: =cmd: file not found" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and set(rows[0]) == {"left", "right", "p_left_older"} and 0 <= rows[0]["p_left_older"] <= 1


def test_argument_and_model_errors(faces, tiny_model_dir, tmp_path, capsys, monkeypatch):
    _, paths = faces
    with pytest.raises(SystemExit):
        main(["compare", str(paths[0])])
    assert main(["compare", "--pairs", str(tmp_path / "none.csv"), *FAST]) == 2
    assert "pair file not found" in capsys.readouterr().err
    assert main(["compare", str(paths[0]), str(paths[1]), "--model", str(tmp_path / "nope"), *FAST]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["compare", str(paths[0]), str(tmp_path / "missing.jpg"), "--model", str(tiny_model_dir), *FAST]) == 1
    assert "file not found" in capsys.readouterr().err
    monkeypatch.setenv("FACEAGE_MODEL", str(tiny_model_dir))  # the "bundled" default model
    assert main(["compare", str(paths[0]), str(paths[1]), *FAST]) == 0
    assert "(age_difference)" in capsys.readouterr().out


def test_resume_skips_the_pairs_already_written(faces, tiny_model_dir, tmp_path, capsys):
    """A repeated pair is skipped as often as it is already in the output; a cut-off last line is dropped."""
    root, paths = faces
    pairs = root / "resume.csv"
    names = [f"faces/{p.name}" for p in paths]
    rows = [(names[0], names[1]), (names[2], names[3]), (names[0], names[1]), (names[4], names[5]), (names[1], names[2])]
    pairs.write_text("".join(f"{a},{b}\n" for a, b in rows))
    out = tmp_path / "o.csv"
    args = ["compare", "--pairs", str(pairs), "--output", str(out), "--model", str(tiny_model_dir), *FAST]
    assert main(args) == 0
    full = out.read_text().splitlines()
    out.write_text("\r\n".join(full[:3]) + "\r\n" + full[3][:5])  # header + 2 rows + half a row
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "summary: 3 pairs ok, 0 failed, 2 skipped" in capsys.readouterr().err
    assert out.read_text().splitlines() == full  # the same rows in the same order, each once
    with pytest.raises(SystemExit):
        main(["compare", "--pairs", str(pairs), "--resume", "--model", str(tiny_model_dir), *FAST])
    assert "--resume needs --pairs and --output FILE" in capsys.readouterr().err
