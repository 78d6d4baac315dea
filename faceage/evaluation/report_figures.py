"""The bias report's figures (PNG): MAE by group with CIs, gender accuracy by group, the assurance curves, and the
standard evaluation plots of the prediction set."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceage.evaluation.predictions import Predictions


def plot_group_ci(report: Mapping[str, Any], path: str | Path) -> Path:
    """MAE with its 95% CI for each single-factor group and each flagged group; flagged ones in red."""
    from faceage.evaluation.plots import _save, plt

    rows = [r for section, rs in report["groups"].items() if "×" not in section for r in rs]
    rows += [r for r in report["flagged"] if "×" in r["section"]]
    overall = report["overall"]["mae"]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        lo, hi = r["mae_ci"]
        colour = "tab:red" if r["flagged"] else "tab:blue"
        if not math.isnan(lo):
            ax.plot([lo, hi], [yi, yi], color=colour, linewidth=2)
        ax.plot([r["mae"]], [yi], "o", color=colour)
    ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall MAE {overall:.2f}")
    ax.set_yticks(y, [f"{r['group']} (n={r['n']})" for r in rows], fontsize=8)
    ax.set_xlabel("MAE (years), 95% bootstrap CI")
    ax.set_title("MAE by group (red: significantly above overall)")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_gender_accuracy(gender: Mapping[str, Any], path: str | Path) -> Path:
    """Gender accuracy with 95% CIs by race and by age band."""
    from faceage.evaluation.plots import _save, plt

    sections = [s for s in ("by race", "by age band") if gender.get(s)]
    fig, axes = plt.subplots(1, len(sections), figsize=(4.5 * len(sections), 3.6), squeeze=False, sharey=True)
    overall = gender["overall"]["accuracy"]
    for ax, section in zip(axes[0], sections, strict=True):
        rows = gender[section]
        acc = np.array([r["accuracy"] for r in rows])
        ci = np.array([r["accuracy_ci"] for r in rows], dtype=float)
        yerr = np.nan_to_num(np.abs(np.stack([acc - ci[:, 0], ci[:, 1] - acc])))
        colours = ["tab:red" if r["flagged"] else "tab:blue" for r in rows]
        ax.bar(range(len(rows)), acc, yerr=yerr, color=colours, alpha=0.8, capsize=3)
        ax.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
        ax.set_xticks(range(len(rows)), [f"{r['group']}\nn={r['n']}" for r in rows], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Gender accuracy {section}")
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("accuracy")
    return _save(fig, path)


def write_plots(report: Mapping[str, Any], preds: Predictions, out_dir: str | Path) -> dict[str, Path]:
    """Writes the report's PNG figures into ``out_dir``; returns title -> path."""
    from faceage.evaluation import plots

    out = Path(out_dir)
    figures = {
        "MAE by group with 95% CIs": plot_group_ci(report, out / "mae_ci_by_group.png"),
        "MAE by age band, gender and race": plots.plot_group_mae(report["metrics"], out / "mae_by_group.png"),
        "Predicted vs true age": plots.plot_pred_vs_true(preds.age_pred, preds.age_true, out / "pred_vs_true.png"),
        "Age distributions": plots.plot_age_distributions(preds.age_pred, preds.age_true, out / "age_distributions.png"),
        "Decade confusion": plots.plot_decade_confusion(preds.age_pred, preds.age_true, out / "decade_confusion.png"),
    }
    if report.get("gender"):
        figures["Gender accuracy"] = plot_gender_accuracy(report["gender"], out / "gender_accuracy.png")
    figures.update(_assurance_plots(report.get("assurance"), out))
    if report.get("sensitivity"):
        from faceage.evaluation.sensitivity import plot_sensitivity

        figures["Sensitivity to image changes"] = plot_sensitivity(report["sensitivity"], out / "sensitivity.png")
    return figures


def _assurance_plots(assurance: Mapping[str, Any] | None, out: Path) -> dict[str, Path]:
    from faceage.evaluation import assurance as a

    figures: dict[str, Path] = {}
    if not assurance:
        return figures
    if assurance.get("intervals"):
        figures["Interval coverage by age band"] = a.plot_coverage_by_band(assurance["intervals"], out / "coverage_by_band.png", assurance.get("level"))
    for over, d in assurance.get("decisions", {}).items():
        policy, challenge = d.get("policy"), d.get("challenge")
        if policy or challenge:
            main = policy or challenge
            figures[f"Over-{over} decision curve"] = a.plot_decision_curve(
                main["by_age"], int(over), out / f"decision_curve_{over}.png", label="policy" if policy else f"challenge {challenge['age']:g}",
                other=challenge["by_age"] if policy and challenge else None, other_label=f"challenge {challenge['age']:g}" if challenge else "")
        point = (policy["overall"]["referral"], policy["overall"]["fpr"]) if policy and policy["overall"]["fpr"] is not None else None
        figures[f"Over-{over} FPR vs referral"] = a.plot_fpr_referral(d["curve"], int(over), out / f"fpr_referral_{over}.png", point)
    return figures
