"""``faceage fit|validate|test``: LightningCLI over :class:`AgeModule` and :class:`AgeDataModule`.

Config files plus command-line overrides (``faceage fit --config configs/coral_resnet34.yaml
--model.head.name corn --trainer.max_epochs 5``); ``--print_config`` shows the resolved config. Unknown keys are
rejected by jsonargparse with the key named.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI

from faceage.data.datamodule import AgeDataModule
from faceage.training.module import AgeModule

TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "max_epochs": 20,
    "use_distributed_sampler": False,  # AgeDataModule shards with its own resumable sampler
    "log_every_n_steps": 10,
    "accelerator": "auto",
}


class FaceAgeCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # AgeModule/AgeDataModule by default; a config may name another ``class_path`` (e.g. the pair models)
        parser.set_defaults({"model": lazy_instance(AgeModule), "data": lazy_instance(AgeDataModule)})
        parser.add_argument("--weights", type=str | None, default=None, help="model dir / .safetensors / .ckpt whose weights replace the model's (validate/test)")
        parser.add_argument("--lr_find", type=bool, default=False, help="run Lightning's learning-rate finder before fit, plot it and use its suggestion")

    def _parse_ckpt_path(self) -> None:
        """Merges a ``--ckpt_path`` checkpoint's hyper-parameters into the config, as ``init_args`` of its module class.

        Overrides LightningCLI's version, which passes them as untyped ``dict_kwargs`` unless the module was built by
        LightningCLI itself; faceage modules store plain dicts (weights_only-safe), which must be validated back into
        their dataclasses, and the class (age or pair module) is read from the checkpoint.
        """
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        import torch

        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
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
                raise ValueError("--weights applies to age models (AgeModule) only")
            self.model.model = load_model(weights)
            print(f"weights loaded from {weights}")

    def before_validate(self) -> None:
        self._load_weights()

    def before_test(self) -> None:
        self._load_weights()

    def before_fit(self) -> None:
        if self._config().get("lr_find"):
            from faceage.training.lr_find import run_lr_find

            run_lr_find(self.trainer, self.model, self.datamodule)


def run_cli(args: list[str]) -> None:
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
    )
