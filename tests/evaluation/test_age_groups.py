"""Scores of faces labelled with age groups: group_metrics against hand-computed numbers, and the mixed exact/grouped
sets of evaluate_predictions and the bias report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceage.data.records import MAX_VALID_AGE
from faceage.evaluation.age_groups import group_metrics, signed_years_outside
from faceage.evaluation.metrics import evaluate_predictions
from faceage.evaluation.metrics import group_metrics as exported
from faceage.evaluation.predictions import Predictions, read_predictions_csv
from faceage.evaluation.report import build_report, write_report


def test_exported_from_metrics():
    assert exported is group_metrics


def test_group_metrics_by_hand():
    # 20-29 spans [19.5, 29.5); 0-2 spans [-0.5, 2.5); 70+ spans [69.5, 120.5)
    ages = [25.0, 29.4, 29.5, 19.5, 17.0, 3.0, 1.0, 95.0, 60.0]
    lows = [20, 20, 20, 20, 20, 0, 0, 70, 70]
    highs = [29, 29, 29, 29, 29, 2, 2, MAX_VALID_AGE, MAX_VALID_AGE]
    m = group_metrics(ages, lows, highs)
    # signed distances: 0, 0, 0 (29.5 rounds to 30: outside, at distance 0), 0, -2.5, +0.5, 0, 0, -9.5
    inside = [True, True, False, True, False, False, True, True, False]
    signed = [0, 0, 0, 0, -2.5, 0.5, 0, 0, -9.5]
    assert m["n"] == 9
    assert m["inside"] == pytest.approx(np.mean(inside))
    assert m["years_outside"] == pytest.approx(12.5 / 9)
    assert m["bias"] == pytest.approx(sum(signed) / 9)
    assert list(m["by_group"]) == ["0-2", "20-29", "70+"]  # in the order of the groups' low bound
    assert m["by_group"]["0-2"] == {"n": 2, "inside": 0.5, "years_outside": 0.25, "bias": 0.25}
    assert m["by_group"]["20-29"] == pytest.approx({"n": 5, "inside": 0.6, "years_outside": 0.5, "bias": -0.5})
    assert m["by_group"]["70+"] == {"n": 2, "inside": 0.5, "years_outside": 4.75, "bias": -4.75}
    assert all(type(v) in (int, float) for v in m["by_group"]["70+"].values())  # plain values: JSON as they are
    json.dumps(m)


def test_group_metrics_names_and_errors():
    m = group_metrics([5.0, 15.0, 40.0], [10, 10, 0], [19, 19, 9], names=["teen", "teen", "child"])
    assert list(m["by_group"]) == ["child", "teen"]
    assert m["by_group"]["teen"]["inside"] == 0.5 and m["by_group"]["child"]["bias"] == 30.5
    with pytest.raises(ValueError, match="at least one"):
        group_metrics([], [], [])
    with pytest.raises(ValueError, match="low > high"):
        group_metrics([5.0], [10], [9])
    with pytest.raises(ValueError, match="length"):
        group_metrics([5.0, 6.0], [0], [9])
    with pytest.raises(ValueError, match="NaN"):
        group_metrics([np.nan], [0], [9])


def test_signed_years_outside_on_tensors():
    torch = pytest.importorskip("torch")
    out = signed_years_outside(torch.tensor([25.0, 31.0, 17.0]), torch.tensor([20.0] * 3), torch.tensor([29.0] * 3))
    assert out.tolist() == [0.0, 1.5, -2.5]


def test_evaluate_predictions_mixed_set():
    nan = np.nan
    pred = [30.0, 40.0, 25.0, 10.0]
    true = [31.0, 38.0, 24.5, 24.5]
    result = evaluate_predictions(pred, true, gender=[0, 1, 0, 1], group_low=[nan, nan, 20, 20], group_high=[nan, nan, 29, 29])
    assert result["n_exact"] == 2 and result["n_grouped"] == 2
    assert result["overall"]["n"] == 2 and result["overall"]["mae"] == pytest.approx(1.5)  # exact faces only
    assert result["by_gender"]["female"]["n"] == 1
    groups = result["age_groups"]
    assert groups["n"] == 2 and groups["inside"] == 0.5 and groups["years_outside"] == pytest.approx(4.75)
    only_groups = evaluate_predictions([10.0], [24.5], group_low=[20], group_high=[29])
    assert "overall" not in only_groups and only_groups["age_groups"]["bias"] == -9.5
    exact_only = evaluate_predictions(pred[:2], true[:2])
    assert "age_groups" not in exact_only and exact_only["overall"]["mae"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="NaN for the same faces"):
        evaluate_predictions([1.0], [1.0], group_low=[nan], group_high=[5])


def _predictions(n: int = 24, grouped_from: int = 12) -> Predictions:
    rng = np.random.default_rng(0)
    true = rng.uniform(5, 70, n)
    pred = true + rng.normal(0, 4, n)
    low = np.where(np.arange(n) >= grouped_from, np.floor(true / 10) * 10, np.nan)
    return Predictions([f"f{i}.jpg" for i in range(n)], true, pred, rng.integers(0, 2, n), -np.ones(n, np.int64),
                       group_low=low, group_high=low + 9)


def test_report_mixed_and_grouped_only(tmp_path):
    preds = _predictions()
    report = build_report(preds, n_boot=20)
    assert report["n"] == 24 and report["overall"]["n"] == 12  # MAE on the exact-age faces
    grouped = preds.grouped()
    expected = group_metrics(preds.age_pred[grouped], preds.group_low[grouped], preds.group_high[grouped])
    assert report["age_groups"] == expected
    paths = write_report(report, preds, tmp_path / "mixed")
    markdown = paths["markdown"].read_text()
    assert "## Age groups" in markdown and "Overall MAE" in markdown
    only = preds.select(grouped)
    report = build_report(only, n_boot=20)
    assert report["overall"] is None and report["groups"] == {} and report["age_groups"] == expected
    markdown = write_report(report, only, tmp_path / "groups")["markdown"].read_text()
    assert "Overall MAE" not in markdown and f"| all | 12 | {expected['inside']:.3f} |" in markdown


def test_predictions_csv_with_group_columns(tmp_path):
    path = tmp_path / "test_predictions.csv"
    path.write_text("file,age_true,age_pred,group_low,group_high\na.jpg,30,32.00,,\nb.jpg,24.5,31.00,20,29\n")
    preds = read_predictions_csv(path)
    assert preds.grouped().tolist() == [False, True]
    assert build_report(preds, n_boot=10)["age_groups"]["years_outside"] == pytest.approx(1.5)
