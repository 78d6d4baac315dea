"""NIST-style age-assurance figures: cell-averaged MAE, Acc(x), FPR/referral by group, coverage by group, curves, plots."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.evaluation.assurance import (
    accuracy_within,
    assurance_report,
    cell_mae,
    decision_table,
    fpr_referral_curve,
    interval_table,
    plot_coverage_by_band,
    plot_decision_curve,
    plot_fpr_referral,
)


def test_cell_mae_weighs_each_sex_by_age_cell_equally():
    # 9 male 30-44 faces with error 1, one female 0-9 face with error 11: sample MAE 2.0, cell MAE (1 + 11) / 2 = 6
    true = np.array([35] * 9 + [5])
    pred = true + np.array([1] * 9 + [11])
    gender = np.array([0] * 9 + [1])
    out = cell_mae(pred, true, gender)
    assert out["mae_cells"] == 6.0 and out["n_cells"] == 2
    assert out["cells"] == {"male/30-44": {"n": 9, "mae": 1.0}, "female/0-9": {"n": 1, "mae": 11.0}}
    assert cell_mae(pred, true, np.full(10, -1))["mae_cells"] is None  # unknown gender: no cell


def test_accuracy_within_x_years():
    err = np.array([0, 1, 2, 3, 5, 6, 10, 11])
    assert accuracy_within(30 + err, np.full(8, 30)) == {"acc@1": 0.25, "acc@2": 0.375, "acc@3": 0.5, "acc@5": 0.625, "acc@10": 0.875}


def test_decision_table_rates_by_group():
    # ages 15 x4 (one passes), 20 x2 (both pass), 30 x4 (one referred); gender alternates
    true = np.array([15, 15, 15, 15, 20, 20, 30, 30, 30, 30])
    passed = np.array([1, 0, 0, 0, 1, 1, 1, 1, 1, 0], bool)
    gender = np.array([0, 1] * 5)
    t = decision_table(passed, true, 18, gender=gender, n_boot=200)
    o = t["overall"]
    assert (o["n_minors"], o["fpr"], o["n_under"], o["fpr_all"], o["n_adults"], o["referral"]) == (4, 0.25, 4, 0.25, 4, 0.25)
    assert t["minor_ages"] == [13, 17] and t["by_age"] == {15: 0.25, 20: 1.0, 30: 0.75}
    male = next(r for r in t["groups"] if r["group"] == "male")
    female = next(r for r in t["groups"] if r["group"] == "female")
    assert (male["fpr"], male["referral"]) == (0.5, 0.0) and (female["fpr"], female["referral"]) == (0.0, 0.5)
    band = {r["group"]: r for r in t["groups"] if r["factor"] == "age band"}
    assert set(band) == {"10-19", "20-29", "30-44"} and band["20-29"]["fpr"] is None and band["20-29"]["referral"] is None
    lo, hi = o["fpr_ci"]
    assert 0.0 <= lo <= 0.25 <= hi <= 1.0


def test_interval_table_coverage_and_width():
    true = np.array([5, 5, 40, 40])
    low, high = np.array([4, 6, 30, 30]), np.array([6, 8, 50, 35])
    t = interval_table(low, high, true, race=np.array([0, 0, 1, 1]), n_boot=100)
    assert t["overall"]["coverage"] == 0.5 and t["overall"]["width"] == (2 + 2 + 20 + 5) / 4
    rows = {(r["factor"], r["group"]): r for r in t["groups"]}
    assert rows[("age band", "0-9")]["coverage"] == 0.5 and rows[("race", "black")]["width"] == 12.5


def test_fpr_referral_curve_moves_with_the_threshold():
    true = np.array([14, 16, 30, 40])
    p = np.array([0.2, 0.6, 0.5, 0.9])
    c = fpr_referral_curve(p, true, 18, thresholds=[0.0, 0.55, 0.95])
    assert c == {"threshold": [0.0, 0.55, 0.95], "fpr": [1.0, 0.5, 0.0], "referral": [0.0, 0.5, 1.0]}


def test_assurance_report_and_plots(tmp_path):
    true = np.array([15, 16, 17, 30, 40, 50])
    pred = np.array([17.0, 26.0, 19.0, 31.0, 38.0, 51.0])
    p = {18: np.array([0.1, 0.95, 0.3, 0.99, 0.97, 0.5])}
    r = assurance_report(pred, true, gender=np.array([0, 1, 0, 1, 0, 1]), low=pred - 3, high=pred + 3, p_over=p, thresholds={18: 0.96},
                         n_boot=50)
    d = r["decisions"]["18"]
    assert d["policy"]["overall"]["fpr"] == 0.0 and d["policy"]["overall"]["referral"] == pytest.approx(1 / 3)
    assert d["challenge"]["overall"]["fpr"] == pytest.approx(1 / 3) and d["challenge"]["overall"]["referral"] == 0.0
    assert r["intervals"]["overall"]["coverage"] == pytest.approx(5 / 6)  # errors 2, 10, 2, 1, -2, 1 in +-3
    for path in (plot_coverage_by_band(r["intervals"], tmp_path / "c.png", 0.9),
                 plot_decision_curve(d["policy"]["by_age"], 18, tmp_path / "d.png", other=d["challenge"]["by_age"]),
                 plot_fpr_referral(d["curve"], 18, tmp_path / "f.png", point=(1 / 3, 0.0))):
        assert path.stat().st_size > 1000


def test_report_carries_the_assurance_sections(tmp_path):
    from faceage.evaluation.report import Predictions, build_report, render_markdown, write_report

    true = np.array([15, 16, 17, 30, 40, 50] * 2, float)
    pred = np.array([17.0, 26.0, 19.0, 31.0, 38.0, 51.0] * 2)
    preds = Predictions([f"f{i}.jpg" for i in range(12)], true, pred, np.array([0, 1] * 6), np.array([0] * 12),
                        age_low=pred - 3, age_high=pred + 3, p_over={18: np.array([0.1, 0.95, 0.3, 0.99, 0.97, 0.5] * 2)},
                        thresholds={18: 0.96}, level=0.9)
    report = build_report(preds, n_boot=20)
    a = report["assurance"]
    assert a["intervals"]["overall"]["coverage"] == pytest.approx(5 / 6) and a["decisions"]["18"]["policy"]["overall"]["fpr"] == 0.0
    md = render_markdown(report)
    assert "## Interval coverage (0.9 nominal)" in md and "## Over-18 decisions: pass when P(age >= 18) >= 0.96" in md
    assert "Over-18 (policy P(age >= 18) >= 0.96): 0.00% of 6 faces aged 13-17 pass; 33.3% of 6 aged 25+ referred" in md
    paths = write_report(report, preds, tmp_path)
    assert (tmp_path / "plots" / "decision_curve_18.png").exists() and (tmp_path / "plots" / "coverage_by_band.png").exists()
    assert "Over-18 FPR vs referral" in paths["html"].read_text()
    # a prediction set without intervals or p_over still gets the cell MAE and Acc(x), and no assurance tables
    plain = build_report(Predictions(preds.files, true, pred, preds.gender, preds.race), n_boot=20)
    assert "intervals" not in plain["assurance"] and plain["assurance"]["decisions"] == {}
    assert "## Interval coverage" not in render_markdown(plain)
