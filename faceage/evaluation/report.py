"""``faceage report``: a bias (and optional sensitivity) report as one self-contained HTML file plus markdown.

Two sources of predictions:

* a run folder: ``RUN_DIR/test/test_predictions.csv`` (columns ``file,age_true,age_pred``, optionally
  ``gender_true``, ``race_true``, ``gender_prob``); missing gender/race come from UTKFace-style file names;
* a model and a dataset: ``--model M --data D [--dataset utkface] [--split test|val|all]``, predicted with
  ``Predictor(detect=False)`` on the split that :func:`faceage.data.splits.split_records` (seed 0) gives.

The report has MAE and CS@5 by age band, gender and race and their crossings, each with its count and a
bootstrap 95% CI; groups whose MAE CI lies wholly above the overall MAE (with ``n >= 10``) are flagged. Gender
accuracy is broken down by race and age band the same way. ``--sensitivity`` adds the metrics under controlled
image changes (:mod:`faceage.evaluation.sensitivity`).

    >>> preds = read_predictions_csv("runs/x/version_0/test/test_predictions.csv")
    >>> report = build_report(preds)
    >>> write_report(report, preds, "runs/x/report")  # report.html, report.md, report.json, plots/
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.metrics import (
    AGE_BAND_LABELS,
    age_band_index,
    bootstrap_ci,
    evaluate_predictions,
    group_codes,
    save_json,
    to_jsonable,
)

MIN_FLAG_N = 10  # groups smaller than this are never flagged
CS_K = 5
PREDICTIONS_CSV = Path("test") / "test_predictions.csv"
SPLITS = ("test", "val", "train", "all")


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class Predictions:
    """One prediction set with its group labels.

    Attributes:
        files: image file per sample.
        age_true: true ages, shape (N,).
        age_pred: predicted ages, shape (N,).
        gender: true gender codes (0 male, 1 female, -1 unknown), shape (N,).
        race: true race codes (0..4, -1 unknown), shape (N,).
        gender_prob: predicted P(female), shape (N,), or ``None`` without a gender head.
        race_pred: predicted race codes, shape (N,), or ``None`` without a race head.
        source: where the predictions came from (for the report header).
        n_failed: inputs that could not be predicted (unreadable images).
        age_low: lower interval bounds, shape (N,), or ``None`` (no distribution / not recorded).
        age_high: upper interval bounds.
        p_over: ``{N: P(age >= N) per face}`` for the over-N checks reported, or ``None``.
        thresholds: ``{N: threshold of the model's fitted over-N policy}``.
        level: the nominal coverage of the intervals.
    """

    files: list[str]
    age_true: np.ndarray
    age_pred: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    gender_prob: np.ndarray | None = None
    source: str = ""
    n_failed: int = 0
    notes: list[str] = field(default_factory=list)
    race_pred: np.ndarray | None = None
    age_low: np.ndarray | None = None
    age_high: np.ndarray | None = None
    p_over: dict[int, np.ndarray] | None = None
    thresholds: dict[int, float] | None = None
    level: float | None = None

    def __len__(self) -> int:
        return len(self.files)


def find_predictions_csv(run_dir: str | Path) -> Path:
    """The predictions CSV of a run: ``RUN_DIR`` itself if it is a CSV, ``RUN_DIR/test/test_predictions.csv``,
    else the most recent ``test/test_predictions.csv`` below ``RUN_DIR`` (e.g. ``lightning_logs/version_3``).

    Raises:
        FileNotFoundError: when there is none.
    """
    path = Path(run_dir)
    if path.is_file():
        return path
    if (path / PREDICTIONS_CSV).is_file():
        return path / PREDICTIONS_CSV
    found = [p for p in path.rglob(PREDICTIONS_CSV.name) if p.parent.name == "test" and p.is_file()] if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path}: no {PREDICTIONS_CSV} found (run `faceage test` first, or pass --model and --data)")
    return max(found, key=lambda p: p.stat().st_mtime)


def _labels_from_name(name: str) -> tuple[int, int]:
    """``(gender, race)`` codes from a UTKFace-style file name, ``-1`` where it has none."""
    from faceage.data.readers import LabelError, parse_utkface_name

    try:
        labels, _ = parse_utkface_name(Path(name).name)
    except LabelError:
        return -1, -1
    g, r = labels.get("gender"), labels.get("race")
    return (-1 if g is None else int(g)), (-1 if r is None else int(r))


def _cell(value: str) -> Any:
    """A CSV label cell: a number when it is one (codes), else the text (names); blank is unknown."""
    try:
        return float(value)
    except ValueError:
        return value or None


def _column(header: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in header), None)


def read_predictions_csv(path: str | Path) -> Predictions:
    """Reads a predictions CSV.

    Args:
        path: CSV with ``file``, ``age_true``, ``age_pred`` and optionally ``gender_true``/``gender``,
            ``race_true``/``race`` (codes or names) and ``gender_prob`` (P(female)). Gender and race missing
            from the columns are parsed from UTKFace file names (``AGE_GENDER_RACE_...``) where possible.

    Returns:
        The predictions.

    Raises:
        ValueError: when a required column is missing, a number does not parse or the file has no row.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    missing = [c for c in ("file", "age_true", "age_pred") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(header) or 'none'})")
    if not rows:
        raise ValueError(f"{path}: no predictions")
    files = [r["file"] for r in rows]
    try:
        true = np.array([float(r["age_true"]) for r in rows])
        pred = np.array([float(r["age_pred"]) for r in rows])
        gcol = _column(header, "gender_prob", "gender_p_female")
        gprob = np.array([float(r[gcol]) for r in rows]) if gcol else None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    n = len(rows)
    gender_col, race_col = _column(header, "gender_true", "gender"), _column(header, "race_true", "race")
    from_names = [_labels_from_name(f) for f in files] if gender_col is None or race_col is None else None
    gender = group_codes([_cell(r[gender_col]) for r in rows], GENDERS, n) if gender_col else np.array([g for g, _ in from_names])
    race = group_codes([_cell(r[race_col]) for r in rows], RACES, n) if race_col else np.array([r for _, r in from_names])
    notes = []
    if from_names is not None:
        notes.append("gender/race labels parsed from UTKFace-style file names")
    return Predictions(files, true, pred, gender.astype(np.int64), race.astype(np.int64), gprob, str(path), notes=notes)


