"""Optimizer and learning-rate schedule from an :class:`OptimConfig`, for any LightningModule.

The same logic as ``AgeModule.configure_optimizers`` / ``AgeModule._scheduler``, with the parameter groups and the
plateau monitor passed in, so modules with other models and metrics (the pair comparators) share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import lightning as L
import torch
from torch import nn


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``adam``, ``adamw`` or ``sgd``.
        lr: head learning rate (and backbone's unless ``backbone_lr`` is set).
        backbone_lr: separate backbone learning rate.
        weight_decay: decoupled (AdamW) or L2 weight decay.
        momentum: SGD momentum.
        scheduler: ``none``, ``cosine``, ``cosine_restarts``, ``cyclic``, ``step``, ``plateau``, ``onecycle``.
        warmup_epochs: linear warm-up before ``cosine``.
        step_size: epochs per decay for ``step``; restart period for ``cosine_restarts``.
        gamma: decay factor for ``step`` / ``plateau``.
        min_lr: floor of the cosine schedules.
        l2_sp: decay of the backbone toward its pretrained start instead of toward zero (L2-SP, Li et al. 2018), in
            AdamW's decoupled form: after each step every backbone weight moves ``lr x l2_sp`` of the way back to its
            start; the backbone then has no ``weight_decay``. 0 disables.
    """

    name: str = "adamw"
    lr: float = 1e-3
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 1e-6
    l2_sp: float = 0.0


def split_parameters(model: nn.Module, backbone_prefixes: Iterable[str] = ("backbone.",)) -> tuple[list, list]:
    """Trainable parameters as ``(head, backbone)``; a parameter is backbone when its name starts with a prefix."""
    prefixes = tuple(backbone_prefixes)
    head, backbone = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith(prefixes) else head).append(p)
    return head, backbone


def build_optimizer(config: OptimConfig, head_params: list, backbone_params: list) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD with the head at ``lr`` and the backbone at ``backbone_lr`` (default ``lr``).

    Raises:
        ValueError: for an unknown optimizer name or no trainable parameter at all.
    """
    groups = [{"params": head_params, "lr": config.lr}] if head_params else []
    if config.l2_sp < 0:
        raise ValueError(f"optim.l2_sp must be >= 0, got {config.l2_sp}")
    if backbone_params:
        backbone_lr = config.backbone_lr if config.backbone_lr is not None else config.lr
        # under L2-SP the backbone decays toward its start (StartAnchor), not toward zero
        groups.append({"params": backbone_params, "lr": backbone_lr, "l2_sp": config.l2_sp,
                       **({"weight_decay": 0.0} if config.l2_sp else {})})
    if not groups:
        raise ValueError("nothing to optimise: the model has no trainable parameter")
    if config.name == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    raise ValueError(f"optim.name must be adam, adamw or sgd, got {config.name!r}")


class StartAnchor:
    """L2-SP's pull toward the starting weights, applied after each optimizer step to the parameter groups that carry
    an ``l2_sp`` coefficient: ``p <- p - lr * l2_sp * (p - p_start)``, the decoupled form AdamW uses for weight decay
    (torch's optimizers decay toward zero only, hence this hook). The start is copied when the anchor is made."""

    def __init__(self, params) -> None:
        self.start = {id(p): p.detach().clone() for p in params}

    @torch.no_grad()
    def pull(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            rate = group["lr"] * group.get("l2_sp", 0.0)
            if not rate:
                continue
            for p in group["params"]:
                start = self.start.get(id(p))
                if start is None or p.grad is None:  # not anchored, or frozen this step
                    continue
                if start.device != p.device:
                    start = self.start[id(p)] = start.to(p.device)
                p.sub_(p - start, alpha=rate)


def _step_schedule(sched) -> dict:
    return {"scheduler": sched, "interval": "step"}


def build_scheduler(
    config: OptimConfig, opt: torch.optim.Optimizer, trainer: L.Trainer | None, monitor: str = "val/mae", mode: str = "min",
    steps_per_epoch: int | None = None,
):
    """Wraps ``opt`` with the configured schedule, in the form ``configure_optimizers`` returns.

    Args:
        config: optimizer settings (``scheduler``, ``warmup_epochs``, ...).
        opt: the optimizer.
        trainer: the attached trainer (epochs and steps per epoch); ``None`` assumes one epoch of one step.
        monitor: metric watched by the ``plateau`` schedule.
        mode: ``min`` or ``max`` for ``monitor``.
        steps_per_epoch: optimizer steps per epoch; default ``trainer.estimated_stepping_batches / max_epochs``
            (AgeModule passes its own count: estimating builds the train loader before a resumed checkpoint's loader
            state is known, and Lightning then never hands that state to the loader).
    """
    o = config
    max_epochs = max(1, trainer.max_epochs or 1) if trainer is not None else 1
    if steps_per_epoch is None:
        steps_per_epoch = max(1, trainer.estimated_stepping_batches // max_epochs) if trainer is not None else 1
    base = [g["lr"] for g in opt.param_groups]
    if o.scheduler == "none":
        return opt
    if o.scheduler == "cosine":
        warm = o.warmup_epochs * steps_per_epoch
        total = max_epochs * steps_per_epoch

        def factor(step: int, base_lr: float) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            floor = o.min_lr / base_lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s, b=b: factor(s, b) for b in base])
        return {"optimizer": opt, "lr_scheduler": _step_schedule(sched)}
    if o.scheduler == "cosine_restarts":
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=o.step_size * steps_per_epoch, eta_min=o.min_lr)
        return {"optimizer": opt, "lr_scheduler": _step_schedule(sched)}
    if o.scheduler == "cyclic":
        sched = torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=[b / 10 for b in base],
            max_lr=base,
            step_size_up=max(1, steps_per_epoch * o.step_size // 2),
            cycle_momentum=o.name == "sgd",
        )
        return {"optimizer": opt, "lr_scheduler": _step_schedule(sched)}
    if o.scheduler == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=base, total_steps=max_epochs * steps_per_epoch)
        return {"optimizer": opt, "lr_scheduler": _step_schedule(sched)}
    if o.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
    if o.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=o.gamma, patience=2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"}}
    raise ValueError(f"optim.scheduler must be none, cosine, cosine_restarts, cyclic, onecycle, step or plateau, got {o.scheduler!r}")


def configure_optimizers(
    module: L.LightningModule,
    config: OptimConfig,
    model: nn.Module,
    backbone_prefixes: Iterable[str] = ("backbone.",),
    monitor: str = "val/mae",
    mode: str = "min",
    steps_per_epoch: int | None = None,
):
    """``configure_optimizers`` body: parameter groups of ``model``, optimizer, schedule (see :func:`build_scheduler`)."""
    head, backbone = split_parameters(model, backbone_prefixes)
    opt = build_optimizer(config, head, backbone)
    return build_scheduler(config, opt, module._trainer, monitor=monitor, mode=mode, steps_per_epoch=steps_per_epoch)
