"""Diagnostic figures of an evaluation: predictions, distributions, decade confusion, group MAE, training curves.

Everything renders off-screen with the Agg backend and is written as PNG; nothing is ever shown. Each
``plot_*`` function takes its data and an output path, closes its figure and returns the path written.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from faceage.evaluation.metrics import ArrayLike, check_pair, evaluate_predictions  # noqa: E402

DPI = 110
N_DECADES = 10  # 0-9, 10-19, ..., 80-89, 90+
DECADE_LABELS: tuple[str, ...] = tuple(f"{10 * i}-{10 * i + 9}" for i in range(N_DECADES - 1)) + ("90+",)
GROUP_SECTIONS: tuple[tuple[str, str], ...] = (
    ("by_age_band", "MAE by true age band"),
    ("by_gender", "MAE by gender"),
    ("by_race", "MAE by race"),
)
PLOT_FILES: dict[str, str] = {
    "pred_vs_true": "pred_vs_true.png",
    "age_distributions": "age_distributions.png",
    "decade_confusion": "decade_confusion.png",
    "mae_by_group": "mae_by_group.png",
    "learning_curves": "learning_curves.png",
}

Curves = dict[str, tuple[np.ndarray, np.ndarray]]  # metric name -> (x, values), x sorted


def _save(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` as PNG (creating parent folders) and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------------------------- prediction plots


def plot_pred_vs_true(pred: ArrayLike, true: ArrayLike, path: str | Path) -> Path:
    """Scatter of predicted against true age with the identity line; MAE in the title.

    Args:
        pred: predicted ages, shape (N,), N >= 1.
        true: true ages, shape (N,).
        path: PNG file to write.

    Returns:
        The path written.
    """
    p, t = check_pair(pred, true)
    if p.size == 0:
        raise ValueError("nothing to plot: no predictions")
    mae = float(np.mean(np.abs(p - t)))
    lo, hi = float(min(p.min(), t.min())), float(max(p.max(), t.max()))
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(t, p, s=8, alpha=max(0.08, min(0.8, 200.0 / p.size)), edgecolors="none")
    ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="identity")
    ax.set_xlabel("true age")
    ax.set_ylabel("predicted age")
    ax.set_title(f"Predicted vs true age  (MAE = {mae:.2f}, n = {p.size})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _hist_bins(values: np.ndarray, max_bins: int = 60) -> np.ndarray:
    """Shared bin edges of at least one year each over the range of ``values``, shape (B+1,)."""
    lo, hi = math.floor(values.min()), math.ceil(values.max()) + 1
    width = max(1, math.ceil((hi - lo) / max_bins))
    return np.arange(lo, hi + width, width, dtype=np.float64)


def plot_age_distributions(pred: ArrayLike, true: ArrayLike, path: str | Path) -> Path:
    """Overlaid histograms of predicted and true ages on shared bins.

    Args:
        pred: predicted ages, shape (N,), N >= 1.
        true: true ages, shape (N,).
        path: PNG file to write.

    Returns:
        The path written.
    """
    p, t = check_pair(pred, true)
    if p.size == 0:
        raise ValueError("nothing to plot: no predictions")
    bins = _hist_bins(np.concatenate([p, t]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(t, bins=bins, alpha=0.5, label=f"true (mean {t.mean():.1f})")
    ax.hist(p, bins=bins, alpha=0.5, label=f"predicted (mean {p.mean():.1f})")
    ax.set_xlabel("age")
    ax.set_ylabel("count")
    ax.set_title(f"Age distributions (n = {p.size})")
    ax.legend()
    return _save(fig, path)


def decade_index(ages: ArrayLike) -> np.ndarray:
    """Decade class of each age: 0 for 0-9, ..., 8 for 80-89, 9 for 90 and above (negatives -> 0).

    Args:
        ages: shape (N,).

    Returns:
        int64 array, shape (N,).
    """
    return np.clip(np.floor(np.asarray(ages, dtype=np.float64) / 10), 0, N_DECADES - 1).astype(np.int64)


def decade_confusion(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """Counts of (true decade, predicted decade) pairs.

    Args:
        pred: predicted ages, shape (N,).
        true: true ages, shape (N,).

    Returns:
        int64 matrix, shape (10, 10): rows true decade, columns predicted decade.
    """
    p, t = check_pair(pred, true)
    counts = np.zeros((N_DECADES, N_DECADES), dtype=np.int64)
    np.add.at(counts, (decade_index(t), decade_index(p)), 1)
    return counts


def plot_decade_confusion(pred: ArrayLike, true: ArrayLike, path: str | Path) -> Path:
    """Decade confusion matrix, colour row-normalised (recall per true decade), cells annotated with counts.

    Args:
        pred: predicted ages, shape (N,).
        true: true ages, shape (N,).
        path: PNG file to write.

    Returns:
        The path written.
    """
    counts = decade_confusion(pred, true)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true decade")
    for i, j in zip(*np.nonzero(counts), strict=True):
        colour = "white" if norm[i, j] > 0.5 else "black"
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ticks = np.arange(N_DECADES)
    ax.set_xticks(ticks, DECADE_LABELS, rotation=45, ha="right")
    ax.set_yticks(ticks, DECADE_LABELS)
    ax.set_xlabel("predicted decade")
    ax.set_ylabel("true decade")
    diag = np.trace(counts) / max(1, counts.sum())
    ax.set_title(f"Decade confusion (exact decade: {diag:.1%})")
    return _save(fig, path)


def plot_group_mae(result: Mapping[str, Any], path: str | Path) -> Path:
    """Bar charts of MAE by age band, gender and race (those present), with ``n`` on each bar.

    Args:
        result: output of :func:`faceage.evaluation.metrics.evaluate_predictions`; uses its
            ``"by_age_band"``, ``"by_gender"`` and ``"by_race"`` tables and ``overall.mae``.
        path: PNG file to write.

    Returns:
        The path written.

    Raises:
        ValueError: if the result has none of the group tables.
    """
    sections = [(key, title) for key, title in GROUP_SECTIONS if result.get(key)]
    if not sections:
        raise ValueError("result has no by_age_band / by_gender / by_race table to plot")
    widths = [max(2, len(result[key])) for key, _ in sections]
    figsize = (2.0 + 1.0 * sum(widths), 4.2)
    fig, axes = plt.subplots(
        1, len(sections), figsize=figsize, squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    overall = (result.get("overall") or {}).get("mae")
    for ax, (key, title) in zip(axes[0], sections, strict=True):
        _group_bars(ax, result[key], title, overall)
    return _save(fig, path)


def _group_bars(ax: Any, table: Mapping[str, Mapping[str, Any]], title: str, overall: float | None) -> None:
    """One bar per group: height MAE, label ``n=...`` inside; dashed line at the overall MAE."""
    labels = list(table)
    maes = [float(table[g]["mae"]) for g in labels]
    bars = ax.bar(range(len(labels)), maes, color="tab:blue", alpha=0.8)
    counts = [f"n={table[g]['n']}" for g in labels]
    ax.bar_label(bars, labels=counts, label_type="center", fontsize=8, color="white")
    if overall is not None:
        ax.axhline(float(overall), color="black", linestyle="--", linewidth=1, label=f"overall {overall:.2f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("MAE (years)")
    ax.set_ylim(0, max(maes + [float(overall or 0)]) * 1.12 + 1e-6)
    ax.set_title(title)


# --------------------------------------------------------------------------------------- learning curves


def find_metrics_csv(log_dir: str | Path) -> Path | None:
    """The most recently modified CSVLogger ``metrics.csv`` under ``log_dir`` (recursive), or ``None``."""
    found = [p for p in Path(log_dir).rglob("metrics.csv") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_event_dir(log_dir: str | Path) -> Path | None:
    """The folder of the most recently modified TensorBoard event file under ``log_dir``, or ``None``."""
    found = [p for p in Path(log_dir).rglob("events.out.tfevents.*") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime).parent if found else None


def _per_epoch(points: Mapping[str, list[tuple[float, float]]]) -> Curves:
    """Averages each metric's ``(x, value)`` points that share an x; x sorted ascending."""
    curves: Curves = {}
    for name, pts in points.items():
        if not pts:
            continue
        xs = np.array([x for x, _ in pts], dtype=np.float64)
        vs = np.array([v for _, v in pts], dtype=np.float64)
        ux, inverse = np.unique(xs, return_inverse=True)
        means = np.bincount(inverse, weights=vs) / np.bincount(inverse)
        curves[name] = (ux, means)
    return curves