def select_records(records: Sequence[Any], split: str = "test", seed: int = 0, split_file: str | Path | None = None) -> list[Any]:
    """The records of one split: a saved ``split.json`` if given, else :func:`split_records` (0.1/0.1, ``seed``),
    the datamodule's default split.

    Raises:
        ValueError: for an unknown split name.
    """
    from faceage.data.splits import load_split, split_records

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return list(records)
    idx = load_split(split_file, records) if split_file else split_records(records, seed=seed)
    return [records[i] for i in idx[split]]


def predict_dataset(
    model: str | Path | None,
    data: str | Path,
    dataset: str = "utkface",
    split: str = "test",
    split_file: str | Path | None = None,
    max_samples: int = 0,
    batch_size: int = 64,
    workers: int | None = None,
    predictor: Any = None,
    progress: bool = False,
) -> tuple[Predictions, Any]:
    """Runs a model (``Predictor(detect=False)``: the dataset holds aligned chips) over one split of a dataset.

    Args:
        model: model directory / checkpoint (``None``: the bundled model); ignored when ``predictor`` is given.
        data: dataset folder.
        dataset: reader name (``faceage.data.readers.READERS``).
        split: ``test``, ``val``, ``train`` or ``all``.
        split_file: a saved ``split.json`` to use instead of recomputing the split.
        max_samples: keep a seeded random subset of this many records (0: all).
        batch_size: faces per forward pass.
        workers: image decoding threads (default: :func:`faceage.inference.predictor.default_workers`).
        predictor: an existing predictor to use.
        progress: a progress bar on stderr (faces per second, ETA).

    Returns:
        ``(predictions, predictor)``.
    """
    from faceage.data.readers import read_dataset
    from faceage.inference.predictor import Predictor

    records, _ = read_dataset(dataset, data)
    records = select_records(records, split, split_file=split_file)
    if max_samples and len(records) > max_samples:
        keep = np.sort(np.random.default_rng(0).choice(len(records), max_samples, replace=False))
        records = [records[i] for i in keep]
    if not records:
        raise ValueError(f"{data}: no {dataset} records in split {split!r}")
    predictor = predictor or Predictor(model, detect=False, batch_size=batch_size, workers=workers)
    calibration = getattr(predictor, "calibration", None)
    policies = {int(k): float(v["threshold"]) for k, v in (calibration.config.get("verify", {}) if calibration else {}).items()}
    overs = sorted(policies) or [18]
    lows, highs, p_over = [], [], {n: [] for n in overs}
    files, true, pred, gender, race, gprob, rpred = [], [], [], [], [], [], []
    n_failed = 0
    from faceage.inference.progress import progress_bar

    bar = progress_bar(len(records), "face", progress, "predict")
    for rec, result in zip(records, predictor.predict_files([r.path for r in records]), strict=True):
        bar.update(1)
        if result.error or not result.faces:
            n_failed += 1
            continue
        face = result.faces[0]
        files.append(rec.path)
        true.append(rec.age)
        pred.append(face.age)
        gender.append(-1 if rec.gender is None else rec.gender)
        race.append(-1 if rec.race is None else rec.race)
        if face.gender is not None:
            gprob.append(face.gender_p if face.gender == "female" else 1.0 - face.gender_p)
        if face.race is not None:
            rpred.append(RACES.index(face.race))
        if face.age_low is not None:
            lows.append(face.age_low)
            highs.append(face.age_high)
        if face.distribution is not None:
            for n in overs:
                p_over[n].append(face.p_over(n))
    bar.close()
    preds = Predictions(
        files, np.asarray(true, float), np.asarray(pred, float), np.asarray(gender, np.int64), np.asarray(race, np.int64),
        np.asarray(gprob, float) if len(gprob) == len(files) and gprob else None,
        f"{model or 'bundled model'} on {dataset} {data} ({split})", n_failed,
        race_pred=np.asarray(rpred, np.int64) if rpred and len(rpred) == len(files) else None,
    )
    if lows and len(lows) == len(files):
        preds.age_low, preds.age_high = np.asarray(lows, float), np.asarray(highs, float)
        preds.level = getattr(predictor, "level", None)
    if all(len(v) == len(files) for v in p_over.values()) and files and p_over[overs[0]]:
        preds.p_over = {n: np.asarray(v, float) for n, v in p_over.items()}
        preds.thresholds = policies
    return preds, predictor


