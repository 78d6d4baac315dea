"""Applying a stored calibration: ``p_over``, bands, calibrated intervals, decisions, the compact distribution, and
the ``"calibration"`` key surviving load/save and reaching both engines."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from faceage.inference.calibration import AgeDecision, Calibration, band_of, decide, interval_key, p_over, policy_text
from faceage.inference.predictor import FaceResult, Predictor, compact_distribution

BANDS = [[0, 9], [10, 19], [20, 29], [30, 44], [45, 59], [60, 200]]


def one_hot(ages, k=111):
    d = np.zeros((len(ages), k))
    d[np.arange(len(ages)), ages] = 1.0
    return d


def test_p_over_sums_the_mass_at_and_above_the_age():
    d = np.zeros((2, 111))
    d[0, 16], d[0, 18], d[0, 30] = 0.25, 0.25, 0.5
    d[1, 17] = 1.0
    np.testing.assert_allclose(p_over(d, 0, 18), [0.75, 0.0])
    np.testing.assert_allclose(p_over(d, 0, 17), [0.75, 1.0])
    np.testing.assert_allclose(p_over(d, 0, 17.5), [0.75, 0.0])  # rounded up to whole years
    np.testing.assert_allclose(p_over(d, 0, 0), [1.0, 1.0])
    np.testing.assert_allclose(p_over(d[:, 10:], 10, 18), [0.75, 0.0])  # min_age shifts the index


def test_band_of_uses_rounded_ages_and_open_ends():
    assert band_of(np.array([0, 9.4, 9.6, 19, 29.5, 44, 45, 59, 60, 130, -3]), BANDS).tolist() == [0, 0, 1, 1, 3, 3, 4, 4, 5, 5, 0]


def cal_config(offsets, base_level=0.9, verify=None):
    labels = ["0-9", "10-19", "20-29", "30-44", "45-59", "60+"]
    return {"method": "mondrian-cqr", "bands": BANDS, "intervals": {"0.9": {"level": 0.9, "base_level": base_level,
            "offsets": dict(zip(labels, offsets))}}, "verify": verify or {}}


def test_calibrated_interval_adds_the_band_offset_and_clips_to_the_age_range():
    cal = Calibration(cal_config([3, 1, 0, -1, 5, 8]), 0, 110)
    ages = np.array([2, 15, 25, 35, 50, 105])
    lo, hi = cal.intervals(one_hot(ages), ages.astype(float), 0.9)
    assert lo.tolist() == [0, 14, 25, 36, 45, 97]  # 2-3 clipped to 0
    assert hi.tolist() == [5, 16, 25, 34, 55, 110]  # 105+8 clipped to 110; a negative offset narrows (-1)
    assert cal.levels == [0.9] and cal.has_level(0.9) and not cal.has_level(0.8)
    with pytest.raises(KeyError):
        cal.intervals(one_hot(ages), ages, 0.8)


def test_decide_by_threshold_or_challenge_age():
    passed, rule = decide(np.array([0.5, 0.97, 0.99]), np.array([20, 30, 40]), 18, threshold=0.97)
    assert passed.tolist() == [False, True, True] and rule == "p_over>=0.97"
    passed, rule = decide(None, np.array([24, 25, 26]), 18, challenge=25)
    assert passed.tolist() == [False, True, True] and rule == "age>=25"
    with pytest.raises(ValueError, match="faceage calibrate --over 18"):
        decide(np.array([0.5]), np.array([20]), 18)


def test_compact_distribution_and_face_result():
    d = np.zeros(111)
    d[20], d[21], d[22], d[90] = 0.5, 0.3, 0.19996, 0.00004
    assert compact_distribution(d) == {"start": 20, "p": [0.5, 0.3, 0.2]}
    face = FaceResult(face=0, box=(0, 0, 1, 1), age=21.0, age_low=20.0, age_high=22.0, distribution=d, min_age=0)
    assert face.p_over(21) == pytest.approx(0.50000)
    assert "distribution" not in face.to_dict() and "min_age" not in face.to_dict()
    assert face.to_dict(distribution=True)["distribution"] == {"start": 20, "p": [0.5, 0.3, 0.2]}
    assert FaceResult(face=0, box=(0, 0, 1, 1), age=3.0).p_over(18) is None
    assert interval_key(0.9) == "0.9" and interval_key(0.95) == "0.95"


def test_policy_text_states_the_threshold_and_rates():
    policy = {"over": 18, "threshold": 0.9671, "max_fpr": 0.01, "minor_ages": [13, 17], "adult_age": 25, "n_minors": 53, "fpr": 0.0,
              "fpr_upper95": 0.0672, "n_adults": 4836, "adult_pass": 0.541, "challenge": {}}
    assert policy_text(policy, 18) == (
        "policy: over 18 when P(age >= 18) >= 0.9671, chosen so that at most 1% of calibration faces aged 13-17 pass; measured on the calibration data: 53 faces "
        "aged 13-17: 0.00% pass (95% upper bound 6.72%); 54.1% of 4836 faces aged 25+ pass (referral 45.9%)")
    assert policy_text(None, 21) == "policy: none fitted for over 21"


@pytest.fixture(scope="module")
def calibrated_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a stored calibration (offset +2 everywhere, an over-18 policy at 0.5)."""
    directory = tmp_path_factory.mktemp("calibrated")
    for f in tiny_model_dir.iterdir():
        shutil.copy(f, directory / f.name)
    config = json.loads((directory / "config.json").read_text())
    config["calibration"] = cal_config([2] * 6, verify={"18": {"over": 18, "threshold": 0.5, "max_fpr": 0.01, "minor_ages": [13, 17]}})
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_predictor_reports_the_calibrated_interval_and_verifies(calibrated_dir, tiny_model_dir, image_zoo, engine, one_torch_thread):
    image = image_zoo.valid["webp"][0]
    raw = Predictor(str(tiny_model_dir), engine=engine, detect=False, threads=1).predict(image)[0]
    cal_pred = Predictor(str(calibrated_dir), engine=engine, detect=False, threads=1)
    face = cal_pred.predict(image)[0]
    assert face.age == raw.age and face.age_low == max(0, raw.age_low - 2) and face.age_high == min(110, raw.age_high + 2)
    assert Predictor(str(calibrated_dir), engine=engine, detect=False, threads=1, calibrated=False).predict(image)[0].interval == raw.interval
    decision = cal_pred.verify(image, over=18)[0]
    assert isinstance(decision, AgeDecision) and decision.p_over == pytest.approx(face.p_over(18))
    assert decision.decision == ("pass" if face.p_over(18) >= 0.5 else "refer") and decision.rule == "p_over>=0.5"
    assert cal_pred.verify(image, over=18, challenge=25)[0].decision == ("pass" if face.age >= 25 else "refer")
    with pytest.raises(ValueError, match="calibrated at level"):
        Predictor(str(calibrated_dir), engine=engine, detect=False, threads=1, level=0.8)


def test_load_and_save_carry_the_calibration(calibrated_dir, tmp_path):
    from faceage.models.age_model import load_model

    model = load_model(calibrated_dir)
    assert model.config["calibration"]["intervals"]["0.9"]["offsets"]["0-9"] == 2
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["calibration"] == model.config["calibration"]


def test_policy_text_for_a_challenge_rule_without_measurements():
    assert policy_text(None, 18, 25) == ("policy: over 18 by challenge age 25 (pass when the estimated age is >= 25); error rates not "
                                         "measured for this model (`faceage calibrate`)")