def read_csv_curves(csv_path: str | Path) -> tuple[Curves, str]:
    """Per-epoch curves of every metric column in a Lightning CSVLogger ``metrics.csv``.

    Rows are sparse (each logging call fills some columns); values sharing an epoch are averaged.

    Args:
        csv_path: the ``metrics.csv`` file.

    Returns:
        ``(curves, x_label)``: metric name -> ``(x, values)``, x the epoch (or the step when the file has no
        ``epoch`` column), and the x-axis name.
    """
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    x_key = "epoch" if rows and "epoch" in rows[0] else "step"
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        x = _float_or_none(row.get(x_key))
        if x is None:
            continue
        for name, cell in row.items():
            value = _float_or_none(cell)
            if name in ("epoch", "step") or name is None or value is None:
                continue
            points.setdefault(name, []).append((x, value))
    return _per_epoch(points), x_key


def _float_or_none(cell: Any) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_tensorboard_curves(event_dir: str | Path) -> tuple[Curves, str]:
    """Per-epoch curves of every scalar in a TensorBoard run folder.

    Lightning logs an ``epoch`` scalar with every ``log_metrics`` call, at the same global step as the
    metrics and written after them. Each metric point takes the epoch logged at its step; when the step
    carries several (validation of epoch e and the first training step of e+1 can share a step), the first
    one written at or after the point's wall time, else the last one. A point at a step without an epoch
    takes the epoch of the latest earlier step. Without an ``epoch`` scalar the x-axis is the step.

    Args:
        event_dir: folder holding ``events.out.tfevents.*`` files (all read, in order).

    Returns:
        ``(curves, x_label)`` as :func:`read_csv_curves`.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = {tag: acc.Scalars(tag) for tag in acc.Tags().get("scalars", [])}
    epoch_events = events.pop("epoch", [])
    if not epoch_events:
        points = {tag: [(float(e.step), float(e.value)) for e in evs] for tag, evs in events.items()}
        return _per_epoch(points), "step"
    lookup = _EpochLookup([(e.step, e.wall_time, e.value) for e in epoch_events])
    points = {tag: [(lookup(e.step, e.wall_time), float(e.value)) for e in evs] for tag, evs in events.items()}
    return _per_epoch(points), "epoch"


class _EpochLookup:
    """Epoch of a logged point from the ``epoch`` scalar's ``(step, wall_time, value)`` events."""

    def __init__(self, epochs: Sequence[tuple[int, float, float]]) -> None:
        ordered = sorted(epochs)
        self.steps = np.array([step for step, _, _ in ordered], dtype=np.int64)
        self.walls = np.array([wall for _, wall, _ in ordered], dtype=np.float64)
        self.values = np.array([value for _, _, value in ordered], dtype=np.float64)

    def __call__(self, step: int, wall_time: float) -> float:
        lo = int(np.searchsorted(self.steps, step, side="left"))
        hi = int(np.searchsorted(self.steps, step, side="right"))
        if hi > lo:  # epochs logged at this very step: the first written after the point (same call)
            walls = self.walls[lo:hi]
            after = np.nonzero(walls >= wall_time)[0]
            i = int(after[np.argmin(walls[after])]) if after.size else int(np.argmax(walls))
            return float(self.values[lo + i])
        return float(self.values[max(hi - 1, 0)])


