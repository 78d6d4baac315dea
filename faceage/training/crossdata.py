"""Cross-dataset testing (``faceage crossdata``, :mod:`faceage.cli.crossdata`): train one model per dataset, test each
on the held-out faces of every dataset, and write the matrix as JSON, a markdown table and a heatmap.

Each model is an ordinary ``faceage fit`` of one recipe on one dataset (its own seeded, saved split: train / val /
test); every test is a ``faceage test`` of that model on a dataset's saved *test* split, so a column holds the same
faces for every model and the diagonal is the usual in-domain figure. Photos that are not aligned chips are aligned
once (``data.align``, :mod:`faceage.data.aligned_cache`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from faceage.training.kfold import FULL_PRECISION, _latest_run

RESULTS_JSON, RESULTS_MD, RESULTS_PNG = "crossdata.json", "crossdata.md", "crossdata.png"


@dataclass(frozen=True)
class DatasetArg:
    """One ``--datasets`` item: ``reader=root`` or ``label:reader=root`` (a reader used twice needs labels)."""

    label: str
    reader: str
    root: str

    @classmethod
    def parse(cls, text: str) -> DatasetArg:
        """``"utkface=../shared/data/utkface"`` or ``"aaf_raw:aaf=AAF/original images"``.

        Raises:
            ValueError: naming the item, when it has no ``=`` or an empty part.
        """
        name, sep, root = text.partition("=")
        label, _, reader = name.rpartition(":")
        if not sep or not reader or not root:
            raise ValueError(f"--datasets {text!r}: expected READER=FOLDER or LABEL:READER=FOLDER")
        label = label or reader
        if not re.fullmatch(r"[\w.-]+", label):
            raise ValueError(f"--datasets {text!r}: the label may hold letters, digits, '_', '-' and '.' only")
        return cls(label, reader, root)


def _data_args(d: DatasetArg) -> list[str]:
    # a plain train/val/test split of each dataset (a k-fold recipe's folds do not apply here)
    return ["--data.dataset", d.reader, "--data.root", d.root, "--data.split.n_folds", "0"]


def _quiet() -> list[str]:
    return ["--trainer.enable_model_summary", "false"]


def run_crossdata(config: str, datasets: list[DatasetArg], out: str | Path, overrides: list[str]) -> dict:
    """Trains on each dataset, tests on each dataset's test split, writes ``crossdata.{json,md,png}`` under ``out``.

    Args:
        config: the ``faceage fit`` recipe of every model (its ``data.dataset``/``root`` are replaced).
        datasets: at least one; labels must differ.
        out: output folder: ``train_<label>/`` (fits), ``test_<trained>_on_<tested>/`` (tests) and the results.
        overrides: extra ``--key value`` arguments for every fit and test.

    Returns:
        ``{"datasets", "trained_on", "tested_on", "mae", "cs5", "n", "runs", "wall_seconds"}``; ``mae[i][j]`` is the
        model trained on ``datasets[i]`` tested on ``datasets[j]``'s test faces (``n[j]`` of them).

    Raises:
        ValueError: with no dataset or two with one label.
    """
    from faceage.evaluation.cross_dataset import matrix_markdown, plot_matrix
    from faceage.evaluation.metrics import save_json
    from faceage.training.lightning_cli import run_cli

    labels = [d.label for d in datasets]
    if not datasets:
        raise ValueError("crossdata needs at least one dataset")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--datasets: two datasets share a label ({labels}); name them LABEL:READER=FOLDER")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    models: dict[str, tuple[Path, Path]] = {}  # label -> (best checkpoint, split file)
    walls: dict[str, float] = {}
    for d in datasets:
        t = time.perf_counter()
        root = out / f"train_{d.label}"
        run_cli(["fit", "--config", config, *_data_args(d), *overrides, *_quiet(), "--trainer.default_root_dir", str(root)])
        run = _latest_run(root)
        best = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
        models[d.label] = (best[-1], run / "split.json")
        walls[f"train_{d.label}"] = round(time.perf_counter() - t, 1)

    mae = [[None] * len(datasets) for _ in datasets]
    cs5 = [[None] * len(datasets) for _ in datasets]
    n = [None] * len(datasets)
    runs: dict[str, str] = {}
    for i, trained in enumerate(datasets):
        checkpoint, _ = models[trained.label]
        for j, tested in enumerate(datasets):
            t = time.perf_counter()
            name = f"test_{trained.label}_on_{tested.label}"
            run_cli(["test", "--config", config, *_data_args(tested), *overrides, *_quiet(),
                     "--data.split_file", str(models[tested.label][1]), "--ckpt_path", str(checkpoint), *FULL_PRECISION,
                     "--trainer.default_root_dir", str(out / name)])
            result_path = _latest_run(out / name) / "test" / "test_results.json"
            overall = json.loads(result_path.read_text())["overall"]
            mae[i][j], cs5[i][j], n[j] = overall["mae"], overall.get("cs@5"), overall["n"]
            runs[name] = str(result_path)
            walls[name] = round(time.perf_counter() - t, 1)

    walls["total"] = round(time.perf_counter() - start, 1)
    result = {"datasets": [{"label": d.label, "reader": d.reader, "root": d.root} for d in datasets],
              "trained_on": labels, "tested_on": labels, "mae": mae, "cs5": cs5, "n": n, "runs": runs,
              "wall_seconds": walls}
    save_json(result, out / RESULTS_JSON)
    table = matrix_markdown(labels, mae)
    n_line = ", ".join(f"{label} {count}" for label, count in zip(labels, n))
    (out / RESULTS_MD).write_text(f"{table}\n\nRows: the dataset a model trained on; columns: the test faces it was "
                                  f"scored on (each dataset's own held-out test split: {n_line} faces).\n")
    plot_matrix(labels, mae, out / RESULTS_PNG)
    return result
