"""The app's JSON API (/predict, /verify, /compare) called with gradio_client against a server on 127.0.0.1, and the
face numbers drawn on the annotated image and heatmaps."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="gradio is not installed")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed")

from faceage.app import server  # noqa: E402
from faceage.inference.annotate import label, number_image  # noqa: E402
from faceage.inference.predictor import FaceResult, Predictor  # noqa: E402
from faceage.models.pair_scores import p_older  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(path, seed: int):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_numbered_labels_and_heatmap_numbers():
    face = FaceResult(face=1, box=(0, 0, 10, 10), age=30.4, age_low=22.0, age_high=41.0, gender="female", gender_p=0.9)
    assert label(face) == "30 (22-41) F" and label(face, numbered=True) == "#2 30 (22-41) F"
    tile = number_image(Image.new("RGB", (80, 80), (0, 0, 255)), 3)
    assert tile.getpixel((0, 0)) == (255, 40, 40) and tile.getpixel((79, 79)) == (0, 0, 255)  # number box top-left only


def test_api_endpoints_answer_json_matching_the_predictor(tiny_model_dir, tmp_path):
    predictor = Predictor(tiny_model_dir, engine="onnx", detect=False, workers=1, threads=1)
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    expected = predictor.predict(str(a))
    demo = server.build_app(predictor)
    port = _free_port()
    server.launch(demo, "127.0.0.1", port, block=False, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert {"/predict", "/verify", "/compare"} <= set(endpoints)

        got = client.predict(gradio_client.handle_file(str(a)), api_name="/predict")
        assert len(got["faces"]) == len(expected) == 1
        f, e = got["faces"][0], expected[0]
        assert f["face"] == 0 and f["number"] == 1 and f["box"] == list(e.box) == [0, 0, 48, 48]
        assert f["age"] == pytest.approx(e.age, abs=1e-6) and f["interval"] == [e.age_low, e.age_high]
        assert f["gender"] == e.gender and f["gender_p"] == pytest.approx(e.gender_p, abs=1e-6)
        assert got["level"] == 0.9 and got["calibrated"] is False

        v = client.predict(gradio_client.handle_file(str(a)), 18, api_name="/verify")
        d = predictor.decisions(expected, 18, 25.0)[0]  # no fitted policy: the challenge-25 rule, stated
        assert v["over"] == 18 and "challenge age 25" in v["policy"]
        assert v["faces"][0]["decision"] == d.decision and v["faces"][0]["rule"] == d.rule == "age>=25"
        assert v["faces"][0]["p_over"] == pytest.approx(e.p_over(18), abs=1e-6)

        c = client.predict(gradio_client.handle_file(str(a)), gradio_client.handle_file(str(b)), api_name="/compare")
        other = predictor.predict(str(b))[0]
        p = p_older({"age": e.age, "distribution": e.distribution}, {"age": other.age, "distribution": other.distribution})
        assert c["p_left_older"] == pytest.approx(p, abs=1e-6) and c["method"] == "age distributions"
        assert c["left_age"] == pytest.approx(e.age, abs=1e-6) and c["right_age"] == pytest.approx(other.age, abs=1e-6)

        (tmp_path / "bad.png").write_bytes(b"not an image at all")
        with pytest.raises(Exception, match="not a usable image|cannot be used"):
            client.predict(gradio_client.handle_file(str(tmp_path / "bad.png")), api_name="/predict")
    finally:
        demo.close()
