"""Lightning's learning-rate finder (a cheap alternative to a hyper-parameter search), with its plot saved."""

from __future__ import annotations

from pathlib import Path


def run_lr_find(trainer, module, datamodule) -> float | None:
    """Runs ``Tuner.lr_find``, writes ``lr_find.png`` in the log dir, sets the suggestion as ``optim.lr``."""
    import matplotlib

    matplotlib.use("Agg")
    from lightning.pytorch.tuner import Tuner

    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    if finder is None:
        return None
    suggestion = finder.suggestion()
    out = Path(trainer.log_dir or ".") / "lr_find.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    finder.plot(suggest=True).savefig(out)
    if suggestion:
        module.optim_config.lr = float(suggestion)
    print(f"lr_find: suggested lr {suggestion}; plot {out}")
    return suggestion
