"""``faceage fit|validate|test``: LightningCLI over :class:`AgeModule` and :class:`AgeDataModule`.

Config files plus command-line overrides (``faceage fit --config configs/coral_resnet34.yaml
--model.head.name corn --trainer.max_epochs 5``); ``--print_config`` shows the resolved config. Unknown keys are
rejected by jsonargparse with the key named.
"""

from __future__ import annotations

import sys

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