# ---------------------------------------------------------------------------------------------- metrics


def _factors(preds: Predictions) -> list[tuple[str, np.ndarray, Sequence[str]]]:
    """The grouping factors with any known value: ``(name, codes, labels)``."""
    out = [("age band", age_band_index(preds.age_true), AGE_BAND_LABELS)]
    for name, codes, labels in (("gender", preds.gender, GENDERS), ("race", preds.race, RACES)):
        if np.any(codes >= 0):
            out.append((name, codes, labels))
    return out


def _ci(values_fn, n: int, n_boot: int, seed: int) -> tuple[float, float]:
    return bootstrap_ci(values_fn, n, n_boot=n_boot, seed=seed) if n >= 2 else (math.nan, math.nan)


def age_group_row(abs_err: np.ndarray, err: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``n``, ``mae``, ``mae_ci``, ``cs@5``, ``cs@5_ci`` and ``bias`` of one group's errors (CIs NaN for n < 2)."""
    n = int(abs_err.size)
    hit = abs_err <= CS_K + 1e-9
    return {
        "n": n,
        "mae": float(abs_err.mean()),
        "mae_ci": _ci(lambda idx: float(abs_err[idx].mean()), n, n_boot, seed),
        "cs@5": float(hit.mean()),
        "cs@5_ci": _ci(lambda idx: float(hit[idx].mean()), n, n_boot, seed),
        "bias": float(err.mean()),
    }


def age_group_tables(preds: Predictions, n_boot: int = 1000, seed: int = 0, min_flag_n: int = MIN_FLAG_N) -> dict[str, list[dict]]:
    """Age metrics for every group of every combination of the factors (age band, gender, race).

    Args:
        preds: the predictions.
        n_boot: bootstrap resamples per CI.
        seed: bootstrap seed.
        min_flag_n: smallest group that can be flagged.

    Returns:
        Section name (``"age band"``, ``"gender"``, ..., ``"age band × gender × race"``) -> rows with ``group``
        (labels joined by " / "), ``factors`` (factor -> label), the :func:`age_group_row` numbers and
        ``flagged`` (MAE CI lower bound above the overall MAE, ``n >= min_flag_n``). Samples with an unknown
        value of a section's factor are left out of that section.
    """
    err = preds.age_pred - preds.age_true
    abs_err = np.abs(err)
    overall = float(abs_err.mean())
    factors = _factors(preds)
    tables: dict[str, list[dict]] = {}
    for size in range(1, len(factors) + 1):
        for combo in itertools.combinations(factors, size):
            rows = []
            for values in itertools.product(*(range(len(labels)) for _, _, labels in combo)):
                mask = np.ones(len(preds), dtype=bool)
                for (_, codes, _), v in zip(combo, values):
                    mask &= codes == v
                if not mask.any():
                    continue
                row = age_group_row(abs_err[mask], err[mask], n_boot, seed)
                labels = {name: labels[v] for (name, _, labels), v in zip(combo, values)}
                lo = row["mae_ci"][0]
                row["flagged"] = bool(row["n"] >= min_flag_n and not math.isnan(lo) and lo > overall)
                rows.append({"group": " / ".join(labels.values()), "factors": labels, **row})
            tables[" × ".join(name for name, _, _ in combo)] = rows
    return tables


def gender_tables(preds: Predictions, n_boot: int = 1000, seed: int = 0, min_flag_n: int = MIN_FLAG_N) -> dict[str, Any] | None:
    """Gender accuracy overall and by race and age band, with bootstrap CIs.

    A group is flagged when its accuracy CI lies wholly below the overall accuracy (``n >= min_flag_n``).

    Returns:
        ``{"overall": row, "by race": [rows], "by age band": [rows]}`` with rows ``group``, ``n``, ``accuracy``,
        ``accuracy_ci``, ``flagged``; ``None`` without gender predictions or known true gender.
    """
    if preds.gender_prob is None:
        return None
    known = preds.gender >= 0
    if not known.any():
        return None
    correct = ((preds.gender_prob >= 0.5).astype(np.int64) == preds.gender)[known]
    overall = float(correct.mean())

    def row(group: str, hits: np.ndarray) -> dict[str, Any]:
        n = int(hits.size)
        acc = float(hits.mean())
        ci = _ci(lambda idx: float(hits[idx].mean()), n, n_boot, seed)
        flagged = bool(n >= min_flag_n and not math.isnan(ci[1]) and ci[1] < overall)
        return {"group": group, "n": n, "accuracy": acc, "accuracy_ci": ci, "flagged": flagged}

    out: dict[str, Any] = {"overall": row("all", correct)}
    for name, codes, labels in (("by race", preds.race[known], RACES), ("by age band", age_band_index(preds.age_true)[known], AGE_BAND_LABELS)):
        out[name] = [row(label, correct[codes == i]) for i, label in enumerate(labels) if np.any(codes == i)]
    return out


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
        "sensitivity"}``: ``overall`` is :func:`age_group_row` of all samples, ``metrics`` the full
        :func:`evaluate_predictions` result, ``groups`` :func:`age_group_tables`, ``flagged`` the flagged rows
        of all sections (worst first), ``gender`` :func:`gender_tables`.
    """
    if len(preds) == 0:
        raise ValueError("no predictions to report on")
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
        "metrics": evaluate_predictions(preds.age_pred, preds.age_true, gender=preds.gender, race=preds.race,
                                        gender_prob=preds.gender_prob if np.any(preds.gender >= 0) else None,
                                        race_pred=preds.race_pred),
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


# ------------------------------------------------------------------------------------------------ plots


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


# ----------------------------------------------------------------------------------------------- render


def _num(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, fmt)


def _ci_text(ci: Sequence[float], fmt: str = ".2f") -> str:
    return "–" if ci is None or math.isnan(ci[0]) else f"{ci[0]:{fmt}}–{ci[1]:{fmt}}"


AGE_COLUMNS = ("group", "n", "MAE", "MAE 95% CI", "CS@5", "CS@5 95% CI", "bias", "flag")
GENDER_COLUMNS = ("group", "n", "accuracy", "95% CI", "flag")
SENSITIVITY_COLUMNS = ("condition", "n", "MAE", "ΔMAE", "CS@5", "bias", "mean |shift|", "gender acc.")
COVERAGE_COLUMNS = ("group", "n", "coverage", "95% CI", "mean width")
DECISION_COLUMNS = ("group", "n minors", "FPR (minors pass)", "95% CI", "n adults", "referral (adults)", "95% CI")


def _assurance_sections(assurance: Mapping[str, Any] | None) -> list[tuple[str, Sequence[str], list[list[str]], list[bool]]]:
    out: list[tuple[str, Sequence[str], list[list[str]], list[bool]]] = []
    if not assurance:
        return out
    iv = assurance.get("intervals")
    if iv:
        rows = [{"factor": "", "group": "all", **iv["overall"]}, *iv["groups"]]
        cells = [[f"{r['factor']}: {r['group']}" if r["factor"] else "all", str(r["n"]), _num(r["coverage"], ".3f"),
                  _ci_text(r["coverage_ci"], ".3f"), _num(r["width"], ".1f")] for r in rows]
        level = assurance.get("level")
        out.append((f"Interval coverage ({level:g} nominal)" if level else "Interval coverage", COVERAGE_COLUMNS, cells, [False] * len(cells)))
    for over, d in assurance.get("decisions", {}).items():
        for kind in ("policy", "challenge"):
            t = d.get(kind)
            if not t:
                continue
            rows = [{"factor": "", "group": "all", **t["overall"]}, *(r for r in t["groups"] if r["n_minors"] or r["n_adults"])]
            cells = [[f"{r['factor']}: {r['group']}" if r["factor"] else "all", str(r["n_minors"]), _num(r["fpr"], ".3f"), _ci_text(r["fpr_ci"], ".3f"),
                      str(r["n_adults"]), _num(r["referral"], ".3f"), _ci_text(r["referral_ci"], ".3f")] for r in rows]
            rule = f"P(age >= {over}) >= {t['threshold']:.4g}" if kind == "policy" else f"estimated age >= {t['age']:g}"
            lo, hi = t["minor_ages"]
            out.append((f"Over-{over} decisions: pass when {rule} (minors = ages {lo}-{hi}, adults = {t['adult_age']}+)", DECISION_COLUMNS, cells,
                        [False] * len(cells)))
    return out


def _age_cells(r: Mapping[str, Any]) -> list[str]:
    return [r["group"], str(r["n"]), _num(r["mae"]), _ci_text(r["mae_ci"]), _num(r["cs@5"], ".3f"),
            _ci_text(r["cs@5_ci"], ".3f"), _num(r["bias"], "+.2f"), "⚠ above overall" if r["flagged"] else ""]


def _gender_cells(r: Mapping[str, Any]) -> list[str]:
    return [r["group"], str(r["n"]), _num(r["accuracy"], ".3f"), _ci_text(r["accuracy_ci"], ".3f"), "⚠ below overall" if r["flagged"] else ""]


def _sensitivity_cells(r: Mapping[str, Any], base_mae: float) -> list[str]:
    return [r["label"], str(r["n"]), _num(r["mae"]), _num(r["mae"] - base_mae, "+.2f"), _num(r["cs@5"], ".3f"),
            _num(r["bias"], "+.2f"), _num(r["mean_abs_shift"]), _num(r["gender_accuracy"], ".3f")]


def _race_metrics(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The race classification metrics when the model predicted race for faces of known race, else ``None``."""
    race = (report.get("metrics") or {}).get("race")
    return race if race and race.get("n") else None


