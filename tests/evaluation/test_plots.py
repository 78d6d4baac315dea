"""faceage.evaluation.plots writes valid, non-trivial PNGs; learning curves come from CSV and TensorBoard logs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.evaluation.metrics import evaluate_predictions
from faceage.evaluation.plots import (
    PLOT_FILES,
    decade_confusion,
    decade_index,
    load_learning_curves,
    plot_age_distributions,
    plot_decade_confusion,
    plot_group_mae,
    plot_learning_curves,
    plot_pred_vs_true,
    read_csv_curves,
    save_all_plots,
)

MIN_BYTES = 5_000


def assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.stat().st_size > MIN_BYTES
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width > 200 and im.height > 200
        im.verify()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 300
    true = rng.uniform(1, 95, size=n).round()
    pred = np.clip(true + rng.normal(0, 6, size=n), 0, None)
    gender = rng.integers(-1, 2, size=n)  # -1 unknown
    race = rng.integers(-1, 5, size=n)
    result = evaluate_predictions(pred, true, gender=gender, race=race)
    return pred, true, result


def write_metrics_csv(path: Path, n_epochs: int = 4) -> None:
    """Rows as Lightning's CSVLogger writes them: sparse, step-level and epoch-level lines."""
    cols = ["epoch", "step", "train/loss_step", "train/loss_epoch", "val/loss", "val/mae", "lr-Adam"]
    rows = []
    for e in range(n_epochs):
        for s in range(3):
            rows.append({"epoch": e, "step": 10 * e + s, "train/loss_step": 5 - e + 0.1 * s})
        rows.append({"epoch": e, "step": 10 * e + 9, "val/loss": 4.5 - e, "val/mae": 9.0 - e})
        rows.append({"epoch": e, "step": 10 * e + 9, "train/loss_epoch": 5.0 - e})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


def write_tensorboard_log(log_dir: Path, n_epochs: int = 3) -> None:
    """Scalars as Lightning's TensorBoardLogger writes them: an ``epoch`` scalar with every call; validation
    of epoch e shares its global step with the first training step of epoch e+1."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    clock = iter(range(1_000_000))

    def log(values: dict, epoch: int, step: int) -> None:
        for tag, value in {**values, "epoch": epoch}.items():
            writer.add_scalar(tag, value, step, walltime=1000.0 + next(clock))

    step = 0
    for e in range(n_epochs):
        for i in range(4):
            log({"train/loss_step": 6.0 - e}, e, step + i)
        step += 4
        log({"val/loss": 5.0 - e, "val/mae": 10.0 - 2 * e}, e, step)
        log({"train/loss_epoch": 5.5 - e}, e, step)
    writer.add_scalar("hp_metric", -1, 0)
    writer.close()


# ------------------------------------------------------------------------------------- prediction plots


def test_plot_pred_vs_true(tmp_path, data):
    pred, true, _ = data
    path = plot_pred_vs_true(pred, true, tmp_path / "a" / "pvt.png")
    assert path == tmp_path / "a" / "pvt.png"
    assert_png(path)


def test_plot_age_distributions(tmp_path, data):
    pred, true, _ = data
    assert_png(plot_age_distributions(pred, true, tmp_path / "dist.png"))


def test_decade_confusion_counts():
    assert decade_index([0, 9.9, 10, 89, 90, 130, -1]).tolist() == [0, 0, 1, 8, 9, 9, 0]
    counts = decade_confusion(pred=[5, 15, 95, 12], true=[8, 11, 99, 3])
    assert counts.shape == (10, 10) and counts.sum() == 4
    assert counts[0, 0] == 1 and counts[1, 1] == 1 and counts[9, 9] == 1 and counts[0, 1] == 1


def test_plot_decade_confusion(tmp_path, data):
    pred, true, _ = data
    assert_png(plot_decade_confusion(pred, true, tmp_path / "conf.png"))


def test_plot_group_mae(tmp_path, data):
    _, _, result = data
    assert_png(plot_group_mae(result, tmp_path / "groups.png"))


def test_plot_group_mae_bands_only_and_empty(tmp_path):
    result = evaluate_predictions([5, 15, 25], [6, 14, 30])
    assert_png(plot_group_mae(result, tmp_path / "bands.png"))
    with pytest.raises(ValueError):
        plot_group_mae({"overall": result["overall"]}, tmp_path / "none.png")


# ------------------------------------------------------------------------------------- learning curves


def test_read_csv_curves_per_epoch(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    write_metrics_csv(csv_path, n_epochs=4)
    curves, x_label = read_csv_curves(csv_path)
    assert x_label == "epoch"
    assert set(curves) == {"train/loss_step", "train/loss_epoch", "val/loss", "val/mae"}
    x, y = curves["val/mae"]
    assert x.tolist() == [0, 1, 2, 3] and y.tolist() == [9, 8, 7, 6]
    x, y = curves["train/loss_step"]  # three steps per epoch averaged
    assert y == pytest.approx([5.1, 4.1, 3.1, 2.1])


def test_learning_curves_from_csv(tmp_path):
    write_metrics_csv(tmp_path / "logs" / "faceage" / "version_0" / "metrics.csv")
    path = plot_learning_curves(tmp_path / "logs", tmp_path / "out" / "curves.png")
    assert path == tmp_path / "out" / "curves.png"
    assert_png(path)


def test_learning_curves_from_tensorboard(tmp_path):
    log_dir = tmp_path / "tb" / "lightning_logs" / "version_0"
    write_tensorboard_log(log_dir, n_epochs=3)
    loaded = load_learning_curves(tmp_path / "tb")
    assert loaded is not None
    curves, x_label = loaded
    assert x_label == "epoch"
    x, y = curves["val/mae"]
    assert x.tolist() == [0, 1, 2] and y.tolist() == pytest.approx([10, 8, 6])
    x, y = curves["train/loss_step"]
    assert x.tolist() == [0, 1, 2] and y.tolist() == pytest.approx([6, 5, 4])
    assert_png(plot_learning_curves(tmp_path / "tb", tmp_path / "tb_curves.png"))


def test_learning_curves_no_logs_writes_nothing(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    out = tmp_path / "out" / "curves.png"
    assert plot_learning_curves(tmp_path / "empty", out) is None
    assert plot_learning_curves(tmp_path / "missing", out) is None
    assert not out.exists() and not out.parent.exists()


def test_learning_curves_csv_without_loss_or_mae(tmp_path):
    csv_path = tmp_path / "logs" / "metrics.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("epoch,step,lr\n0,1,0.1\n1,2,0.05\n")
    assert plot_learning_curves(tmp_path / "logs", tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


# ------------------------------------------------------------------------------------------ save_all


def test_save_all_plots(tmp_path, data):
    pred, true, result = data
    logs = tmp_path / "logs"
    write_metrics_csv(logs / "version_0" / "metrics.csv")
    paths = save_all_plots(pred, true, result, tmp_path / "plots", log_dir=logs)
    assert [p.name for p in paths] == list(PLOT_FILES.values())
    for p in paths:
        assert p.parent == tmp_path / "plots"
        assert_png(p)


def test_save_all_plots_without_logs_or_result(tmp_path, data):
    pred, true, _ = data
    paths = save_all_plots(pred, true, None, tmp_path / "plots", log_dir=tmp_path / "nothing")
    assert [p.name for p in paths] == [
        "pred_vs_true.png", "age_distributions.png", "decade_confusion.png", "mae_by_group.png"
    ]
    assert not (tmp_path / "plots" / "learning_curves.png").exists()
