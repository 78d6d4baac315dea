"""The bias (and optional sensitivity) report as one self-contained HTML file plus markdown (``faceage report``,
:mod:`faceage.cli.report`); the facade over its parts: :mod:`~faceage.evaluation.predictions` (the predictions),
:mod:`~faceage.evaluation.bias` (the group tables), :mod:`~faceage.evaluation.render` (markdown, HTML) and
:mod:`~faceage.evaluation.report_figures` (PNG figures).

Two sources of predictions:

* a run folder: ``RUN_DIR/test/test_predictions.csv`` (columns ``file,age_true,age_pred``, optionally
  ``gender_true``, ``race_true``, ``gender_prob``); missing gender/race come from UTKFace-style file names;
* a model and a dataset: ``--model M --data D [--dataset utkface] [--split test|val|all]``, predicted with
  ``Predictor(detect=False)`` on the split that :func:`faceage.data.splits.split_records` (seed 0) gives.

The report has MAE and CS@5 by age band, gender and race and their crossings, each with its count and a
bootstrap 95% CI (on the faces with an exact age; faces labelled with an age group, such as FairFace's, are scored by
:func:`~faceage.evaluation.age_groups.group_metrics` in their own section); groups whose MAE CI lies wholly above the overall MAE (with ``n >= 10``) are flagged. Gender
accuracy is broken down by race and age band the same way. ``--sensitivity`` adds the metrics under controlled
image changes (:mod:`faceage.evaluation.sensitivity`).

    >>> preds = read_predictions_csv("runs/x/version_0/test/test_predictions.csv")
    >>> report = build_report(preds)
    >>> write_report(report, preds, "runs/x/report")  # report.html, report.md, report.json, plots/
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceage._io import write_text_atomic
from faceage.evaluation.bias import MIN_FLAG_N, age_group_row, age_group_tables, gender_tables
from faceage.evaluation.metrics import evaluate_predictions, save_json, to_jsonable
from faceage.evaluation.predictions import (PREDICTIONS_CSV, SPLITS, Predictions, find_predictions_csv, predict_dataset,
                                            read_predictions_csv, select_records)
from faceage.evaluation.render import render_html, render_markdown
from faceage.evaluation.report_figures import write_plots

__all__ = [
    "MIN_FLAG_N", "PREDICTIONS_CSV", "SPLITS", "Predictions", "age_group_row", "age_group_tables", "build_report",
    "find_predictions_csv", "gender_tables", "measure_sensitivity", "predict_dataset", "read_predictions_csv", "render_html", "render_markdown",
    "select_records", "write_plots", "write_report",
]


def build_report(preds: Predictions, n_boot: int = 1000, seed: int = 0, min_flag_n: int = MIN_FLAG_N,
                 sensitivity: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """All numbers of the report.

    Args:
        preds: the predictions (N >= 1).
        n_boot: bootstrap resamples per confidence interval.
        seed: bootstrap seed.
        min_flag_n: smallest group that can be flagged.
        sensitivity: rows of :func:`faceage.evaluation.sensitivity.sensitivity_analysis` to include.

    Returns:
        ``{"source", "n", "n_failed", "notes", "overall", "metrics", "groups", "flagged", "gender",
        "sensitivity", "assurance", "age_groups"}``: ``overall`` is :func:`age_group_row` of the exact-age samples,
        ``metrics`` the full :func:`evaluate_predictions` result, ``groups`` :func:`age_group_tables`, ``flagged`` the
        flagged rows of all sections (worst first), ``gender`` :func:`gender_tables`, ``age_groups``
        :func:`~faceage.evaluation.age_groups.group_metrics` of the faces labelled with an age group. Without
        exact-age samples ``overall`` and ``assurance`` are ``None`` and ``groups`` is empty; without grouped ones
        ``age_groups`` is ``None``.
    """
    if len(preds) == 0:
        raise ValueError("no predictions to report on")
    grouped = preds.grouped()
    metrics = evaluate_predictions(preds.age_pred, preds.age_true, gender=preds.gender, race=preds.race,
                                   gender_prob=preds.gender_prob if np.any(preds.gender >= 0) else None,
                                   race_pred=preds.race_pred, group_low=preds.group_low, group_high=preds.group_high)
    exact = preds.select(~grouped) if grouped.any() else preds
    if len(exact) == 0:  # age groups only: no age error to tabulate; gender still scored on every face
        return {
            "source": preds.source, "n": len(preds), "n_failed": preds.n_failed, "notes": list(preds.notes),
            "min_flag_n": min_flag_n, "n_boot": n_boot, "overall": None, "metrics": metrics, "groups": {}, "flagged": [],
            "gender": gender_tables(preds, n_boot, seed, min_flag_n), "sensitivity": list(sensitivity) if sensitivity else None,
            "assurance": None, "age_groups": metrics["age_groups"],
        }
    report = _exact_report(exact, metrics, n_boot, seed, min_flag_n, sensitivity)
    report.update(source=preds.source, n=len(preds), age_groups=metrics.get("age_groups"))
    return report


def _exact_report(preds: Predictions, metrics: dict[str, Any], n_boot: int, seed: int, min_flag_n: int,
                  sensitivity: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """:func:`build_report` of the faces with exact ages; ``metrics`` is the :func:`evaluate_predictions` result."""
    err = preds.age_pred - preds.age_true
    groups = age_group_tables(preds, n_boot, seed, min_flag_n)
    flagged = sorted(
        ({"section": section, **row} for section, rows in groups.items() for row in rows if row["flagged"]),
        key=lambda r: -r["mae"],
    )
    return {
        "source": preds.source,
        "n": len(preds),
        "n_failed": preds.n_failed,
        "notes": list(preds.notes),
        "min_flag_n": min_flag_n,
        "n_boot": n_boot,
        "overall": age_group_row(np.abs(err), err, n_boot, seed),
        "metrics": metrics,
        "groups": groups,
        "flagged": flagged,
        "gender": gender_tables(preds, n_boot, seed, min_flag_n),
        "sensitivity": list(sensitivity) if sensitivity else None,
        "assurance": _assurance(preds, n_boot, seed),
    }


def _assurance(preds: Predictions, n_boot: int, seed: int) -> dict[str, Any]:
    """The age-assurance figures (:func:`faceage.evaluation.assurance.assurance_report`) of a prediction set."""
    from faceage.evaluation.assurance import assurance_report

    known = lambda codes: codes if np.any(codes >= 0) else None  # noqa: E731
    out = assurance_report(preds.age_pred, preds.age_true, known(preds.gender), known(preds.race), preds.age_low, preds.age_high,
                           preds.p_over, preds.thresholds, n_boot=n_boot, seed=seed)
    out["level"] = preds.level
    return out


def write_report(report: Mapping[str, Any], preds: Predictions, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Writes ``report.html`` (self-contained), ``report.md``, ``report.json`` and ``plots/*.png`` to ``out_dir``.

    Returns:
        ``{"html": path, "markdown": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exact = preds.select(~preds.grouped())
    figures = write_plots(report, exact, out / "plots") if plots and len(exact) else {}
    paths = {"html": out / "report.html", "markdown": out / "report.md", "json": out / "report.json"}
    write_text_atomic(paths["html"], render_html(report, figures))
    write_text_atomic(paths["markdown"], render_markdown(report, figures, out))
    save_json(to_jsonable(report), paths["json"])
    return paths


def measure_sensitivity(preds: Predictions, predictor: Any = None, model: str | Path | None = None, samples: int = 300,
                        batch_size: int = 64, progress: bool = False) -> list[dict]:
    """The metrics under controlled image changes (:func:`faceage.evaluation.sensitivity.sensitivity_analysis`) on a
    seeded subset of ``samples`` of the prediction set's faces.

    Args:
        preds: the prediction set (its files and true ages are used).
        predictor: the predictor to use; ``None``: ``Predictor(model, detect=False)``.
        model: model directory / checkpoint when no ``predictor`` is given.
        samples: largest number of faces used.
        batch_size: faces per forward pass.
        progress: a progress bar on stderr.
    """
    from faceage.evaluation.sensitivity import sensitivity_analysis
    from faceage.inference.predictor import Predictor

    predictor = predictor or Predictor(model, detect=False, batch_size=batch_size)
    idx = np.arange(len(preds))
    if len(idx) > samples:
        idx = np.sort(np.random.default_rng(0).choice(len(idx), samples, replace=False))
    return sensitivity_analysis(predictor, [preds.files[i] for i in idx], preds.age_true[idx], gender=preds.gender[idx],
                                batch_size=batch_size, progress=progress)