def _sections(report: Mapping[str, Any]) -> list[tuple[str, Sequence[str], list[list[str]], list[bool]]]:
    """Every table of the report as ``(title, columns, rows of cells, flagged per row)``."""
    out = []
    o = report["overall"]
    out.append(("Overall", AGE_COLUMNS, [_age_cells({"group": "all", "flagged": False, **o})], [False]))
    for section, rows in report["groups"].items():
        out.append((f"Age error by {section}", AGE_COLUMNS, [_age_cells(r) for r in rows], [r["flagged"] for r in rows]))
    gender = report.get("gender")
    if gender:
        for section in ("by race", "by age band"):
            rows = [gender["overall"], *gender.get(section, [])]
            out.append((f"Gender accuracy {section}", GENDER_COLUMNS, [_gender_cells(r) for r in rows], [r["flagged"] for r in rows]))
    race = _race_metrics(report)
    if race:
        rows = [["all (accuracy)", str(race["n"]), f"{race['accuracy']:.3f}"]] + [
            [name, str(v["n"]), f"{v['recall']:.3f}"] for name, v in race["recall_by_class"].items()
        ]
        out.append(("Race classification (recall by true race)", ["group", "n", "accuracy / recall"], rows, [False] * len(rows)))
    sens = report.get("sensitivity")
    if sens:
        base = sens[0]["mae"]
        out.append(("Sensitivity to image changes", SENSITIVITY_COLUMNS, [_sensitivity_cells(r, base) for r in sens], [False] * len(sens)))
    out += _assurance_sections(report.get("assurance"))
    return out


