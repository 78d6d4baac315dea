"""``PairModule``: trains and evaluates the pairwise comparators of :mod:`faceage.models.pairs` ("who is older?").

Binary cross-entropy on "left is older"; ``acc`` and ``auc`` (ROC AUC) per stage, and at validation/test the
accuracy by age gap (``acc_gap_1_2``, ``acc_gap_3_5``, ``acc_gap_6_10``, ``acc_gap_over_10`` years). The checkpoint
carries ``pair_model_config`` (a plain dict), so it loads with ``torch.load(weights_only=True)``; at the end of
``fit`` the best checkpoint's model is written to ``<log_dir>/model`` (safetensors + config.json).

Use it from a config::

    model:
      class_path: faceage.training.pair_module.PairModule
      init_args: {model: {kind: siamese, backbone: resnet18}, optim: {lr: 0.001}}
    data:
      class_path: faceage.data.pairs.PairDataModule
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from faceage.evaluation.json_io import save_json
from faceage.models.age_model import DEFAULT_ALIGNMENT
from faceage.models.backbones import apply_transfer_mode, freeze_frozen_batchnorm
from faceage.models.pairs import PairModel, create_pair_model
from faceage.training.callbacks import CloseProcessGroupAtExit, UseSafeCheckpointIO
from faceage.training.optim import OptimConfig, configure_optimizers

# (name, smallest gap, largest gap) in years; float ages fall into the band whose rounded limits hold them
GAP_BANDS = (("1_2", 0.0, 2.5), ("3_5", 2.5, 5.5), ("6_10", 5.5, 10.5), ("over_10", 10.5, float("inf")))
MONITOR, MONITOR_MODE = "val/acc", "max"


@dataclass
class PairModelConfig:
    """Which comparator and how it is built.

    Attributes:
        kind: ``siamese``, ``six_channel``, ``age_feature``, ``age_ranking`` (a trained age model fine-tuned on
            pairs), or ``age_difference`` (nothing to train: ``validate``/``test`` only).
        backbone: backbone of ``siamese`` / ``six_channel`` (faceage name or timm model).
        pretrained: start that backbone from pretrained weights.
        transfer: ``scratch``, ``frozen``, ``finetune`` or ``partial`` for that backbone.
        unfreeze_last: blocks trained in ``partial`` mode.
        hidden: MLP hidden layer widths (empty: a single linear layer).
        dropout: MLP dropout (0 disables).
        image_size: input side (default: the backbone's); the age model's own for the age comparators.
        crop: central fraction of the aligned chip fed to the network.
        alignment: how raw photos are aligned into chips.
        age_model: age model directory or checkpoint of ``age_feature`` / ``age_ranking`` / ``age_difference``;
            ``None`` for the bundled model (``faceage/weights/default``, or ``$FACEAGE_MODEL``).
        age_scale: ``age_difference`` without a distribution: years per logit unit.
    """

    kind: str = "siamese"
    backbone: str = "resnet18"
    pretrained: bool = False
    transfer: str = "finetune"
    unfreeze_last: int = 0
    hidden: list[int] = field(default_factory=list)
    dropout: float = 0.0
    image_size: int | None = None
    crop: float = 1.0
    alignment: dict = field(default_factory=lambda: dict(DEFAULT_ALIGNMENT))
    age_model: str | None = None
    age_scale: float = 2.0


def build_pair_model(config: PairModelConfig) -> PairModel:
    """The comparator a :class:`PairModelConfig` describes (transfer mode applied to its backbone)."""
    c = config
    if c.kind in ("siamese", "six_channel"):
        model = create_pair_model(
            c.kind, backbone=c.backbone, pretrained=c.pretrained and c.transfer != "scratch", hidden=c.hidden,
            dropout=c.dropout, image_size=c.image_size, crop=c.crop, alignment=c.alignment,
        )
        apply_transfer_mode(model.backbone, c.transfer, c.unfreeze_last)
        return model
    if c.kind == "age_feature":
        return create_pair_model(c.kind, age_model=c.age_model, hidden=c.hidden, dropout=c.dropout)
    if c.kind == "age_ranking":
        return create_pair_model(c.kind, age_model=c.age_model)
    return create_pair_model(c.kind, age_model=c.age_model, age_scale=c.age_scale)


def gap_band(gaps: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``(band name, mask)`` for every band of :data:`GAP_BANDS` holding at least one of ``gaps``."""
    out = []
    for name, lo, hi in GAP_BANDS:
        mask = (gaps >= lo) & (gaps < hi)
        if mask.any():
            out.append((name, mask))
    return out


class PairModule(L.LightningModule):
    """Trains a comparator: BCE on P(left older), accuracy, ROC AUC and accuracy by age gap.

    Args:
        model: which comparator (see :class:`PairModelConfig`).
        optim: optimizer and schedule (the backbone, or the frozen age model, takes ``backbone_lr``).
        early_stopping_patience: epochs without val accuracy improvement before stopping (0 disables).
        checkpoint_every_n_steps: also save ``last.ckpt`` every N training steps.
    """

    monitor = (MONITOR, MONITOR_MODE)  # read by ``faceage tune``

    def __init__(
        self,
        model: PairModelConfig | None = None,
        optim: OptimConfig | None = None,
        early_stopping_patience: int = 10,
        checkpoint_every_n_steps: int = 100,
    ) -> None:
        super().__init__()
        self.model_config = model or PairModelConfig()
        self.optim_config = optim or OptimConfig()
        self.save_hyperparameters(
            {
                "model": asdict(self.model_config),
                "optim": asdict(self.optim_config),
                "early_stopping_patience": early_stopping_patience,
                "checkpoint_every_n_steps": checkpoint_every_n_steps,
            }
        )
        self.model: PairModel = build_pair_model(self.model_config)
        stages = ("train", "val", "test")
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``: keys are "<stage>_"
        self.acc = torch.nn.ModuleDict({f"{s}_": BinaryAccuracy() for s in stages})
        self.auc = torch.nn.ModuleDict({f"{s}_": BinaryAUROC() for s in ("val", "test")})
        self.gap_acc = torch.nn.ModuleDict({f"{s}_{b[0]}": MeanMetric() for s in ("val", "test") for b in GAP_BANDS})

    @property
    def input_config(self) -> dict:
        return self.model.input_config

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.model(left, right)

    def model_step(self, batch: dict | None, stage: str) -> torch.Tensor | None:
        if batch is None:
            return None
        labels = batch["label"].float()
        logits = self.model(batch["left"], batch["right"])
        loss = self.model.loss(logits, labels)
        n = len(labels)
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=n, sync_dist=sync)
        probs = torch.sigmoid(logits.detach())
        target = labels.long()
        self.acc[f"{stage}_"](probs, target)
        self.log(f"{stage}/acc", self.acc[f"{stage}_"], on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=n)
        if stage == "train":
            return loss
        self.auc[f"{stage}_"].update(probs, target)
        self.log(f"{stage}/auc", self.auc[f"{stage}_"], on_step=False, on_epoch=True, batch_size=n)
        correct = ((probs > 0.5).long() == target).float()
        age_left, age_right = batch["age_left"].float(), batch["age_right"].float()
        known = (age_left >= 0) & (age_right >= 0)  # fixed pair files may hold faces of unknown age (-1)
        gaps = torch.where(known, (age_left - age_right).abs(), torch.full_like(age_left, -1.0))
        for band, mask in gap_band(gaps):
            metric = self.gap_acc[f"{stage}_{band}"]
            metric.update(correct[mask])
            self.log(f"{stage}/acc_gap_{band}", metric, on_step=False, on_epoch=True, batch_size=int(mask.sum()))
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        return self.model_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.model_step(batch, "test")

    def on_test_end(self) -> None:
        """Writes ``<log_dir>/test/test_results.json``: accuracy, ROC AUC and accuracy by age gap on the test pairs."""
        if not self.trainer.is_global_zero:
            return
        metrics = {k.removeprefix("test/"): round(float(v), 4) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        dm = self.trainer.datamodule
        pairs = getattr(dm, "datasets", {}).get("test") if dm is not None else None
        result = {"overall": {k: v for k, v in metrics.items() if not k.startswith("acc_gap_")}, "n_pairs": None if pairs is None else len(pairs),
                  "acc_by_gap": {k.removeprefix("acc_gap_"): v for k, v in metrics.items() if k.startswith("acc_gap_")},
                  "model": self.model.config}
        out = Path(self.trainer.log_dir or ".") / "test"
        out.mkdir(parents=True, exist_ok=True)
        save_json(result, out / "test_results.json")
        print(f"test: {result['n_pairs']} pairs, accuracy {metrics.get('acc', float('nan')):.3f}, AUC {metrics.get('auc', float('nan')):.3f}; "
              f"results: {out / 'test_results.json'}")

    # ---- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return configure_optimizers(self, self.optim_config, self.model, ("backbone.", "age_model."), monitor=MONITOR, mode=MONITOR_MODE)

    def on_train_epoch_start(self) -> None:
        # frozen parts keep their batch-norm statistics (true feature extraction)
        freeze_frozen_batchnorm(self.model)

    # ---- checkpoints --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pair_model_config"] = json.loads(json.dumps(self.model.config))

    def configure_callbacks(self) -> list[L.Callback]:
        return pair_callbacks(self.hparams["early_stopping_patience"], self.hparams["checkpoint_every_n_steps"])


class ExportBestPairModel(L.Callback):
    """At the end of ``fit``, writes the best checkpoint's comparator to ``<log_dir>/model`` (``save_pretrained``),
    the sibling of :class:`faceage.training.callbacks.ExportBestModel` for pair models."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        cb = trainer.checkpoint_callback
        best = cb.best_model_path if cb else ""
        model = pl_module.model
        score = None
        if best and Path(best).exists():
            from faceage.models.pairs import load_pair_model

            model = load_pair_model(best)
            score = float(cb.best_model_score) if cb.best_model_score is not None else None
        out = Path(trainer.log_dir) / "model"
        model.save_pretrained(out, extra={"training": {"best_checkpoint": best, "best_val_acc": score, "epochs": trainer.current_epoch}})
        print(f"pair model saved to {out} (best val accuracy {score})")


def pair_callbacks(patience: int = 10, every_n_steps: int = 100) -> list[L.Callback]:
    """Best checkpoint by val accuracy, frequent ``last.ckpt``, export of the best model, early stopping."""
    callbacks: list[L.Callback] = [
        UseSafeCheckpointIO(),
        ModelCheckpoint(monitor=MONITOR, mode=MONITOR_MODE, filename="best-{epoch:02d}", auto_insert_metric_name=False, save_top_k=1),
        ModelCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=every_n_steps or None),
        ExportBestPairModel(),
        CloseProcessGroupAtExit(),
    ]
    if patience:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode=MONITOR_MODE, patience=patience))
    return callbacks
