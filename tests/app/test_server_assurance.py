"""The app's calibrated interval label and its "over 18?" check (handlers only; no browser)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="gradio is not installed")

from faceage.app import handlers  # noqa: E402
from faceage.inference.calibration import AgeDecision  # noqa: E402
from faceage.inference.predictor import FaceResult  # noqa: E402


def test_faces_markdown_with_an_over_18_column_and_the_policy_line():
    face = FaceResult(face=0, box=(0, 0, 10, 10), age=30.0, age_low=22.0, age_high=41.0, gender="female", gender_p=0.9)
    d = AgeDecision(0, 30.0, 18, "pass", 0.991, "p_over>=0.97", "fpr<=0.01@13-17")
    text = handlers.faces_markdown([face], 0.9, True, [d], "policy: over 18 when ...")
    assert "| face | age | 90% interval (calibrated) | gender | over 18? |" in text
    assert "| 1 | 30 | 22–41 | female (90%) | pass (P=0.99) |" in text
    assert text.endswith("*policy: over 18 when .... pass = confidently over; refer = check ID.*")
    assert "over 18?" not in handlers.faces_markdown([face]) and "| face | age | 90% interval | gender |" in handlers.faces_markdown([face])


def test_analyse_photo_over_18_check_uses_the_fitted_policy_or_challenge_25(tiny_model_dir, tmp_path, one_torch_thread):
    from faceage.inference.predictor import Predictor

    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    plain = Predictor(tiny_model_dir, detect=False, workers=1, threads=1)
    _, text, _ = handlers.analyse_photo(plain, face, check_over=18)
    assert "over 18? |" in text and "challenge age 25" in text  # no fitted policy: the retail rule, stated
    calibrated = tmp_path / "m"
    shutil.copytree(tiny_model_dir, calibrated)
    config = json.loads((calibrated / "config.json").read_text())
    config["calibration"] = {"bands": [[0, 200]], "intervals": {"0.9": {"level": 0.9, "offsets": {"0+": 1}}},
                             "verify": {"18": {"over": 18, "threshold": 0.0, "max_fpr": 0.01, "minor_ages": [13, 17], "adult_age": 25,
                                               "n_minors": 100, "fpr": 0.01, "fpr_upper95": 0.054, "n_adults": 900, "adult_pass": 0.9}}}
    (calibrated / "config.json").write_text(json.dumps(config))
    _, text, _ = handlers.analyse_photo(Predictor(calibrated, detect=False, workers=1, threads=1), face, check_over=18)
    assert "90% interval (calibrated)" in text and "| pass (P=" in text  # threshold 0: every face passes
    assert "measured on the calibration data: 100 faces aged 13-17: 1.00% pass (95% upper bound 5.40%)" in text