def _summary_lines(report: Mapping[str, Any]) -> list[str]:
    o = report["overall"]
    lines = [
        f"Source: {report['source']}",
        f"Samples: {report['n']}" + (f" ({report['n_failed']} unreadable, left out)" if report["n_failed"] else ""),
        f"Overall MAE {o['mae']:.2f} (95% CI {_ci_text(o['mae_ci'])}), CS@5 {o['cs@5']:.3f}, bias {o['bias']:+.2f} years",
    ]
    if report.get("gender"):
        g = report["gender"]["overall"]
        lines.append(f"Gender accuracy {g['accuracy']:.3f} (95% CI {_ci_text(g['accuracy_ci'], '.3f')}, n={g['n']})")
    race = _race_metrics(report)
    if race:
        lines.append(f"Race accuracy {race['accuracy']:.3f} (balanced {race['balanced_accuracy']:.3f}, n={race['n']}); the race "
                     "output is for auditing errors by group, not for classifying people")
    lines += _assurance_lines(report.get("assurance"))
    lines += report.get("notes", [])
    lines.append(
        f"A group is flagged when the lower end of its MAE 95% bootstrap CI ({report['n_boot']} resamples) is above the "
        f"overall MAE and it has at least {report['min_flag_n']} samples."
    )
    return lines


