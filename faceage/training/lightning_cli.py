"""``faceage fit|validate|test``: LightningCLI over :class:`AgeModule` and :class:`AgeDataModule`.

Config files plus command-line overrides (``faceage fit --config configs/coral_resnet34.yaml
--model.head.name corn --trainer.max_epochs 5``); ``--print_config`` shows the resolved config.

A bad config (an unknown key, a value out of bounds, an unknown head name, contradictory options) stops with one
line, ``error: KEY: problem``, and exit status 2; ``--help`` shows the full usage. Checkpoints given as
``--ckpt_path`` (plain, relative, symlinked or ``file://``) are read without unpickling; ``--weights_only false``
alone changes nothing: unpickling needs ``--trust_pickle true`` (or ``FACEAGE_TRUST_PICKLE=1``) and warns.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import lightning as L
from jsonargparse import ArgumentError, lazy_instance
from lightning.pytorch.cli import LightningCLI

from faceage.data.datamodule import AgeDataModule
from faceage.models.config import IMAGE_SIZE_RANGE
from faceage.models.files import TRUST_PICKLE_ENV, CheckpointError, load_checkpoint_file, local_checkpoint_path
from faceage.training.callbacks import SafeCheckpointIO
from faceage.training.module import AgeModule

TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "max_epochs": 20,
    "use_distributed_sampler": False,  # AgeDataModule shards with its own resumable sampler
    "log_every_n_steps": 10,
    "accelerator": "auto",
}


SUBCOMMANDS = ("fit", "validate", "test")


class ConfigError(ValueError):
    """A bad ``fit|validate|test`` config; ``str()`` is the one line shown to the user."""


_NOISE = ("Does not validate against any of", "Subtypes:", "Errors:", "Given value", "- Problem with given class_path",
          "- Expected a <class 'NoneType'>")


def _one_line(message: str, key: str | None = None) -> str:
    """The informative line of a jsonargparse / instantiation error (they span dozens of lines: the union of types
    tried, each one's error, the whole value given), prefixed with the dotted config key it concerns."""
    keys = [key] if key else []
    problem = "invalid value"
    for line in (line.strip() for line in str(message).splitlines()):
        found = re.match(r'Parser key "([^"]+)":?\s*(.*)', line)
        if found:
            keys.append(found.group(1))
            if found.group(2) and not found.group(2).startswith(_NOISE):
                problem = found.group(2)
                break
        elif line and not line.startswith(_NOISE):
            problem = re.sub(r"^- ", "", line).strip('"')
            break
    where = ".".join(keys)
    unknown = re.fullmatch(r"Option '(\w+)' is not accepted", problem)
    if unknown and keys:
        problem += _allowed(keys, unknown.group(1))
    if where and not problem.startswith(where):
        problem = f"{where}: {problem}"
    return problem if len(problem) <= 400 else problem[:397] + "..."


def _allowed(keys: list[str], name: str) -> str:
    """``"; did you mean 'x'?"`` or ``"; allowed: a, b, ..."`` for an unknown option ``name`` under the section
    ``keys`` (``model``, ``model.head``, ``data.split``...), from the constructor signatures of faceage's classes."""
    import difflib
    import inspect
    import typing

    try:
        cls = {"model": AgeModule, "data": AgeDataModule, "trainer": L.Trainer}[keys[0]]
        for key in keys[1:]:
            hint = typing.get_type_hints(cls.__init__)[key]
            cls = next(t for t in (typing.get_args(hint) or (hint,)) if isinstance(t, type) and t is not type(None))
        allowed = [n for n in inspect.signature(cls).parameters if n not in ("self", "args", "kwargs")]
    except Exception:  # noqa: BLE001 - a hint only: the error line stands without it
        return ""
    close = difflib.get_close_matches(name, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"


class FaceAgeCLI(LightningCLI):
    """The LightningCLI of ``faceage fit|validate|test``: one-line config errors, checkpoint hyper-parameters merged
    on resume, and faceage's callbacks and options."""

    def parse_arguments(self, parser, args) -> None:
        """Parses the arguments (a bad one: one-line :class:`ConfigError`), then merges a ``--ckpt_path``
        checkpoint's hyper-parameters into the config (:meth:`_merge_checkpoint_hparams`).

        LightningCLI would merge them itself right after this hook, as untyped ``dict_kwargs`` and with its own
        ``torch.load``; so the checkpoint path is held back from the config until :meth:`before_instantiate_classes`
        puts it back (the trainer then gets it unchanged, and the saved config shows it).
        """
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise ConfigError(_one_line(str(e))) from None
        self._held_ckpt_path = None
        if self.config.get("subcommand"):
            self._merge_checkpoint_hparams()  # may replace self.config
            sub = self.config[self.config.subcommand]
            self._held_ckpt_path, sub["ckpt_path"] = sub.get("ckpt_path"), None

    def add_arguments_to_parser(self, parser) -> None:
        # AgeModule/AgeDataModule by default; a config may name another ``class_path`` (e.g. the pair models)
        parser.set_defaults({"model": lazy_instance(AgeModule), "data": lazy_instance(AgeDataModule)})
        parser.add_argument("--weights", type=str | None, default=None, help="model dir / .safetensors / .ckpt whose weights replace the model's (validate/test)")
        parser.add_argument("--lr_find", type=bool, default=False, help="run Lightning's learning-rate finder before fit, plot it and use its suggestion")
        parser.add_argument("--trust_pickle", type=bool, default=False,
                            help=f"allow unpickling --ckpt_path checkpoints (runs code from the file; only for files you trust; "
                                 f"or {TRUST_PICKLE_ENV}=1). Without it, --weights_only false is ignored")

    def _merge_checkpoint_hparams(self) -> None:
        """Merges a ``--ckpt_path`` checkpoint's hyper-parameters into the config, as ``init_args`` of its module class.

        faceage modules store plain dicts (weights_only-safe), which must be validated back into their dataclasses,
        and the class (age or pair module) is read from the checkpoint; the file is read without unpickling.
        """
        sub = self.config[self.config.subcommand]
        if sub.get("trust_pickle"):
            warnings.warn("--trust_pickle: checkpoints may be unpickled, which runs any code they hold", stacklevel=2)
            os.environ[TRUST_PICKLE_ENV] = "1"  # restored by run_cli
        ckpt_path = sub.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry") or str(ckpt_path).startswith("registry:"):
            return
        local = local_checkpoint_path(ckpt_path)
        if local is None:
            raise ConfigError(f"ckpt_path: {ckpt_path}: only local checkpoint files are supported")
        if not local.is_file():
            raise ConfigError(f"ckpt_path: {ckpt_path}: checkpoint file not found")
        ckpt = load_checkpoint_file(local, map_location="cpu", weights_only=sub.get("weights_only"))
        hparams = dict(ckpt.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        class_path = hparams.pop("_class_path", None) or (
            "faceage.training.pair_module.PairModule" if "pair_model_config" in ckpt else "faceage.training.module.AgeModule"
        )
        model = {"class_path": class_path, "init_args": hparams}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": model}}, self.config)

    def _config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def _load_weights(self) -> None:
        weights = self._config().get("weights")
        if weights:
            from faceage.models.age_model import load_model

            if not isinstance(self.model, AgeModule):
                raise ConfigError("weights: --weights applies to age models (AgeModule) only")
            try:
                self.model.model = load_model(weights)
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f"weights: {e}") from None
            print(f"weights loaded from {weights}")

    def before_instantiate_classes(self) -> None:
        """Puts the held-back ``--ckpt_path`` into the config again (see :meth:`parse_arguments`); bounds the values
        whose violation would otherwise surface as a ZeroDivisionError or a torch traceback."""
        if self.subcommand and getattr(self, "_held_ckpt_path", None) is not None:
            self.config[self.subcommand]["ckpt_path"] = self._held_ckpt_path
        config = self._config()
        data = (config.get("data") or {}).get("init_args") or {}
        for key, low in (("batch_size", 1), ("num_workers", 0)):
            value = data.get(key)
            if value is not None and (not isinstance(value, int) or value < low):
                raise ConfigError(f"data.{key}: must be an integer >= {low}, got {value!r}")
        backbone = ((config.get("model") or {}).get("init_args") or {}).get("backbone") or {}
        size = backbone.get("image_size") if hasattr(backbone, "get") else None
        lo, hi = IMAGE_SIZE_RANGE
        if size is not None and not (isinstance(size, int) and lo <= size <= hi):
            raise ConfigError(f"model.backbone.image_size: must be an integer within {lo}..{hi} (or null: the backbone's), got {size!r}")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, KeyError) as e:
            if isinstance(e, ConfigError):
                raise
            message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
            config = self._config()
            key = next((k for k in ("model", "data") if str((config.get(k) or {}).get("class_path", "?")) in message), None)
            raise ConfigError(_one_line(message, key)) from None

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # whatever the model class: no unpickling
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        if self.subcommand == "fit":
            _continue_run_folder(trainer, self._config().get("ckpt_path"))
        return trainer

    def before_validate(self) -> None:
        self._load_weights()

    def before_test(self) -> None:
        self._load_weights()

    def before_fit(self) -> None:
        if self._config().get("lr_find"):
            from faceage.training.lr_find import run_lr_find

            run_lr_find(self.trainer, self.model, self.datamodule)


def _continue_run_folder(trainer: L.Trainer, ckpt_path) -> None:
    """A fit resumed from ``ROOT/lightning_logs/version_N/checkpoints/*.ckpt`` goes on in ``version_N`` itself.

    Lightning would start ``version_N+1``: its checkpoint callbacks would then live in another folder, so they would
    not restore their best score and best-k files (ModelCheckpoint restores those only for the same folder), and the
    best model after the resume could differ from the uninterrupted run's. Loggers with a version of their own are
    left alone.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    local = local_checkpoint_path(ckpt_path) if ckpt_path else None
    if local is None or local.parent.name != "checkpoints":
        return
    run = local.resolve().parent.parent
    found = re.fullmatch(r"version_(\d+)", run.name)
    if not found:
        return
    for logger in trainer.loggers:
        if isinstance(logger, (TensorBoardLogger, CSVLogger)) and logger._version is None and Path(logger.root_dir).resolve() == run.parent:
            logger._version = int(found.group(1))


def run_cli(args: list[str]) -> None:
    """Runs ``fit|validate|test``; a bad config prints one ``error:`` line and exits with status 2."""
    trust_before = os.environ.get(TRUST_PICKLE_ENV)
    try:
        _run(args)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if trust_before is None:
            os.environ.pop(TRUST_PICKLE_ENV, None)
        else:
            os.environ[TRUST_PICKLE_ENV] = trust_before


def _run(args: list[str]) -> None:
    FaceAgeCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        # from the shell, let LightningCLI read sys.argv itself (passing both makes it warn)
        args=None if list(args) == sys.argv[1:] else args,
        auto_configure_optimizers=False,
        # errors come back as exceptions, shown as one line by run_cli (the full usage stays behind --help)
        parser_kwargs={"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in SUBCOMMANDS}},
    )
