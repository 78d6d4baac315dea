"""Turns gathered test predictions into the evaluation JSON and plots under the run's log directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def write_test_report(module, rows: dict[str, torch.Tensor], log_dir: str | None) -> Path:
    """Writes ``test_results.json``, ``test_predictions.csv`` and PNG plots to ``<log_dir>/test``.

    Faces labelled with an age group are scored by group (``"age_groups"`` in the JSON, ``group_low``/``group_high``
    columns in the CSV); MAE, the plots and the assurance figures use the exact-age faces only.
    """
    from faceage.evaluation import evaluate_predictions, save_all_plots

    trainer = module.trainer
    out = Path(log_dir or ".") / "test"
    out.mkdir(parents=True, exist_ok=True)
    # under bf16 mixed precision the outputs are bfloat16, which NumPy has no type for
    rows = {k: v.float() if v.is_floating_point() else v for k, v in rows.items()}
    pred, true = rows["pred"].numpy(), rows["age"].numpy()
    gender = rows["gender"].numpy()
    race = rows["race"].numpy()
    gprob = rows["gender_prob"].numpy() if "gender_prob" in rows else None
    intervals = rows["interval"].numpy() if "interval" in rows else None
    grouped = (rows["age_high"] > rows["age_low"]).numpy() if "age_low" in rows else np.zeros(len(pred), bool)
    group_low = np.where(grouped, rows["age_low"].numpy(), np.nan) if grouped.any() else None
    group_high = np.where(grouped, rows["age_high"].numpy(), np.nan) if grouped.any() else None
    result = evaluate_predictions(
        pred, true, gender=gender, race=race,
        gender_pred=None if gprob is None else (gprob > 0.5).astype(int), gender_prob=gprob, intervals=intervals,
        race_pred=rows["race_pred"].numpy() if "race_pred" in rows else None, group_low=group_low, group_high=group_high,
    )
    dataset = trainer.datamodule.datasets["test"] if trainer.datamodule is not None else None
    if dataset is not None:
        result["n_unreadable"] = len(dataset.failed)
        paths = [dataset.records[int(i)].path for i in rows["index"]]
        with open(out / "test_predictions.csv", "w") as f:
            f.write("file,age_true,age_pred" + (",group_low,group_high\n" if group_low is not None else "\n"))
            for i, (p, t, y) in enumerate(zip(paths, true, pred)):
                bounds = "" if group_low is None else "," if not grouped[i] else f",{group_low[i]:g},{group_high[i]:g}"
                f.write(f"{p},{t:g},{y:.2f}{bounds}\n")
    exact = ~grouped
    if "distribution" in rows and exact.any():
        e = lambda a: None if a is None else a[exact]
        result["assurance"] = test_assurance(module.model.config, rows["distribution"].numpy()[exact], pred[exact], true[exact],
                                             gender[exact], race[exact], e(intervals))
    result["model"] = module.model.config
    (out / "test_results.json").write_text(json.dumps(result, indent=2))
    written = save_all_plots(pred[exact], true[exact], result, out, log_dir=log_dir) if exact.any() else []
    if "overall" in result:
        overall = result["overall"]
        print(f"test: n={overall['n']} MAE {overall['mae']:.3f} RMSE {overall['rmse']:.3f} CS@5 {overall['cs@5']:.3f}")
    if "age_groups" in result:
        g = result["age_groups"]
        print(f"test (age groups): n={g['n']} inside {g['inside']:.3f} years outside {g['years_outside']:.2f} bias {g['bias']:+.2f}")
    print(f"results: {out / 'test_results.json'}; plots: {', '.join(str(p) for p in written)}")
    return out


def test_assurance(config: dict, dist, pred, true, gender, race, intervals=None) -> dict:
    """The age-assurance figures (:func:`faceage.evaluation.assurance.assurance_report`) of a test set: the model's
    calibrated intervals and fitted over-N policies when its config has a calibration (``faceage calibrate``), else
    the raw 90% intervals and the over-18 curve and challenge-25 rule only."""
    from faceage.evaluation.assurance import assurance_report
    from faceage.inference.calibration import Calibration, p_over

    min_age = int(config.get("min_age", 0))
    cal = Calibration.from_model_config(config)
    level = 0.9
    if cal is not None and cal.levels:
        level = cal.levels[0]
        low, high = cal.intervals(dist, pred, level)
    elif intervals is not None:
        low, high = intervals[:, 0], intervals[:, 1]
    else:
        low = high = None
    policies = {int(k): float(v["threshold"]) for k, v in (cal.config.get("verify", {}) if cal is not None else {}).items()}
    overs = sorted(policies) or [18]
    known = lambda codes: codes if (codes >= 0).any() else None  # noqa: E731
    out = assurance_report(pred, true, known(gender), known(race), low, high, {n: p_over(dist, min_age, n) for n in overs}, policies, n_boot=200)
    out["level"], out["calibrated"] = level, cal is not None
    return out
