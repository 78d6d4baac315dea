"""Fitting calibrated intervals and over-N policies: exact conformal quantiles, offsets and thresholds on synthetic
distributions; ``faceage calibrate`` and ``faceage verify`` end to end on a tiny model; real faces when present."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from faceage.cli import main
from faceage.evaluation.calibration import (
    choose_threshold,
    conformal_quantile,
    coverage_table,
    decision_rates,
    fit_calibration,
    fit_intervals,
    fit_over_policy,
    upper_bound,
    write_calibration,
)
from faceage.inference.calibration import Calibration


def one_hot(ages, k=111):
    d = np.zeros((len(ages), k))
    d[np.arange(len(ages)), np.asarray(ages, int)] = 1.0
    return d


def test_conformal_quantile_is_the_ceil_n_plus_1_rank():
    scores = np.arange(1, 10)  # n = 9
    assert conformal_quantile(scores, 0.9) == 9  # rank ceil(10 * 0.9) = 9
    assert conformal_quantile(scores, 0.8) == 8
    assert conformal_quantile(scores[::-1], 0.5) == 5
    assert conformal_quantile(np.arange(5), 0.9) == float("inf")  # rank 6 > 5: no finite offset


def test_offset_of_point_predictions_with_known_errors():
    # 19 faces predicted 25 (one-hot: base interval [25, 25]) with errors 0, +-1, ..., +-9: scores 0,1,1,...,9,9
    errors = np.array([0, *range(1, 10), *range(-9, 0)])
    true = 25 + errors
    fit = fit_intervals(one_hot([25] * 19), np.full(19, 25.0), true, level=0.9, min_band_n=1)
    assert fit["offsets"]["20-29"] == 9 and fit["n"]["20-29"] == 19 and fit["n"]["0-9"] == 0
    assert fit["offsets"]["0-9"] == fit["pooled_offset"] == 9  # empty bands take the pooled offset
    assert fit_intervals(one_hot([25] * 19), np.full(19, 25.0), true, level=0.5, min_band_n=1)["offsets"]["20-29"] == 5  # rank 10


def test_known_distribution_coverage_and_a_negative_offset():
    # uniform over 20..29: the raw central 90% interval is [20, 29] and covers all ten true ages 20..29
    dist = np.zeros((10, 111))
    dist[:, 20:30] = 0.1
    true = np.arange(20, 30)
    pred = np.full(10, 24.5)
    raw = Calibration({"bands": [[0, 200]], "intervals": {"0.9": {"level": 0.9, "offsets": {"0+": 0}}}}).intervals(dist, pred)
    assert raw[0].tolist() == [20] * 10 and raw[1].tolist() == [29] * 10
    # conformalizing the 90% interval: scores max(20 - y, y - 29) = 0,-1,-2,-3,-4,-4,-3,-2,-1,0; level 0.5 -> rank 6 of
    # the sorted scores = -2, a narrower [22, 27]; level 0.8 -> rank 9 = 0 (the raw interval)
    cal = fit_calibration(dist, pred, true, levels=[0.5, 0.8], overs=[], bands=[[0, 200]], base_level=0.9)
    assert cal["intervals"]["0.5"]["offsets"] == {"0+": -2} and cal["intervals"]["0.8"]["offsets"] == {"0+": 0}  # n=10: pooled
    lo, hi = Calibration(cal).intervals(dist, pred, 0.5)
    assert lo.tolist() == [22] * 10 and hi.tolist() == [27] * 10
    assert cal["intervals"]["0.5"]["fitted"]["overall"] == {"n": 10, "coverage": 0.6, "width": 5.0}
    # with the default base level (= level) the central 50% interval [22, 27] is conformalized: scores 2,1,0,-1,-2,..,2 -> 0
    assert fit_calibration(dist, pred, true, levels=[0.5], overs=[], bands=[[0, 200]])["intervals"]["0.5"]["offsets"] == {"0+": 0}
    assert cal["intervals"]["0.8"]["fitted"]["overall"] == {"n": 10, "coverage": 1.0, "width": 9.0}


def test_mondrian_offsets_hold_coverage_in_each_band():
    # children: errors within +-1; adults: within +-8. One pooled offset would over-cover children and under-cover adults.
    child_err = np.tile([-1, 0, 1], 20)  # 60 faces
    adult_err = np.tile(np.arange(-8, 9), 4)  # 68 faces
    pred = np.concatenate([np.full(60, 5), np.full(68, 40)])
    true = pred + np.concatenate([child_err, adult_err])
    fit = fit_intervals(one_hot(pred), pred.astype(float), true, level=0.9)
    assert fit["offsets"]["0-9"] == 1 and fit["offsets"]["30-44"] == 8
    assert fit["n"] == {"0-9": 60, "10-19": 0, "20-29": 0, "30-44": 68, "45-59": 0, "60+": 0}
    cal = {"bands": [[0, 9], [10, 19], [20, 29], [30, 44], [45, 59], [60, 200]], "intervals": {"0.9": fit}}
    lo, hi = Calibration(cal).intervals(one_hot(pred), pred.astype(float))
    table = coverage_table(lo, hi, true)
    assert table["bands"]["0-9"] == {"n": 60, "coverage": 1.0, "width": 2.0}
    assert table["bands"]["30-44"] == {"n": 52, "coverage": 1.0, "width": 16.0}  # by TRUE age: 40-8..44
    assert table["bands"]["45-59"] == {"n": 16, "coverage": 1.0, "width": 16.0}
    assert table["overall"] == {"n": 128, "coverage": 1.0, "width": (60 * 2 + 68 * 16) / 128}
    pooled = fit["pooled_offset"]  # scores: 60 of {0,1} and 68 of 0..8 -> rank ceil(129 * 0.9) = 117 -> 7
    assert pooled == 7


def test_choose_threshold_allows_at_most_the_stated_share():
    p = np.arange(1, 11) / 10  # 0.1 .. 1.0, ten minors
    t = choose_threshold(p, 0.1)
    assert t == np.nextafter(0.9, 1) and (p >= t).sum() == 1
    assert choose_threshold(p, 0.01) == np.nextafter(1.0, 2) and (p >= choose_threshold(p, 0.01)).sum() == 0
    assert (p >= choose_threshold(p, 0.2)).sum() == 2
    ties = np.full(10, 0.5)
    assert (ties >= choose_threshold(ties, 0.1)).sum() == 0  # ties with the first failing score fail too
    with pytest.raises(ValueError, match="no calibration faces"):
        choose_threshold(np.array([]), 0.01)


def test_over_policy_rates_and_upper_bound():
    # ten 13-17-year-olds with p 0.1..1.0, ten 30-year-olds with p 0.95..0.995 (step .005), two 20-year-olds
    true = np.array([13, 14, 15, 16, 17] * 2 + [30] * 10 + [20, 20])
    p = np.concatenate([np.arange(1, 11) / 10, 0.95 + 0.005 * np.arange(10), [0.5, 0.99]])
    ages = np.concatenate([np.full(10, 16.0), np.full(10, 26.0), [24.0, 25.0]])
    pol = fit_over_policy(p, ages, true, 18, max_fpr=0.1)
    assert pol["threshold"] == np.nextafter(0.9, 1)
    assert pol["n_minors"] == 10 and pol["fpr"] == 0.1 and pol["n_adults"] == 10 and pol["adult_pass"] == 1.0
    assert pol["minor_ages"] == [13, 17] and pol["n_under"] == 10 and pol["under_pass"] == 0.1
    assert pol["fpr_upper95"] == pytest.approx(upper_bound(1, 10)) and upper_bound(1, 10) == pytest.approx(0.44501611083938096)
    assert upper_bound(0, 10) == pytest.approx(1 - 0.025 ** (1 / 10))  # Clopper-Pearson, k = 0
    ch = pol["challenge"]["25"]  # age >= 25: no minor, every adult
    assert ch["fpr"] == 0.0 and ch["adult_pass"] == 1.0
    strict = fit_over_policy(p, ages, true, 18, max_fpr=0.01)
    assert strict["fpr"] == 0.0 and strict["adult_pass"] == 0.0  # nobody passes above 1.0
    assert decision_rates(np.zeros(3, bool), np.array([30, 40, 50]), 18)["fpr"] is None


def test_write_calibration_keeps_the_rest_of_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "x", "metrics": {"a": 1}}))
    write_calibration(tmp_path, {"method": "mondrian-cqr"})
    assert json.loads((tmp_path / "config.json").read_text()) == {"backbone": "x", "metrics": {"a": 1}, "calibration": {"method": "mondrian-cqr"}}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dir, directory)
    return directory


def test_calibrate_then_verify_cli(model_copy, utkface_tree, tmp_path, capsys, one_torch_thread):
    (utkface_tree / "broken_0_0_20170101000000000.jpg.chip.jpg").write_bytes(b"not an image")
    names = tmp_path / "names.txt"
    files = sorted(p.name for p in utkface_tree.iterdir())
    names.write_text("\n".join(files) + "\nmissing.jpg\n")
    rc = main(["calibrate", str(model_copy), "--data", str(utkface_tree), "--names", str(names), "--over", "18", "21", "--max-fpr", "0.5"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "level 0.9 (from the raw " in out and "policy: over 18 when P(age >= 18) >=" in out and "wrote the calibration" in out
    cal = json.loads((model_copy / "config.json").read_text())["calibration"]
    assert cal["n"] == 96 and set(cal["verify"]) == {"18", "21"} and cal["intervals"]["0.9"]["fitted"]["overall"]["coverage"] >= 0.9
    assert "2 listed name(s) not found" in err and "1 skipped" in err  # missing.jpg, and the broken file the reader skipped
    # verify with the fitted policy: CSV + the policy on stderr; a bad file is one line, the run completes (exit 0),
    # and --strict makes the failed file exit 1, as in predict
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out_csv = tmp_path / "v.csv"
    rc = main(["verify", "--over", "18", str(utkface_tree / files[0]), str(bad), "--no-detect", "--model", str(model_copy), "--output", str(out_csv)])
    err = capsys.readouterr().err
    assert rc == 0 and "policy: over 18 when P(age >= 18)" in err and f"error: {bad}:" in err and "summary: 1 ok, 1 failed, 1 faces" in err
    assert main(["verify", "--over", "18", str(bad), "--no-detect", "--model", str(model_copy), "--strict", "--quiet"]) == 1
    capsys.readouterr()
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["file", "face", "age", "decision", "p_over", "rule", "age_low", "age_high"]
    assert rows[0]["decision"] in ("pass", "refer") and rows[0]["rule"].startswith("p_over>=")
    rc = main(["verify", "--over", "18", "--challenge", "25", str(utkface_tree / files[0]), "--no-detect", "--model", str(model_copy)])
    captured = capsys.readouterr()
    assert rc == 0 and "challenge age 25" in captured.err and "age>=25" in captured.out
    rc = main(["verify", "--over", "30", str(utkface_tree / files[0]), "--no-detect", "--model", str(model_copy)])
    assert rc == 2 and "no over-30 policy fitted" in capsys.readouterr().err


def test_calibrate_rejects_a_folder_without_a_model(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the checkout
UTK, PART1 = SHARED / "utkface", SHARED / "utkface-part1"


@pytest.mark.data
@pytest.mark.skipif(not (UTK.is_dir() and PART1.is_dir()), reason=f"real faces not found at {UTK} and {PART1}: real-data calibration test skipped")
def test_real_faces_calibrated_coverage_on_held_out_half(tmp_path):
    """Fit on 1,000 faces the bundled model did not train on, check on 1,000 others (ONNX engine)."""
    from faceage.evaluation.calibration import collect
    from faceage.inference.predictor import Predictor
    from faceage.models.pretrained import bundled_model_dir

    part1 = set(os.listdir(PART1))
    names = sorted(n for n in os.listdir(UTK) if n not in part1)
    names = [names[i] for i in np.random.default_rng(1).permutation(len(names))[:2000]]
    predictor = Predictor(bundled_model_dir(), engine="onnx", detect=False, calibrated=False)
    dist, ages, true, problems = collect(predictor, [str(UTK / n) for n in names], [int(n.split("_")[0]) for n in names])
    assert not problems
    cal = fit_calibration(dist[:1000], ages[:1000], true[:1000], overs=[18])
    lo, hi = Calibration(cal).intervals(dist[1000:], ages[1000:])
    table = coverage_table(lo, hi, true[1000:])
    assert table["overall"]["coverage"] >= 0.88
    assert all(r["coverage"] >= 0.75 for r in table["bands"].values() if r["n"] >= 50)


def test_calibrate_on_a_saved_split_and_export_carries_it(model_copy, utkface_tree, tmp_path, capsys, one_torch_thread):
    from faceage.data.readers import read_dataset
    from faceage.data.splits import save_split, split_records

    records, _ = read_dataset("utkface", utkface_tree)
    split = split_records(records, val_fraction=0.5, test_fraction=0.1, seed=0)
    save_split(split, tmp_path / "split.json", records)
    rc = main(["calibrate", str(model_copy), "--data", str(utkface_tree), "--split", str(tmp_path / "split.json"), "--level", "0.8", "0.9",
               "--engine", "torch"])
    out = capsys.readouterr().out
    assert rc == 0 and "level 0.8 (from the raw " in out and "level 0.9 (from the raw " in out
    cal = json.loads((model_copy / "config.json").read_text())["calibration"]
    assert cal["n"] == len(split["val"]) and "val split of" in cal["data"] and "engine torch" in cal["data"]
    assert main(["export", str(model_copy), "--output", str(tmp_path / "exported" / "model.onnx")]) == 0
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["calibration"] == cal


def test_choose_base_level_cross_fits_and_breaks_ties_upwards():
    from faceage.evaluation.calibration import choose_base_level

    # point predictions: every raw interval is [a, a] whatever its level, so every candidate is as narrow: the highest wins
    rng = np.random.default_rng(0)
    pred = rng.integers(20, 60, 200)
    true = pred + rng.integers(-3, 4, 200)
    base, widths = choose_base_level(one_hot(pred), pred.astype(float), true, level=0.9)
    assert base == 0.9 and set(widths) == {"0.5", "0.6", "0.7", "0.8", "0.9"} and len(set(widths.values())) == 1
    # the fit records what was chosen and the candidates' widths; a fixed base level records none
    cal = fit_calibration(one_hot(pred), pred.astype(float), true, overs=[], base_level="auto")
    assert cal["intervals"]["0.9"]["base_level"] == 0.9 and cal["intervals"]["0.9"]["base_level_widths"] == widths
    assert "base_level_widths" not in fit_calibration(one_hot(pred), pred.astype(float), true, overs=[], base_level=0.8)["intervals"]["0.9"]


def test_normalised_scores_widen_intervals_where_the_distribution_is_wide():
    from faceage.evaluation.calibration import fit_intervals
    from faceage.inference.calibration import Calibration, spread

    rng = np.random.default_rng(0)
    ages_axis = np.arange(111)
    n = 2000
    centre = rng.uniform(20, 60, n)
    sd = np.where(rng.random(n) < 0.5, 2.0, 8.0)  # half the faces the model is sure of, half not
    true = centre + rng.normal(0, sd)  # errors as large as the model says they are
    dist = np.exp(-0.5 * ((ages_axis[None] - centre[:, None]) / sd[:, None]) ** 2)
    dist /= dist.sum(axis=1, keepdims=True)
    assert np.allclose(spread(dist)[sd == 2.0], 2.0, atol=0.05)
    for scale in (None, "std"):
        fit = fit_intervals(dist, centre, true, level=0.9, base_level=0.5, scale=scale)
        lo, hi = Calibration({"bands": [[0, 9], [10, 19], [20, 29], [30, 44], [45, 59], [60, 200]], "intervals": {"0.9": fit}}).intervals(dist, centre, 0.9)
        covered = (true >= lo) & (true <= hi)
        by_sd = {s: covered[sd == s].mean() for s in (2.0, 8.0)}
        if scale == "std":
            assert fit["scale"] == "std"
            assert min(by_sd.values()) > 0.86  # coverage holds for the sure and the unsure faces alike
        else:
            assert by_sd[8.0] < 0.86 < by_sd[2.0]  # one offset per band over-covers the sure and under-covers the unsure


def test_over_policy_holds_the_rate_in_every_dataset():
    from faceage.evaluation.calibration import fit_over_policy

    rng = np.random.default_rng(1)
    true = np.concatenate([rng.integers(13, 40, 600), rng.integers(13, 40, 600)]).astype(float)
    groups = ["a"] * 600 + ["b"] * 600
    # dataset b's minors look older to the model than dataset a's
    p = np.clip((true - 17) / 10 + np.where(np.array(groups) == "b", 0.3, 0.0) + rng.normal(0, 0.1, 1200), 0, 1)
    pooled = fit_over_policy(p, true, true, 18, max_fpr=0.01)
    each = fit_over_policy(p, true, true, 18, max_fpr=0.01, groups=groups)
    assert each["threshold"] >= pooled["threshold"]
    assert all(r["fpr"] <= 0.01 for r in each["by_dataset"].values())
