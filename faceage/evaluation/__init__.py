"""Evaluation of age (and gender) predictions: exact group-aware metrics and diagnostic plots.

The metrics are imported eagerly. The plotting functions are re-exported lazily (on first attribute access),
so that ``import faceage.evaluation`` neither imports matplotlib nor switches its backend to Agg.

May import: ``faceage.data``, ``faceage.models``, ``faceage.inference``.
"""

from __future__ import annotations

import importlib
from typing import Any

from faceage.evaluation.metrics import (
    AGE_BAND_LABELS,
    AGE_BANDS,
    CS_THRESHOLDS,
    age_band_index,
    age_band_label,
    age_metrics,
    bootstrap_ci,
    evaluate_predictions,
    gender_metrics,
    race_metrics,
    group_codes,
    group_metrics,
    interval_metrics,
    rank_average,
    roc_auc,
    save_json,
    summarize_folds,
    to_jsonable,
)

_PLOTS = (
    "PLOT_FILES",
    "decade_confusion",
    "decade_index",
    "load_learning_curves",
    "plot_age_distributions",
    "plot_decade_confusion",
    "plot_group_mae",
    "plot_learning_curves",
    "plot_pred_vs_true",
    "save_all_plots",
)

__all__ = [
    "AGE_BANDS",
    "AGE_BAND_LABELS",
    "CS_THRESHOLDS",
    "age_band_index",
    "age_band_label",
    "age_metrics",
    "bootstrap_ci",
    "evaluate_predictions",
    "gender_metrics",
    "race_metrics",
    "group_codes",
    "group_metrics",
    "interval_metrics",
    "rank_average",
    "roc_auc",
    "save_json",
    "summarize_folds",
    "to_jsonable",
    *_PLOTS,
]


def __getattr__(name: str) -> Any:
    """Loads ``faceage.evaluation.plots`` (matplotlib, Agg) only when a plotting name is asked for."""
    if name in _PLOTS:
        return getattr(importlib.import_module("faceage.evaluation.plots"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