def _assurance_lines(assurance: Mapping[str, Any] | None) -> list[str]:
    if not assurance:
        return []
    acc = ", ".join(f"Acc({k.split('@')[1]}) {v:.3f}" for k, v in assurance["acc"].items())
    lines = [f"MAE averaged over sex x age cells {_num(assurance['mae_cells']['mae_cells'])} ({assurance['mae_cells']['n_cells']} cells); {acc}"]
    iv = assurance.get("intervals")
    if iv:
        lines.append(f"Interval coverage {iv['overall']['coverage']:.3f} (nominal {_num(assurance.get('level'), 'g')}), mean width {iv['overall']['width']:.1f} years")
    for over, d in assurance.get("decisions", {}).items():
        for kind in ("policy", "challenge"):
            t = d.get(kind)
            if t and t["overall"]["fpr"] is not None:
                what = f"policy P(age >= {over}) >= {t['threshold']:.4g}" if kind == "policy" else f"challenge {t['age']:g}"
                lines.append(f"Over-{over} ({what}): {t['overall']['fpr']:.2%} of {t['overall']['n_minors']} faces aged "
                             f"{t['minor_ages'][0]}-{t['minor_ages'][1]} pass; {_num(t['overall']['referral'], '.1%')} of "
                             f"{t['overall']['n_adults']} aged {t['adult_age']}+ referred")
    return lines