def load_learning_curves(log_dir: str | Path) -> tuple[Curves, str] | None:
    """Curves from the logs under ``log_dir``: a CSVLogger ``metrics.csv`` if any, else TensorBoard events.

    Args:
        log_dir: a Lightning log folder (searched recursively; the most recently written run is used).

    Returns:
        ``(curves, x_label)``, or ``None`` when no log is found or it holds no scalar.
    """
    if not Path(log_dir).is_dir():
        return None
    csv_path = find_metrics_csv(log_dir)
    if csv_path is not None:
        curves, x_label = read_csv_curves(csv_path)
        if curves:
            return curves, x_label
    event_dir = find_event_dir(log_dir)
    if event_dir is not None:
        curves, x_label = read_tensorboard_curves(event_dir)
        if curves:
            return curves, x_label
    return None


def _select(curves: Curves, word: str) -> list[str]:
    """Metric names containing ``word``, without per-step series when any other series exists."""
    names = sorted(n for n in curves if word in n.lower() and n != "hp_metric")
    per_epoch = [n for n in names if not n.endswith("_step")]
    return per_epoch or names


def plot_learning_curves(log_dir: str | Path, path: str | Path) -> Path | None:
    """Loss and MAE curves per epoch from the Lightning logs under ``log_dir``.

    Reads a CSVLogger ``metrics.csv`` (columns like ``train/loss_epoch``, ``val/loss``, ``val/mae``,
    ``epoch``, ``step``) or, failing that, TensorBoard event files; one panel for the metrics whose name
    contains "loss" and one for those containing "mae" (each drawn when present).

    Args:
        log_dir: log folder, searched recursively.
        path: PNG file to write.

    Returns:
        The path written, or ``None`` (and nothing written) when no log or no loss/MAE metric is found.
    """
    loaded = load_learning_curves(log_dir)
    if loaded is None:
        return None
    curves, x_label = loaded
    panels = [("loss", _select(curves, "loss")), ("MAE", _select(curves, "mae"))]
    panels = [(title, names) for title, names in panels if names]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels, strict=True):
        for name in names:
            x, y = curves[name]
            ax.plot(x, y, marker="o" if x.size <= 30 else None, markersize=3, label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x_label)
        ax.set_ylabel(title)
        ax.set_title(f"{title} per {x_label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------- all


def save_all_plots(
    pred: ArrayLike,
    true: ArrayLike,
    result: Mapping[str, Any] | None,
    out_dir: str | Path,
    log_dir: str | Path | None = None,
) -> list[Path]:
    """Writes every figure into ``out_dir`` under the fixed names of ``PLOT_FILES``.

    Args:
        pred: predicted ages, shape (N,).
        true: true ages, shape (N,).
        result: output of :func:`evaluate_predictions` for the group plot; ``None`` computes it (no groups
            but age bands).
        out_dir: output folder, created if needed.
        log_dir: Lightning log folder for ``learning_curves.png``; skipped when ``None`` or without logs.

    Returns:
        The paths written, in ``PLOT_FILES`` order.
    """
    out = Path(out_dir)
    if result is None:
        result = evaluate_predictions(pred, true)
    written = [
        plot_pred_vs_true(pred, true, out / PLOT_FILES["pred_vs_true"]),
        plot_age_distributions(pred, true, out / PLOT_FILES["age_distributions"]),
        plot_decade_confusion(pred, true, out / PLOT_FILES["decade_confusion"]),
        plot_group_mae(result, out / PLOT_FILES["mae_by_group"]),
    ]
    if log_dir is not None:
        curves = plot_learning_curves(log_dir, out / PLOT_FILES["learning_curves"])
        if curves is not None:
            written.append(curves)
    return written
