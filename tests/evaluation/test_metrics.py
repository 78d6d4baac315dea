"""Hand-computed checks of faceage.evaluation.metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.metrics import (
    AGE_BAND_LABELS,
    age_band_index,
    age_band_label,
    age_metrics,
    bootstrap_ci,
    evaluate_predictions,
    group_codes,
    rank_average,
    roc_auc,
    save_json,
    summarize_folds,
)


def _is_plain(tree) -> bool:
    """Only dict/list/str/int/float/bool/None, recursively (no numpy types)."""
    if isinstance(tree, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in tree.items())
    if isinstance(tree, list):
        return all(_is_plain(v) for v in tree)
    return tree is None or type(tree) in (str, int, float, bool)


# ------------------------------------------------------------------------------------------ age_metrics


def test_age_metrics_hand_computed():
    m = age_metrics([10, 20, 30], [12, 20, 25])  # errors -2, 0, +5
    assert m["n"] == 3 and type(m["n"]) is int
    assert m["mae"] == pytest.approx(7 / 3)
    assert m["mse"] == pytest.approx(29 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(29 / 3))
    assert m["bias"] == pytest.approx(1.0)
    assert m["median_ae"] == pytest.approx(2.0)
    assert m["cs@1"] == pytest.approx(1 / 3)
    assert m["cs@2"] == pytest.approx(2 / 3)
    assert m["cs@4"] == pytest.approx(2 / 3)
    assert m["cs@5"] == pytest.approx(1.0)
    assert [k for k in m if k.startswith("cs@")] == [f"cs@{k}" for k in range(1, 11)]
    assert _is_plain(m)


def test_age_metrics_cs_boundary_is_inclusive_despite_float_error():
    m = age_metrics([10.1], [8.1])  # 10.1 - 8.1 = 2.0000000000000004 in floats
    assert m["cs@2"] == 1.0 and m["cs@1"] == 0.0


def test_age_metrics_accepts_column_vector_and_rejects_bad_input():
    assert age_metrics(np.array([[1.0], [3.0]]), [1, 1])["mae"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        age_metrics([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        age_metrics([1, float("nan")], [1, 2])
    with pytest.raises(ValueError):
        age_metrics([], [])


# -------------------------------------------------------------------------------------------- age bands


@pytest.mark.parametrize(
    ("age", "label"),
    [(0, "0-9"), (9, "0-9"), (9.5, "0-9"), (10, "10-19"), (19, "10-19"), (20, "20-29"), (29.9, "20-29"),
     (30, "30-44"), (44, "30-44"), (45, "45-59"), (59, "45-59"), (60, "60+"), (116, "60+"), (250, "60+")],
)
def test_age_band_edges(age, label):
    assert age_band_label(age) == label


def test_age_band_index_vectorised():
    idx = age_band_index([9, 10, 60])
    assert idx.tolist() == [0, 1, 5]
    assert AGE_BAND_LABELS[5] == "60+"


def test_by_age_band_uses_true_age_and_omits_empty_bands():
    res = evaluate_predictions(pred=[5, 15, 70, 61], true=[9, 10, 60, 65])
    bands = res["by_age_band"]
    assert list(bands) == ["0-9", "10-19", "60+"]
    assert bands["0-9"] == {"n": 1, "mae": 4.0, "rmse": 4.0, "cs@5": 1.0, "bias": -4.0}
    assert bands["60+"]["n"] == 2
    assert bands["60+"]["mae"] == pytest.approx(7.0)  # |70-60| = 10, |61-65| = 4
    assert bands["60+"]["bias"] == pytest.approx(3.0)
    assert bands["60+"]["cs@5"] == pytest.approx(0.5)
    assert "by_gender" not in res and "by_race" not in res and "gender" not in res


# ------------------------------------------------------------------------------------------- groups


def test_group_codes_unknowns_and_names():
    codes = group_codes([0, 1, None, -1, float("nan"), "Female", "x", 7, 1.0], GENDERS, 9)
    assert codes.tolist() == [0, 1, -1, -1, -1, 1, -1, -1, 1]
    assert group_codes(None, RACES, 3).tolist() == [-1, -1, -1]
    with pytest.raises(ValueError):
        group_codes([0, 1], GENDERS, 3)


def test_group_metrics_exclude_unknown_and_count():
    pred = [10, 20, 30, 40, 50, 60]
    true = [12, 20, 25, 40, 45, 70]  # errors -2, 0, 5, 0, 5, -10
    gender = [0, 1, 0, None, -1, 1]
    race = [0, 0, 2, 4, None, -1]
    res = evaluate_predictions(pred, true, gender=gender, race=race)
    assert res["overall"]["n"] == 6
    g = res["by_gender"]
    assert list(g) == ["male", "female"]
    assert g["male"]["n"] == 2 and g["male"]["mae"] == pytest.approx(3.5)
    assert g["male"]["bias"] == pytest.approx(1.5)
    assert g["female"]["n"] == 2 and g["female"]["mae"] == pytest.approx(5.0)
    assert g["female"]["rmse"] == pytest.approx(math.sqrt(50))
    assert g["female"]["cs@5"] == pytest.approx(0.5)
    r = res["by_race"]
    assert list(r) == ["white", "asian", "others"]  # black, indian: no sample -> omitted
    assert r["white"]["n"] == 2 and r["white"]["mae"] == pytest.approx(1.0)
    assert r["asian"]["n"] == 1 and r["asian"]["mae"] == pytest.approx(5.0)
    assert r["others"]["n"] == 1 and r["others"]["mae"] == 0.0
    assert res["n_unknown"] == {"gender": 2, "race": 2}
    assert _is_plain(res)


def test_group_labels_as_names():
    res = evaluate_predictions([1, 2], [1, 4], gender=["male", "female"], race=["indian", "black"])
    assert res["by_gender"]["female"]["mae"] == 2.0
    assert list(res["by_race"]) == ["black", "indian"]


# ------------------------------------------------------------------------------------------- gender


def test_gender_accuracy_f1_auc_known_case():
    true_g = [1, 1, 0, 0, 1, 0]
    pred_g = [1, 0, 0, 1, 1, 0]  # tp=2, fn=1, fp=1, tn=2
    prob = [0.9, 0.8, 0.1, 0.2, 0.7, 0.3]  # perfectly separated
    res = evaluate_predictions([30] * 6, [30] * 6, gender=true_g, gender_pred=pred_g, gender_prob=prob)
    g = res["gender"]
    assert g["n"] == 6
    assert g["accuracy"] == pytest.approx(4 / 6)
    assert g["precision"] == pytest.approx(2 / 3) and g["recall"] == pytest.approx(2 / 3)
    assert g["f1"] == pytest.approx(2 / 3)
    assert g["roc_auc"] == pytest.approx(1.0)


def test_gender_auc_constant_reversed_and_partial():
    y = [1, 0, 1, 0]
    assert roc_auc(y, [0.5] * 4) == pytest.approx(0.5)
    assert roc_auc(y, [0.1, 0.9, 0.2, 0.8]) == pytest.approx(0.0)
    # positives 0.8, 0.4; negatives 0.6, 0.2: 3 of 4 pairs ordered right
    assert roc_auc(y, [0.8, 0.6, 0.4, 0.2]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert roc_auc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)
    assert roc_auc([1, 1], [0.1, 0.9]) is None


def test_rank_average_ties():
    assert rank_average([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_gender_excludes_unknown_and_breaks_down_by_race_and_band():
    true_age = [5, 25, 25, 70, 33]
    gender = [0, 1, None, 1, 0]
    gender_pred = [0, 0, 1, 1, 0]
    race = [0, 0, 1, None, 2]
    res = evaluate_predictions(true_age, true_age, gender=gender, race=race, gender_pred=gender_pred,
                               gender_prob=[0.2, 0.4, 0.9, 0.8, 0.1])
    g = res["gender"]
    assert g["n"] == 4
    assert g["accuracy"] == pytest.approx(0.75)
    assert g["f1"] == pytest.approx(2 / 3)  # tp=1, fn=1, fp=0
    assert g["roc_auc"] == pytest.approx(1.0)
    assert g["accuracy_by_race"] == {"white": {"n": 2, "accuracy": 0.5}, "asian": {"n": 1, "accuracy": 1.0}}
    assert g["accuracy_by_age_band"] == {
        "0-9": {"n": 1, "accuracy": 1.0},
        "20-29": {"n": 1, "accuracy": 0.0},
        "30-44": {"n": 1, "accuracy": 1.0},
        "60+": {"n": 1, "accuracy": 1.0},
    }


def test_gender_prob_without_pred_thresholds_and_constant_auc():
    res = evaluate_predictions([1, 2], [1, 2], gender=[0, 1], gender_prob=[0.5, 0.5])
    assert res["gender"]["accuracy"] == pytest.approx(0.5)  # both predicted female (>= 0.5)
    assert res["gender"]["roc_auc"] == pytest.approx(0.5)


def test_gender_pred_without_truth_is_an_error():
    with pytest.raises(ValueError):
        evaluate_predictions([1, 2], [1, 2], gender_pred=[0, 1])


# ----------------------------------------------------------------------------------------- intervals


def test_interval_coverage_inclusive_bounds():
    true = [10, 20, 30, 40]
    intervals = [[8, 10], [21, 25], [25, 35], [40, 40]]  # in (edge), out, in, in (edge)
    res = evaluate_predictions(true, true, intervals=intervals)
    assert res["interval_coverage"] == pytest.approx(0.75)
    assert res["interval_mean_width"] == pytest.approx((2 + 4 + 10 + 0) / 4)
    with pytest.raises(ValueError):
        evaluate_predictions(true, true, intervals=[[1, 2]] * 3)
    with pytest.raises(ValueError):
        evaluate_predictions(true, true, intervals=[[5, 1]] * 4)


# -------------------------------------------------------------------------------------------- folds


def test_summarize_folds_mean_std():
    folds = [
        evaluate_predictions([10, 20], [12, 20]),  # mae 1
        evaluate_predictions([10, 20], [13, 20]),  # mae 1.5
        evaluate_predictions([10, 20], [14, 20]),  # mae 2
    ]
    s = summarize_folds(folds)
    assert set(s) == set(folds[0]["overall"])
    assert s["mae"]["mean"] == pytest.approx(1.5)
    assert s["mae"]["std"] == pytest.approx(0.5)  # sample std of 1, 1.5, 2
    assert s["mae"]["n_folds"] == 3
    assert s["n"] == {"mean": 2.0, "std": 0.0, "n_folds": 3}
    assert summarize_folds(folds, ddof=0)["mae"]["std"] == pytest.approx(np.std([1, 1.5, 2]))
    assert summarize_folds(folds[:1])["mae"]["std"] == 0.0
    assert _is_plain(s)
    with pytest.raises(ValueError):
        summarize_folds([])


def test_summarize_folds_nested_section():
    folds = [
        evaluate_predictions([1, 2], [1, 4], gender=[0, 1]),
        evaluate_predictions([1, 2], [2, 2], gender=[0, 1]),
    ]
    s = summarize_folds(folds, section="by_gender")
    assert s["female"]["mae"]["mean"] == pytest.approx(1.0)
    assert s["male"]["mae"]["mean"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_brackets_statistic_and_is_reproducible():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 1.0, size=200)
    lo, hi = bootstrap_ci(lambda idx: float(np.mean(x[idx])), n=x.size, n_boot=500, seed=3)
    assert type(lo) is float and type(hi) is float
    assert lo < x.mean() < hi
    assert 0.1 < hi - lo < 0.5  # ~ 2 * 1.96 / sqrt(200) = 0.28
    assert (lo, hi) == bootstrap_ci(lambda idx: float(np.mean(x[idx])), n=x.size, n_boot=500, seed=3)
    lo99, hi99 = bootstrap_ci(lambda idx: float(np.mean(x[idx])), n=x.size, n_boot=500, seed=3, alpha=0.01)
    assert lo99 <= lo and hi <= hi99


def test_bootstrap_ci_constant_and_undefined():
    assert bootstrap_ci(lambda idx: 2.0, n=5, n_boot=20) == (2.0, 2.0)
    lo, hi = bootstrap_ci(lambda idx: None, n=5, n_boot=20)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        bootstrap_ci(lambda idx: 1.0, n=0)


# --------------------------------------------------------------------------------------------- json


def test_save_json_roundtrip(tmp_path):
    res = evaluate_predictions([10, 20, 30], [12, 20, 25], gender=[0, 1, 1], gender_pred=[0, 1, 1],
                               gender_prob=[0.1, 0.9, 0.8])
    res["extra"] = {"np": np.float32(1.5), "nan": float("nan"), "arr": np.arange(2)}
    path = save_json(res, tmp_path / "sub" / "result.json")
    loaded = json.loads(path.read_text())
    assert loaded["overall"]["mae"] == pytest.approx(7 / 3)
    assert loaded["gender"]["roc_auc"] == 1.0
    assert loaded["extra"] == {"np": 1.5, "nan": None, "arr": [0, 1]}


def test_race_accuracy_recall_confusion_known_case():
    #        white white black asian asian indian unknown
    race = [0, 0, 1, 2, 2, 3, None]
    pred = [0, 1, 1, 2, 0, 3, 4]
    res = evaluate_predictions([30] * 7, [30] * 7, gender=[0, 1, 0, 1, 0, 1, 0], race=race, race_pred=pred)
    r = res["race"]
    assert r["n"] == 6 and r["accuracy"] == pytest.approx(4 / 6)
    assert r["recall_by_class"] == {
        "white": {"n": 2, "recall": 0.5}, "black": {"n": 1, "recall": 1.0},
        "asian": {"n": 2, "recall": 0.5}, "indian": {"n": 1, "recall": 1.0},
    }
    assert r["balanced_accuracy"] == pytest.approx(0.75)
    assert r["precision_by_class"]["white"] == pytest.approx(0.5)  # predicted white: one white, one asian
    assert r["confusion"][2] == [1, 0, 1, 0, 0] and sum(map(sum, r["confusion"])) == 6
    assert r["accuracy_by_gender"] == {"male": {"n": 3, "accuracy": pytest.approx(2 / 3)}, "female": {"n": 3, "accuracy": pytest.approx(2 / 3)}}


def test_race_pred_without_truth_is_an_error():
    with pytest.raises(ValueError, match="race predictions need the true race"):
        evaluate_predictions([1, 2], [1, 2], race_pred=[0, 1])