def _flag_lines(report: Mapping[str, Any]) -> list[str]:
    lines = [f"{r['section']}: {r['group']} — MAE {r['mae']:.2f} (CI {_ci_text(r['mae_ci'])}, n={r['n']})" for r in report["flagged"]]
    if report.get("gender"):
        for section in ("by race", "by age band"):
            lines += [f"gender accuracy {section}: {r['group']} — {r['accuracy']:.3f} (CI {_ci_text(r['accuracy_ci'], '.3f')}, n={r['n']})"
                      for r in report["gender"].get(section, []) if r["flagged"]]
    return lines


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, Path] | None = None, base: Path | None = None) -> str:
    """The report as markdown; figures are linked by path relative to ``base``."""
    out = ["# faceage bias report", ""]
    out += [f"- {line}" for line in _summary_lines(report)]
    flags = _flag_lines(report)
    out += ["", "## Flagged groups", ""]
    out += [f"- ⚠ {line}" for line in flags] if flags else ["None: no group is significantly worse than overall."]
    for title, columns, rows, _ in _sections(report):
        out += ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if figures:
        out += ["", "## Figures", ""]
        for title, path in figures.items():
            rel = Path(path).relative_to(base) if base else Path(path)
            out += [f"### {title}", "", f"![{title}]({rel.as_posix()})", ""]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr.flag td{background:#fde2e1;font-weight:600}
.flags li{color:#a00}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
details{margin-bottom:.5em}summary{cursor:pointer;font-weight:600}
"""


def _html_table(columns: Sequence[str], rows: list[list[str]], flags: list[bool]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        ("<tr class='flag'>" if flag else "<tr>") + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row, flag in zip(rows, flags)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Mapping[str, Any], figures: Mapping[str, Path] | None = None, title: str = "faceage bias report") -> str:
    """The report as one self-contained HTML page: figures embedded as base64 PNG, no external resource."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in _summary_lines(report)]
    parts.append("</ul><h2>Flagged groups</h2>")
    flags = _flag_lines(report)
    parts.append("<ul class='flags'>" + "".join(f"<li>⚠ {html.escape(line)}</li>" for line in flags) + "</ul>"
                 if flags else "<p>None: no group is significantly worse than overall.</p>")
    for name, columns, rows, row_flags in _sections(report):
        table = _html_table(columns, rows, row_flags)
        if "×" in name:  # crossings can be long: folded, opened when they hold a flagged group
            parts.append(f"<details{' open' if any(row_flags) else ''}><summary>{html.escape(name)}</summary>{table}</details>")
        else:
            parts.append(f"<h2>{html.escape(name)}</h2>{table}")
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, path in figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<h3>{html.escape(caption)}</h3><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Mapping[str, Any], preds: Predictions, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Writes ``report.html`` (self-contained), ``report.md``, ``report.json`` and ``plots/*.png`` to ``out_dir``.

    Returns:
        ``{"html": path, "markdown": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_plots(report, preds, out / "plots") if plots else {}
    paths = {"html": out / "report.html", "markdown": out / "report.md", "json": out / "report.json"}
    paths["html"].write_text(render_html(report, figures), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report, figures, out), encoding="utf-8")
    save_json(to_jsonable(report), paths["json"])
    return paths


# -------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faceage report",
        description="Bias report (MAE / CS@5 by age band x gender x race with bootstrap CIs, gender accuracy by group) "
        "as self-contained HTML + markdown, from a run's test predictions or a model run over a dataset.",
    )
    p.add_argument("run_dir", nargs="?", default=None, help="run folder holding test/test_predictions.csv (or the CSV itself)")
    p.add_argument("--model", default=None, help="model dir / .ckpt to run over --data (and for --sensitivity)")
    p.add_argument("--data", default=None, help="dataset folder of aligned face chips")
    p.add_argument("--dataset", default="utkface", help="dataset reader (default: utkface)")
    p.add_argument("--split", choices=SPLITS, default="test", help="which split of --data (split_records, seed 0)")
    p.add_argument("--split-file", default=None, help="a saved split.json to use instead of recomputing the split")
    p.add_argument("--max-samples", type=int, default=0, help="seeded random subset of the split (0: all)")
    p.add_argument("--output", default=None, help="output folder (default: RUN_DIR/report or ./faceage_report)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per CI")
    p.add_argument("--min-flag-n", type=int, default=MIN_FLAG_N, help="smallest group that can be flagged")
    p.add_argument("--sensitivity", action="store_true", help="also measure the metrics under image changes (needs --model)")
    p.add_argument("--sensitivity-samples", type=int, default=300, help="images used for --sensitivity")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: one per two cores)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="torch", help="engine running --model over --data (onnx: needs model.onnx)")
    return p


def _sensitivity(args: argparse.Namespace, preds: Predictions, predictor: Any) -> list[dict]:
    from faceage.evaluation.sensitivity import sensitivity_analysis
    from faceage.inference.predictor import Predictor

    predictor = predictor or Predictor(args.model, detect=False, batch_size=args.batch_size)
    idx = np.arange(len(preds))
    if len(idx) > args.sensitivity_samples:
        idx = np.sort(np.random.default_rng(0).choice(len(idx), args.sensitivity_samples, replace=False))
    from faceage.inference.progress import progress_wanted

    return sensitivity_analysis(predictor, [preds.files[i] for i in idx], preds.age_true[idx], gender=preds.gender[idx],
                                batch_size=args.batch_size, progress=progress_wanted(args.progress, args.quiet))


def main(argv: list[str] | None = None) -> int:
    """``faceage report``. Exit status 0 on success, 2 on bad arguments or unusable inputs."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.run_dir is None and not (args.model and args.data):
        parser.error("give RUN_DIR, or --model and --data")
    if args.data and not args.model and args.run_dir is None:
        parser.error("--data needs --model")
    if args.sensitivity and not args.model:
        parser.error("--sensitivity needs --model")
    if args.n_boot < 1 or args.sensitivity_samples < 1:
        parser.error("--n-boot and --sensitivity-samples must be >= 1")
    predictor = None
    try:
        if args.run_dir is not None:
            preds = read_predictions_csv(find_predictions_csv(args.run_dir))
        else:
            from faceage.inference.progress import progress_wanted

            if args.engine != "torch":
                from faceage.inference.predictor import Predictor

                predictor = Predictor(args.model, engine=args.engine, detect=False, batch_size=args.batch_size, workers=args.workers)
            preds, predictor = predict_dataset(args.model, args.data, args.dataset, args.split, args.split_file,
                                               args.max_samples, args.batch_size, args.workers, predictor=predictor,
                                               progress=progress_wanted(args.progress, args.quiet))
        if len(preds) == 0:
            raise ValueError("no usable predictions (every image failed)")
        sensitivity = _sensitivity(args, preds, predictor) if args.sensitivity else None
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = build_report(preds, n_boot=args.n_boot, min_flag_n=args.min_flag_n, sensitivity=sensitivity)
    default_out = Path(args.run_dir) / "report" if args.run_dir and Path(args.run_dir).is_dir() else Path("faceage_report")
    try:
        paths = write_report(report, preds, args.output or default_out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    o = report["overall"]
    print(f"n={report['n']} MAE {o['mae']:.2f} (95% CI {_ci_text(o['mae_ci'])}) CS@5 {o['cs@5']:.3f}; "
          f"{len(report['flagged'])} flagged group(s)")
    for line in _assurance_lines(report.get("assurance")):
        print(f"  {line}")
    flags = _flag_lines(report)
    for line in flags[:10]:
        print(f"  flagged: {line}")
    if len(flags) > 10:
        print(f"  ... and {len(flags) - 10} more (see the report)")
    print(f"report: {paths['html']} ; {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
