"""``AgeModule``: the LightningModule that trains and evaluates an :class:`AgeModel`.

One ``model_step`` serves train/val/test; metrics are logged with a stage prefix (``train/loss``, ``val/mae``,
``val/cs5``). The checkpoint carries ``model_config`` (a plain dict) so it can be loaded safely with
``torch.load(weights_only=True)`` and turned back into an ``AgeModel`` with its preprocessing.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import lightning as L
import torch
from torchmetrics import MeanAbsoluteError, MeanMetric

from faceage.models.age_model import DEFAULT_ALIGNMENT, AgeModel
from faceage.models.ages import reported_age
from faceage.models.backbones import freeze_frozen_batchnorm
from faceage.models.config import AgeModelConfig
from faceage.models.heads.base import GROUPS_REFUSED
from faceage.training.distill import Teacher, soft_target_loss
from faceage.training.feature_store import StoredFeatures
from faceage.training.optim import OptimConfig, StartAnchor, configure_optimizers

# the pretrained networks: trained at optim.backbone_lr, anchored by L2-SP, frozen while a linear probe trains
PRETRAINED_PARTS = ("backbone.", "gender_net.")


@dataclass
class BackboneConfig:
    """Backbone choice and transfer learning.

    Attributes:
        name: faceage backbone (``resnet18``, ``cydral_resnet10``, ...) or any timm model name.
        pretrained: start from pretrained weights (timm/torchvision hub weights, or the bundled Cydral net).
        transfer: ``scratch``, ``frozen`` (feature extraction), ``finetune`` or ``partial`` (last N blocks).
        unfreeze_last: blocks trained in ``partial`` mode.
        image_size: input side (default: the backbone's).
        crop: central fraction of the aligned chip fed to the network.
        dropout: dropout before the heads.
        alignment: how raw photos are aligned into chips like the training chips.
        probe_epochs: linear probe, then fine-tune (LP-FT, Kumar et al. 2022): the first N epochs train the heads
            alone, the pretrained networks frozen with their batch-norm statistics; then ``transfer`` applies.
        feature_store: with ``transfer`` ``frozen`` or ``partial``, compute the frozen layers once per face and view,
            store them on disk and train the rest on the stored activations (:mod:`faceage.training.feature_store`).
        feature_views: stored views per training face (view 0 unaugmented, the others augmented by ``data.augment``).
        feature_dir: stores' folder (default ``$FACEAGE_CACHE/features`` or ``~/.cache/faceage/features``).
    """

    name: str = "resnet18"
    pretrained: bool = False
    transfer: str = "finetune"
    unfreeze_last: int = 0
    image_size: int | None = None
    crop: float = 1.0
    dropout: float = 0.0
    alignment: dict = field(default_factory=lambda: dict(DEFAULT_ALIGNMENT))
    probe_epochs: int = 0
    feature_store: bool = False
    feature_views: int = 4
    feature_dir: str | None = None


@dataclass
class HeadConfig:
    """Age head: ``name`` in ``l1, mse, ce, dldl, mean_variance, coral, corn``; ``kwargs`` its own options;
    ``init`` ``random``, or ``backbone`` to start from the pretrained backbone's own age classifier
    (``cydral_resnet10`` with a softmax head: see :func:`faceage.models.cydral.init_head_from_cydral`)."""

    name: str = "dldl"
    min_age: int = 0
    max_age: int = 110
    kwargs: dict = field(default_factory=dict)
    init: str = "random"


class AgeModule(L.LightningModule):
    """Trains backbone + age head (+ gender head when ``gender``).

    Args:
        backbone: backbone and transfer-learning settings.
        head: age head settings.
        optim: optimizer and schedule.
        gender: add a gender head (multitask); missing gender labels are masked out of its loss.
        gender_weight: weight of the gender loss.
        race: add a race head (5 UTKFace classes); missing race labels are masked out of its loss.
        race_weight: weight of the race loss.
        gender_net: ``cydral`` gives gender its own pretrained network (dlib's Cydral gender classifier, fine-tuned at
            ``optim.backbone_lr``) instead of a linear head on the shared features.
        early_stopping_patience: epochs without val MAE improvement before stopping (0 disables).
        checkpoint_every_n_steps: also save ``last.ckpt`` every N training steps, so a killed run loses little.
        tta_flip: average predictions over the image and its mirror at validation/test time.
        round_ages: report whole-year ages, in validation/test metrics and in the saved model (labels in whole
            years; see :func:`faceage.models.ages.reported_age`).
        teacher: knowledge distillation: saved model directories (ensembles too) whose averaged predictions the model
            also fits during training (see :mod:`faceage.training.distill`); not part of the saved model.
        teacher_weight: share of the teacher's soft targets in the training loss (the labels keep the rest).
        teacher_flip: average each teacher over the mirrored batch as well.
        init_from: start from a trained faceage model folder (``default``: the bundled model) instead of the
            backbone's pretrained weights: pretraining on other datasets (:func:`faceage.models.pretrained.start_from`).
            Teacher ``start`` and ``optim.l2_sp`` then anchor to it.
    """

    def __init__(
        self,
        backbone: BackboneConfig | None = None,
        head: HeadConfig | None = None,
        optim: OptimConfig | None = None,
        gender: bool = False,
        gender_weight: float = 0.5,
        early_stopping_patience: int = 10,
        checkpoint_every_n_steps: int = 100,
        tta_flip: bool = False,
        race: bool = False,
        race_weight: float = 0.5,
        gender_net: str | None = None,
        round_ages: bool = False,
        teacher: list[str] | None = None,
        teacher_weight: float = 0.5,
        teacher_flip: bool = True,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone_config = backbone or BackboneConfig()
        self.head_config = head or HeadConfig()
        self.optim_config = optim or OptimConfig()
        # plain dicts only: checkpoints stay loadable with torch.load(weights_only=True)
        hparams = plain_hparams(locals())  # every argument, by its name in the signature
        hparams.update(backbone=asdict(self.backbone_config), head=asdict(self.head_config), optim=asdict(self.optim_config), teacher=hparams["teacher"] or None)
        self.save_hyperparameters(hparams)
        b, h = self.backbone_config, self.head_config
        # the recipe's keys (this signature, which LightningCLI reads) become the saved model's one typed config
        config = AgeModelConfig.from_kwargs(
            backbone=b.name, head=h.name, head_kwargs=h.kwargs, min_age=h.min_age, max_age=h.max_age,
            image_size=b.image_size, crop=b.crop, alignment=b.alignment, dropout=b.dropout,
            gender=gender, gender_net=gender_net, race=race, tta_flip=tta_flip, round_ages=round_ages,
        )
        self.model = AgeModel(config, pretrained=b.pretrained and b.transfer != "scratch")
        self.model.set_transfer(b.transfer, b.unfreeze_last)
        from faceage.models.lineage import start_lineage

        # what the start has seen (init_from replaces it with its source's); the fit adds its datasets (on_fit_start)
        self.model.config["lineage"] = start_lineage(b.name, b.pretrained and b.transfer != "scratch", gender_net)
        if h.init == "backbone":
            if b.name != "cydral_resnet10" or not b.pretrained:
                raise ValueError(f"head.init 'backbone' needs a pretrained backbone with its own age classifier (cydral_resnet10), not {b.name!r}")
            from faceage.models.cydral import init_head_from_cydral

            init_head_from_cydral(self.model.head)
        elif h.init != "random":
            raise ValueError(f"head.init must be 'random' or 'backbone', got {h.init!r}")
        if init_from:
            from faceage.models.pretrained import start_from

            try:
                kept = start_from(self.model, init_from)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"model.init_from: {e} (testing a checkpoint needs no start: --model.init_from null)") from None
            if kept:
                print(f"model.init_from {init_from}: {len(kept)} tensors it lacks keep their own start ({', '.join(kept[:4])}"
                      f"{', ...' if len(kept) > 4 else ''})")
        if b.probe_epochs < 0:
            raise ValueError(f"backbone.probe_epochs must be >= 0, got {b.probe_epochs}")
        # frozen layers computed once and stored; kept out of the module tree (it shares the backbone's weights)
        self._store = [StoredFeatures(self.model, b.transfer, b.unfreeze_last, b.feature_views, b.feature_dir,
                                      teacher=bool(teacher), probe_epochs=b.probe_epochs)] if b.feature_store else []
        # L2-SP's anchor: the pretrained weights as built, before any checkpoint is loaded; outside the module tree
        self._anchor = [StartAnchor(p for n, p in self.model.named_parameters() if n.startswith(PRETRAINED_PARTS))] if self.optim_config.l2_sp else []
        self.gender_weight = gender_weight
        self.race_weight = race_weight
        self.tta_flip = tta_flip
        if not 0.0 <= teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be within [0, 1], got {teacher_weight}")
        self.teacher_weight = teacher_weight
        self.teacher_sources, self.teacher_flip = list(teacher or []), teacher_flip
        # the student before training, for teacher "start" (learning without forgetting); outside the module tree
        self._start = [copy.deepcopy(self.model).eval().requires_grad_(False)] if "start" in self.teacher_sources else []
        # kept out of the module tree (a one-item list): the teacher is neither trained, nor saved, nor checkpointed;
        # it is loaded when training starts, so validate/test of a distilled checkpoint never need the teacher files
        self._teacher: list[Teacher] = []
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``: keys are "<stage>_"
        self.mae = torch.nn.ModuleDict({f"{s}_": MeanAbsoluteError() for s in ("train", "val", "test")})
        self.cs5 = torch.nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        self.gender_acc = torch.nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        self.race_acc = torch.nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        # faces labelled with an age group: share predicted inside the group, mean years outside it
        self.group_inside = torch.nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        self.group_outside = torch.nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        self._seen = {"exact": False, "grouped": False}
        self._test_outputs: list[dict] = []

    # ---- steps --------------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(images)

    def predict_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded predictions, averaged with the mirrored image when ``tta_flip``."""
        return self.model.predict(images, flip=self.tta_flip)

    def model_step(self, batch: dict, stage: str) -> torch.Tensor | None:
        if batch is None:
            return None
        ages = batch["age"].float()
        # age-group bounds; an exact age is its own one-year group
        lows, highs = batch.get("age_low", ages).float(), batch.get("age_high", ages).float()
        out = self._store[0].forward(self.model, batch["features"]) if "features" in batch else self.model(batch["image"])
        terms = self.model.loss(out, ages, batch["gender"], self.gender_weight, batch["race"], self.race_weight, lows, highs)
        if stage == "train" and self.teacher_sources:
            terms = self._distill(batch["image"], out, terms)
        n = len(ages)
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, on_step=stage == "train", on_epoch=True, prog_bar=name == "loss", batch_size=n, sync_dist=stage != "train")
        exact = highs <= lows
        n_exact = int(exact.sum())
        if stage == "train":
            if n_exact:  # the MAE of exact ages only: a grouped face's age is only its group's representative
                self.mae["train_"](self.model.head.predict(out["age_logits"].detach())[exact], ages[exact])
                self.log("train/mae", self.mae["train_"], on_step=False, on_epoch=True, batch_size=n_exact)
            return terms["loss"]
        pred = self.predict_batch(batch["image"]) if self.tta_flip else self.model.decode(out)
        pred["age"] = reported_age(pred["age"], self.model.config["round_ages"])
        if n_exact:
            self._log_exact_ages(stage, batch, pred["age"][exact], ages[exact], exact)
        if n_exact < n:
            self._log_age_groups(stage, pred["age"][~exact], lows[~exact], highs[~exact])
        if "gender_prob" in pred:
            known = batch["gender"] >= 0
            if known.any():
                self.gender_acc[f"{stage}_"].update(((pred["gender_prob"][known] > 0.5).long() == batch["gender"][known]).float())
                self.log(f"{stage}/gender_acc", self.gender_acc[f"{stage}_"], on_epoch=True, batch_size=int(known.sum()))
        if "race_probs" in pred:
            known = batch["race"] >= 0
            if known.any():
                self.race_acc[f"{stage}_"].update((pred["race_probs"][known].argmax(dim=1) == batch["race"][known]).float())
                self.log(f"{stage}/race_acc", self.race_acc[f"{stage}_"], on_epoch=True, batch_size=int(known.sum()))
        if stage == "test":
            row = {"index": batch["index"], "age": ages, "pred": pred["age"], "gender": batch["gender"], "race": batch["race"],
                   "age_low": lows, "age_high": highs}
            if "gender_prob" in pred:
                row["gender_prob"] = pred["gender_prob"]
            if "race_probs" in pred:
                row["race_pred"] = pred["race_probs"].argmax(dim=1)
            if "distribution" in pred:
                row["interval"] = distribution_interval(pred["distribution"], self.model.head.age_values)
                row["distribution"] = pred["distribution"]  # for the age-assurance figures (calibrated intervals, P(age >= N))
            self._test_outputs.append({k: v.detach().cpu() for k, v in row.items()})
        return terms["loss"]

    def _log_exact_ages(self, stage: str, batch: dict, pred: torch.Tensor, ages: torch.Tensor, exact: torch.Tensor) -> None:
        """MAE and CS@5 of the exact-age faces of a validation/test batch."""
        err = (pred - ages).abs()
        self.mae[f"{stage}_"](pred, ages)
        self.cs5[f"{stage}_"].update((err <= 5).float())
        several = len(self._sources()) > 1 and "source" in batch
        if several:
            self._add_source_errors(batch["source"][exact], err)
        # with several datasets, {stage}/mae is the mean of their MAEs (logged at epoch end); this is all faces pooled
        n = len(ages)
        self.log(f"{stage}/mae_pooled" if several else f"{stage}/mae", self.mae[f"{stage}_"], on_epoch=True, prog_bar=not several, batch_size=n)
        self.log(f"{stage}/cs5", self.cs5[f"{stage}_"], on_epoch=True, batch_size=n)
        self._seen["exact"] = True

    def _log_age_groups(self, stage: str, pred: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> None:
        """``{stage}/group_inside`` and ``{stage}/group_years_outside`` of the faces labelled with age groups (see
        :func:`faceage.evaluation.age_groups.group_metrics`)."""
        from faceage.evaluation.age_groups import inside_group, signed_years_outside

        inside = inside_group(pred, lows, highs)
        self.group_inside[f"{stage}_"].update(inside.float())
        self.group_outside[f"{stage}_"].update(signed_years_outside(pred, lows, highs).abs())
        n = len(pred)
        self.log(f"{stage}/group_inside", self.group_inside[f"{stage}_"], on_epoch=True, batch_size=n)
        self.log(f"{stage}/group_years_outside", self.group_outside[f"{stage}_"], on_epoch=True, batch_size=n)
        self._seen["grouped"] = True

    def _log_groups_as_mae(self, stage: str) -> None:
        """When every face of the epoch carried an age group, ``{stage}/mae`` (what checkpoints and early stopping
        follow) is their mean years outside the group: there is no exact age to take an MAE of."""
        if self._seen["grouped"] and not self._seen["exact"]:
            self.log(f"{stage}/mae", self.group_outside[f"{stage}_"].compute(), prog_bar=True)
        self._seen = {"exact": False, "grouped": False}

    # ---- per-dataset validation (multi-dataset recipes) ----------------------------------------------------------
    def _sources(self) -> list[str]:
        data = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return list(getattr(data, "sources", None) or [])

    def _add_source_errors(self, source: torch.Tensor, err: torch.Tensor) -> None:
        k = len(self._sources())
        if getattr(self, "_source_sums", None) is None or len(self._source_sums) != k:
            self._source_sums = torch.zeros(k, dtype=torch.float64, device=err.device)
            self._source_counts = torch.zeros(k, dtype=torch.float64, device=err.device)
        known = source >= 0
        self._source_sums.index_add_(0, source[known], err[known].double())
        self._source_counts.index_add_(0, source[known], torch.ones_like(err[known], dtype=torch.float64))

    def _log_source_maes(self, stage: str) -> None:
        """Logs ``{stage}/mae_<dataset>`` per dataset and their mean as ``{stage}/mae`` (what checkpoints and early
        stopping follow), so a large dataset cannot hide a worse score on a small one."""
        sums, counts = getattr(self, "_source_sums", None), getattr(self, "_source_counts", None)
        self._source_sums = self._source_counts = None
        if sums is None:
            return
        if self.trainer.world_size > 1:
            sums, counts = self.trainer.strategy.reduce(sums, reduce_op="sum"), self.trainer.strategy.reduce(counts, reduce_op="sum")
        maes = []
        for label, total, count in zip(self._sources(), sums.tolist(), counts.tolist()):
            if count:
                maes.append(total / count)
                self.log(f"{stage}/mae_{label}", maes[-1])
        if maes:
            self.log(f"{stage}/mae", sum(maes) / len(maes), prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self._source_sums = self._source_counts = None
        self._seen = {"exact": False, "grouped": False}

    def on_validation_epoch_end(self) -> None:
        self._log_source_maes("val")
        self._log_groups_as_mae("val")

    def on_fit_start(self) -> None:
        self.teacher()  # a missing or incompatible teacher fails before the first step
        data = getattr(self.trainer, "datamodule", None)
        grouped = hasattr(data, "training_records") and any(r.is_grouped for r in data.training_records())
        if grouped and not self.model.head.supports_groups:  # before the first step, not at the first grouped batch
            raise ValueError(GROUPS_REFUSED.format(head=self.head_config.name))
        if data is not None:
            from faceage.models.lineage import add_fit

            self.model.config["lineage"] = add_fit(self.model.config.get("lineage", []), fit_datasets(data))
        if self.trainer.is_global_zero:
            describe_fit_data(self, getattr(self.trainer, "datamodule", None))
        if self._store and data is not None:
            if self.trainer.fast_dev_run:  # a check of the recipe's wiring on a batch or two: filling would run every face
                print("model.backbone.feature_store: off for fast_dev_run (the frozen layers run live)")
            else:
                self._store[0].attach(self.trainer, data, live_validation=self.tta_flip)

    def teacher(self) -> Teacher | None:
        """The distillation teacher (loaded on first use), or ``None`` without one."""
        if self.teacher_sources and not self._teacher:
            self._teacher.append(Teacher(self.teacher_sources, self.model.config, flip=self.teacher_flip, start=self._start[0] if self._start else None))
        return self._teacher[0] if self._teacher else None

    def _distill(self, images: torch.Tensor, out: dict, terms: dict) -> dict:
        teacher = self.teacher().to(images.device)
        soft = soft_target_loss(self.model, out, teacher(images), self.gender_weight, self.race_weight)
        w = self.teacher_weight
        return {**terms, **soft, "loss": (1 - w) * terms["loss"] + w * soft["soft_loss"]}

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        loader = self.trainer.train_dataloader
        if hasattr(loader, "mark_consumed"):  # exact resume: see ResumableLoader
            loader.mark_consumed(batch_idx + 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        return self.model_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.model_step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []
        self._source_sums = self._source_counts = None
        self._seen = {"exact": False, "grouped": False}

    def on_test_epoch_end(self) -> None:
        self._log_source_maes("test")
        self._seen = {"exact": False, "grouped": False}
        if not self._test_outputs:
            return
        rows = {k: torch.cat([o[k] for o in self._test_outputs]) for k in self._test_outputs[0]}
        if self.trainer.world_size > 1:
            rows = {k: self.all_gather(v.to(self.device)).flatten(0, 1).cpu() for k, v in rows.items()}
        log_dir = self.trainer.log_dir  # collective under DDP: all ranks call it
        if self.trainer.is_global_zero:
            from faceage.training.reporting import write_test_report

            write_test_report(self, rows, log_dir)

    # ---- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        max_epochs = max(1, self.trainer.max_epochs or 1) if self._trainer is not None else 1
        # a pretrained gender network fine-tunes like the backbone
        return configure_optimizers(self, self.optim_config, self.model, backbone_prefixes=PRETRAINED_PARTS, steps_per_epoch=self._steps_per_epoch(max_epochs))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._anchor:
            self._anchor[0].pull(optimizer)

    def _steps_per_epoch(self, max_epochs: int) -> int:
        if self._trainer is None:
            return 1
        data = getattr(self.trainer, "datamodule", None)
        train = getattr(data, "datasets", {}).get("train") if data is not None else None
        if train is not None:
            # from the dataset, not trainer.estimated_stepping_batches: that builds the train loader before a resumed
            # checkpoint's loader state is known, and Lightning then never hands the state to the loader
            per_rank = math.ceil(len(train) / self.trainer.world_size)
            batches = math.ceil(per_rank / data.batch_size)
            if isinstance(self.trainer.limit_train_batches, int):
                batches = min(batches, self.trainer.limit_train_batches)
            return max(1, batches // self.trainer.accumulate_grad_batches)
        return max(1, self.trainer.estimated_stepping_batches // max_epochs)

    def on_train_epoch_start(self) -> None:
        b = self.backbone_config
        if b.probe_epochs:  # set every epoch, so a resumed run is in the right phase
            probing = self.current_epoch < b.probe_epochs
            self.model.set_transfer("frozen" if probing else b.transfer, b.unfreeze_last)
            if self.model.gender_net is not None:
                self.model.gender_net.requires_grad_(not probing)
            self.model.train()  # Lightning restores the eval mode a probe epoch left in the batch-norm layers
        if b.transfer in ("frozen", "partial") or b.probe_epochs:
            freeze_frozen_batchnorm(self.model)  # frozen parts keep their batch-norm statistics (feature extraction)

    # ---- checkpoints --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["model_config"] = json.loads(json.dumps(self.model.config))

    def configure_callbacks(self):
        from faceage.training.callbacks import default_callbacks

        return default_callbacks(self.hparams["early_stopping_patience"], self.hparams["checkpoint_every_n_steps"])


def plain_hparams(args: dict) -> dict:
    """A LightningModule's ``__init__`` arguments (its ``locals()``) as plain values for ``save_hyperparameters``:
    dataclass configs as dicts, sequences as lists, so the checkpoint loads with ``weights_only=True``."""
    def plain(value):
        if is_dataclass(value):
            return asdict(value)
        return list(value) if isinstance(value, (list, tuple)) else value

    return {k: plain(v) for k, v in args.items() if k not in ("self", "__class__")}


def fit_datasets(data) -> list[str]:
    """The names of the datasets a fit trains on, for the model's lineage: each ``data.datasets`` entry's label, or
    the one dataset's reader name (its folder's name for ``auto`` and ``csv``)."""
    specs = getattr(data, "specs", None)
    if specs:
        return [s.label or s.name for s in specs]
    name, root = getattr(data, "dataset", None), getattr(data, "root", None)
    if name in (None, "auto", "csv") and root:
        return [Path(str(root)).name]
    return [str(name or "unknown")]


def describe_fit_data(module: AgeModule, data) -> None:
    """Prints what each split holds (ages by band, gender, race) and warns when a head has no labels to learn."""
    if data is None or not hasattr(data, "subset") or not getattr(data, "splits", None):
        return
    import sys

    from faceage.evaluation.describe import describe_records, format_side_by_side

    parts = {name: data.subset(name) for name in ("train", "val", "test") if data.splits.get(name)}
    print(format_side_by_side({name: describe_records(recs, sizes=False) for name, recs in parts.items()}))
    train = data.training_records()
    for head in ("gender", "race"):
        if module.hparams.get(head) and not any(getattr(r, head) is not None for r in train):
            print(f"warning: model.{head} is on but no training face has a {head} label: the {head} head trains on nothing "
                  f"(set --model.{head} false)", file=sys.stderr)


def distribution_interval(dist: torch.Tensor, ages: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """Central ``level`` interval of each row's age distribution: ``(B, K)`` -> ``(B, 2)`` ages (low, high)."""
    cdf = dist.cumsum(dim=1)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    lo = (cdf < lo_q).sum(dim=1).clamp(max=len(ages) - 1)
    hi = (cdf < hi_q).sum(dim=1).clamp(max=len(ages) - 1)
    return torch.stack([ages[lo], ages[hi]], dim=1)
