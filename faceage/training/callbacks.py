"""Default training callbacks: best checkpoint by val MAE, frequent ``last.ckpt`` for resume, a stop on Ctrl-C /
SIGTERM at the end of a step with ``last.ckpt`` saved there, early stopping, and export of the best weights as a
ready-to-use model directory (safetensors + config.json).

Checkpoints are written and read by :class:`SafeCheckpointIO` (installed by the :class:`UseSafeCheckpointIO`
callback, so every trainer that trains an ``AgeModule`` gets it): atomic writes on any filesystem layout (temp file
in the checkpoint's own directory, fsync, rename; the previous ``last.ckpt`` kept as ``last.prev.ckpt``), and reads
that never unpickle (``weights_only=True``, :func:`faceage.models.files.load_checkpoint_file`) unless the user
trusts the file, with a damaged file named.
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from faceage import _signals
from faceage.models.files import (
    CheckpointError,
    load_checkpoint_file,
    local_checkpoint_path,
    model_from_checkpoint,
    previous_checkpoint,
)

TEMP_MARK = ".tmp-"


def remove_stale_temp_files(directory: Path, name: str | None = None) -> list[Path]:
    """Deletes the temp files a killed save left in ``directory`` (for the checkpoint ``name``, or all)."""
    pattern = f".{name}{TEMP_MARK}*" if name else f".*{TEMP_MARK}*"
    removed = []
    for stale in directory.glob(pattern):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:
            pass
    return removed


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` with atomic local writes and reads that never unpickle (see module docstring).

    A write goes to ``.<name>.tmp-<pid>`` in the target's own directory (so the rename never crosses filesystems,
    whatever ``TMPDIR`` is), is fsynced, and replaces the target with ``os.replace``; an existing ``last*.ckpt`` is
    first kept as ``last.prev.ckpt`` (a hard link where the filesystem has them). A kill at any point leaves either
    the old or the new complete file, plus at most a temp file that the next save removes.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        target = local_checkpoint_path(path)
        if target is None or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target.parent, target.name)
        tmp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            if target.is_file() and target.name.startswith(ModelCheckpoint.CHECKPOINT_NAME_LAST):
                _keep_previous(target)  # last*.ckpt only: a re-saved best-NN.ckpt must not leave a best-NN.prev.ckpt
            os.replace(tmp, target)
            _fsync_directory(target.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None) -> dict[str, Any]:
        if local_checkpoint_path(path) is None:
            raise CheckpointError(f"{path}: only local checkpoint files are supported")
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)


def _keep_previous(target: Path) -> None:
    prev = previous_checkpoint(target)
    tmp = prev.with_name(f".{prev.name}{TEMP_MARK}{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)  # instant, no copy: the old file stays complete under both names
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, prev)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class UseSafeCheckpointIO(L.Callback):
    """Gives the trainer :class:`SafeCheckpointIO` (unless a custom ``CheckpointIO`` plugin was chosen) before any
    checkpoint is read or written: ``setup`` runs before Lightning restores ``ckpt_path``."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = SafeCheckpointIO()


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
            model = model_from_checkpoint(load_checkpoint_file(best, map_location="cpu", weights_only=True), best)
            cb = trainer.checkpoint_callback
            score = float(cb.best_model_score) if cb.best_model_score is not None else None
        out = Path(log_dir) / "model"
        model.save_pretrained(out, extra={"training": {"best_checkpoint": best, "best_val_mae": score, "epochs": trainer.current_epoch}})
        print(f"model saved to {out} (best val MAE {score})")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps *and* at the end of every training epoch, so a killed run loses at most
    N steps (stock ModelCheckpoint saves on steps or on epochs, not both).

    The step save is skipped on an epoch's last batch: that state is from before the epoch's validation, and
    Lightning would then skip the epoch-end save (already saved at this step), leaving a ``last.ckpt`` whose resume
    never validates the epoch nor knows its best checkpoint. The epoch-end save, after validation, holds it instead.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # ModelCheckpoint's own (private) save-last path: no public hook saves last.ckpt both every N steps and at
        # epoch ends, and going through it keeps last_model_path, the "last" link and the callback state consistent
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class StopAtStepEnd(L.Callback):
    """Ctrl-C or SIGTERM during training (:mod:`faceage._signals`) stops the run at the end of the current training
    step, with ``last.ckpt`` saved there, so that ``--ckpt_path last.ckpt`` resumes exactly where it stopped.

    A step that runs past :data:`faceage._signals.HOLD_LIMIT_S`, a stop during validation, the last step of an epoch
    (its state is from before the epoch's validation, see :class:`LastCheckpoint`) and multi-process runs (their
    ranks cannot agree on a step in time) stop at once; ``last.ckpt`` is then the previous save, which resumes
    exactly too. A second signal during the save is ignored; the save is atomic (:class:`SafeCheckpointIO`) anyway.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        _signals.hold()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if _signals.release() is None:
            return
        last = _last_checkpoint(trainer)
        if last is not None and trainer.world_size == 1 and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            last._save_last_checkpoint(trainer, last._monitor_candidates(trainer))  # as LastCheckpoint's own saves
        _signals.stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        while _signals.release() is not None:
            pass
        if _signals.received() is None and not isinstance(exception, KeyboardInterrupt):
            return
        last = _last_checkpoint(trainer)
        path = Path(last.last_model_path) if last is not None and last.last_model_path else None
        if path is None or not path.is_file():
            _signals.set_note(f"training stopped at epoch {trainer.current_epoch}, step {trainer.global_step} before its "
                              "first checkpoint; run it again")
            return
        saved = last._last_global_step_saved  # 0: not saved by this process (a resumed run's first checkpoint)
        _signals.set_note(f"training stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; last checkpoint "
                          f"{path}{f' (step {saved})' if saved else ''}: resume with the same command and --ckpt_path {path}")


def _last_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that saves ``last.ckpt`` (:class:`LastCheckpoint`, else any ``save_last`` checkpoint callback)."""
    found = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.save_last]
    return next((cb for cb in found if isinstance(cb, LastCheckpoint)), found[0] if found else None)


class ResumeLoaderEpoch(L.Callback):
    """Tells a resumable train loader (:class:`faceage.data.datasets.ResumableLoader`) which epoch starts.

    Lightning hands the loader its saved state only when it resumes *inside* an epoch; resumed from a checkpoint
    saved at an epoch end (the usual ``last.ckpt``), it restores nothing, and the loader would replay epoch 0's
    order and augmentations in epoch ``N``: the resumed run then drifts from the uninterrupted one.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if not trainer.fit_loop.restarting and hasattr(loader, "mark_consumed") and hasattr(loader, "load_state_dict"):
            loader.load_state_dict({"epoch": trainer.current_epoch, "batches_done": 0})


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
    """The callbacks every faceage trainer gets: safe checkpoint reads, the best and last checkpoints, the best
    model exported, exact resume, and early stopping on validation MAE after ``patience`` epochs (0: none)."""
    callbacks: list[L.Callback] = [
        UseSafeCheckpointIO(),
        ModelCheckpoint(monitor="val/mae", mode="min", filename="best-{epoch:02d}", auto_insert_metric_name=False, save_top_k=1),
        LastCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=every_n_steps or None),
        StopAtStepEnd(),
        ExportBestModel(),
        ResumeLoaderEpoch(),
        CloseProcessGroupAtExit(),
    ]
    if patience:
        callbacks.append(EarlyStopping(monitor="val/mae", mode="min", patience=patience))
    return callbacks
