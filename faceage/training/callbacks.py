"""Default training callbacks: best checkpoint by val MAE, frequent ``last.ckpt`` for resume, early stopping, and
export of the best weights as a ready-to-use model directory (safetensors + config.json)."""

from __future__ import annotations

import atexit
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint


class ExportBestModel(L.Callback):
    """At the end of ``fit``, writes the best checkpoint's model to ``<log_dir>/model`` with ``save_pretrained``."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every rank must make it
        if not trainer.is_global_zero or log_dir is None:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        model = pl_module.model
        score = None
        if best and Path(best).exists():
            ckpt = torch.load(best, map_location="cpu", weights_only=True)
            prefix = "model."
            model = type(model).from_config(ckpt["model_config"])
            model.load_state_dict({k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
            cb = trainer.checkpoint_callback
            score = float(cb.best_model_score) if cb.best_model_score is not None else None
        out = Path(log_dir) / "model"
        model.save_pretrained(out, extra={"training": {"best_checkpoint": best, "best_val_mae": score, "epochs": trainer.current_epoch}})
        print(f"model saved to {out} (best val MAE {score})")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps *and* at the end of every training epoch, so a killed run loses at most
    N steps (stock ModelCheckpoint saves on steps or on epochs, not both)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class CloseProcessGroupAtExit(L.Callback):
    """Destroys a gloo process group when its process exits.

    Lightning registers that clean-up for NCCL only. A spawned CPU (gloo) worker that exits with its group still
    alive can die in interpreter finalisation ("terminate called without an active exception", SIGABRT), which
    fails a run that has already finished and saved.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
            atexit.unregister(_destroy_process_group)  # once per process, however many stages ran
            atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def default_callbacks(patience: int = 10, every_n_steps: int = 100) -> list[L.Callback]:
    callbacks: list[L.Callback] = [
        ModelCheckpoint(monitor="val/mae", mode="min", filename="best-{epoch:02d}", auto_insert_metric_name=False, save_top_k=1),
        LastCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=every_n_steps or None),
        ExportBestModel(),
        CloseProcessGroupAtExit(),
    ]
    if patience:
        callbacks.append(EarlyStopping(monitor="val/mae", mode="min", patience=patience))
    return callbacks
