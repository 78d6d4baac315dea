"""The cross-dataset matrix (trained on one dataset, tested on each): a markdown table and a heatmap.

``matrix[i][j]`` is the metric of the model trained on dataset ``i`` tested on dataset ``j``; the diagonal is the
in-domain figure, each column is one test set scored by every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def matrix_markdown(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], metric: str = "MAE",
                    digits: int = 2) -> str:
    """A markdown table: one row per training set, one column per test set, ``-`` where there is no value.

    Examples:
        >>> print(matrix_markdown(["a", "b"], [[4.0, 7.5], [6.25, None]]))
        | MAE: trained on \\ tested on | a | b |
        | --- | ---: | ---: |
        | a | **4.00** | 7.50 |
        | b | 6.25 | - |
    """
    head = f"| {metric}: trained on \\ tested on | " + " | ".join(labels) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in labels) + " |"
    rows = []
    for i, (label, row) in enumerate(zip(labels, matrix)):
        cells = ["-" if v is None else (f"**{v:.{digits}f}**" if i == j else f"{v:.{digits}f}") for j, v in enumerate(row)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def plot_matrix(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], path: str | Path,
                metric: str = "MAE (years)") -> Path:
    """Heatmap of the matrix (rows: trained on, columns: tested on), each cell annotated with its value.

    Returns:
        The PNG path written.
    """
    values = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * n, 1.2 + 1.1 * n))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r")
    ax.set_xticks(range(n), labels=labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    finite = values[np.isfinite(values)]
    middle = float(finite.mean()) if finite.size else 0.0
    for i in range(n):
        for j in range(n):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center",
                        color="white" if values[i, j] > middle else "black", fontweight="bold" if i == j else "normal")
    fig.colorbar(image, ax=ax, label=metric, shrink=0.8)
    ax.set_title("Cross-dataset " + metric.split(" ")[0])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
