"""The ``faceage`` command: the entry point, its usage text and the table of commands (one module each here).

Each command's module is imported only when that command is chosen, so that ``faceage predict --engine onnx``
starts without PyTorch; ``fit|validate|test`` run the LightningCLI of :mod:`faceage.training.lightning_cli`. Every
command runs under :func:`faceage.cli._common.run_guarded`: SIGINT / SIGTERM stop it within about 2 s with one
``interrupted:`` line (exit status 130 / 143), and no traceback reaches the user.

May import: everything (the top layer); nothing in the library imports it.
"""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: faceage COMMAND [options]

commands:
  fit        train a model (LightningCLI: --config configs/X.yaml, overrides like --model.head.name coral)
  validate   validate a model (LightningCLI; --weights MODEL to load a saved model)
  test       test a model: metrics JSON + plots (LightningCLI; --ckpt_path or --weights)
  predict    ages of the faces in images or folders -> CSV / annotated images
  verify     over-N age checks (pass / refer) under a policy with a measured error rate
  calibrate  fit calibrated age intervals and over-N thresholds on held-out faces (stored in config.json)
  export     write ONNX or TorchScript from a model (--quantize int8 for a faster CPU graph)
  ensemble   average several trained age models into one model
  prepare    detect + align faces once and cache the chips for training
  models     list backbones and heads
  describe   what a dataset (or two, or the splits of one) holds: ages by band, gender, race, sizes -> table + PNG
  compare    which of two faces is older (pair models or the age-difference comparator)
  kfold      fit + test every fold (k-fold / subject-exclusive) and report mean +/- std
  crossdata  train on each dataset, test on every dataset: MAE matrix as JSON, table and heatmap
  tune       hyper-parameter search with Ray Tune (ASHA)
  report     bias and sensitivity report (HTML + markdown)
  explain    Grad-CAM heatmap of the age output
  serve      Gradio web app
  push       upload a saved model to the Hugging Face Hub
run 'faceage COMMAND --help' for a command's options; 'faceage --version' prints the version"""


# command -> module under faceage.cli with a ``main(argv) -> int``, imported only when chosen
COMMANDS = {
    "fit": "faceage.cli.fit", "validate": "faceage.cli.fit", "test": "faceage.cli.fit",
    "predict": "faceage.cli.predict", "verify": "faceage.cli.verify", "calibrate": "faceage.cli.calibrate",
    "export": "faceage.cli.export", "ensemble": "faceage.cli.ensemble", "prepare": "faceage.cli.prepare",
    "models": "faceage.cli.models", "describe": "faceage.cli.describe", "compare": "faceage.cli.compare",
    "kfold": "faceage.cli.kfold", "crossdata": "faceage.cli.crossdata", "tune": "faceage.cli.tune",
    "report": "faceage.cli.report", "explain": "faceage.cli.explain", "serve": "faceage.cli.serve",
    "push": "faceage.cli.push",
}


def main(argv: list[str] | None = None) -> int:
    """The ``faceage`` console script: ``faceage COMMAND [options]``; returns the command's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from faceage._version import __version__

        print(f"faceage {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    from faceage.cli._common import run_guarded

    def run() -> int:
        try:
            return _run(command, rest)
        except ModuleNotFoundError as e:  # an optional package (extra) is not installed: say which to install
            from faceage._extras import missing_extra_message

            message = missing_extra_message(e, command)
            if message is None:
                raise
            print(message, file=sys.stderr)
            return 2

    # Ctrl-C / SIGTERM, errors and the closing of worker pools are handled the same way for every command
    return run_guarded(command, run)


def _run(command: str, rest: list[str]) -> int:
    if command in ("fit", "validate", "test"):  # LightningCLI takes the subcommand itself
        return importlib.import_module(COMMANDS[command]).main([command, *rest])
    if command in COMMANDS:
        return importlib.import_module(COMMANDS[command]).main(rest)
    print(f"faceage: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2

