"""`faceage predict --ray`: results survive the trip to Ray actors unchanged, and a run on a local Ray writes the
same rows (same ages) as a local run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceage.cli.predict import main as predict_main
from faceage.inference.distributed import decode_result, encode_result
from faceage.inference.predictor import FaceResult, FileResult


def test_encode_decode_round_trip_keeps_every_field_and_the_distribution():
    dist = np.array([0.1, 0.6, 0.3])
    face = FaceResult(0, (1, 2, 30, 40), 27.5, 20.0, 35.0, "female", 0.8, "white", 0.7, distribution=dist, min_age=25)
    back = decode_result(encode_result(FileResult("a.jpg", [face])), "rel/a.jpg")
    assert back.path == "rel/a.jpg" and back.error is None and back.faces == [face]  # dataclass equality: every field
    assert back.faces[0].min_age == 25 and np.array_equal(back.faces[0].distribution, dist) and back.faces[0].p_over(26) == pytest.approx(0.9)
    assert decode_result(encode_result(FileResult("b.jpg", [], "no face found"))).error == "no face found"


@pytest.mark.slow
def test_predict_on_a_local_ray_writes_the_rows_of_a_local_run(tiny_model_dir, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)  # relative names in, the same relative names out
    common = ["img0.png", "bad.png", "img1.png", "img2.png", "--model", str(tiny_model_dir), "--engine", "onnx", "--no-detect",
              "--threads", "1", "--workers", "1", "--quiet"]
    assert predict_main(common + ["--output", "local.csv"]) == 0
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - Ray's raylet must register within a fixed 30 s: an overloaded machine
        if "timed out during startup" not in str(e):
            raise
        pytest.skip(f"a local Ray could not start on this (overloaded) machine: {e}")
    try:
        assert predict_main(common + ["--output", "ray.csv", "--ray", "local"]) == 0
    finally:
        ray.shutdown()
    local, remote = (tmp_path / "local.csv").read_text(), (tmp_path / "ray.csv").read_text()
    assert remote == local and len(local.splitlines()) == 4  # header + 3 faces, same ages to the last digit
    assert "bad.png" not in local
