"""Config errors are one line naming the key and what is allowed, with exit status 2 (the full usage stays behind
``--help``): a YAML key typo, an unknown head, contradictory options, out-of-bounds batch and image sizes."""

from __future__ import annotations

import pytest

from faceage.cli import main

BASE = ["--model.backbone.name", "resnet18", "--model.backbone.image_size", "32", "--data.num_workers", "0", "--trainer.max_epochs", "1"]

CASES = {  # end to end: a config-file key, a command-line key, an instantiation error, a bound
    "yaml typo": ("model:\n  early_stoping_patience: 3\n", [],
                  "error: model: Option 'early_stoping_patience' is not accepted; did you mean 'early_stopping_patience'?"),
    "nested typo": (None, ["--model.head.nmae", "coral"], "error: model.head: Option 'nmae' is not accepted; did you mean 'name'?"),
    "unknown head": (None, ["--model.head.name", "coarl"],
                     "error: model: unknown head 'coarl'; choose one of: ce, coral, corn, dldl, l1, mean_variance, mse"),
    "zero batch": (None, ["--data.batch_size", "0"], "error: data.batch_size: must be an integer >= 1, got 0"),
}

# jsonargparse's messages as it raises them (abridged only in the long "Given value" lines), and the line shown
RAW = {
    "gender net": ("Does not validate against any of the Union subtypes\nSubtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, "
                   "<class 'NoneType'>]\nErrors:\n  - gender_net needs gender: true\n  - Expected a <class 'NoneType'>\n"
                   "Given value type: <class 'jsonargparse._namespace.Namespace'>\nGiven value: Namespace(...)", "model",
                   "model: gender_net needs gender: true"),
    "not a number": ('Parser key "data":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n  Errors:\n'
                     "    - Problem with given class_path 'faceage.data.datamodule.AgeDataModule':\n"
                     '        Parser key "batch_size":\n          Expected a <class \'int\'>. Got value: x\n'
                     "    - Expected a <class 'NoneType'>\n  Given value type: <class 'jsonargparse._util.NestedArg'>", None,
                     "data.batch_size: Expected a <class 'int'>. Got value: x"),
    "missing file": ('Parser key "config": File does not exist: \'/x/missing.yaml\'', None, "config: File does not exist: '/x/missing.yaml'"),
    "unknown option": ('Parser key "model":\n  Errors:\n    - Problem with given class_path \'faceage.training.module.AgeModule\':\n'
                       "        Option 'zzz' is not accepted", None, "model: Option 'zzz' is not accepted; allowed: backbone, head, optim, gender,"),
}


@pytest.mark.parametrize("case", list(RAW))
def test_long_errors_become_one_line(case):
    from faceage.training.lightning_cli import _one_line

    message, key, expected = RAW[case]
    assert _one_line(message, key).startswith(expected)


def test_image_size_bound_is_named(tmp_path):
    from faceage.training.lightning_cli import ConfigError, FaceAgeCLI

    cli = FaceAgeCLI.__new__(FaceAgeCLI)  # only the check, without parsing
    cli.subcommand, cli.config = None, {"model": {"init_args": {"backbone": {"image_size": -64}}}, "data": {"init_args": {"batch_size": 8}}}
    with pytest.raises(ConfigError, match=r"^model.backbone.image_size: must be an integer within 8\.\.1024 \(or null: the backbone's\), got -64$"):
        cli.before_instantiate_classes()


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_is_one_line(utkface_tree, tmp_path, capsys, case):
    yaml, extra, expected = CASES[case]
    args = ["fit", *BASE, "--data.root", str(utkface_tree), "--trainer.default_root_dir", str(tmp_path / "runs")]
    if yaml:
        (tmp_path / "c.yaml").write_text(yaml)
        args += ["--config", str(tmp_path / "c.yaml")]
    with pytest.raises(SystemExit) as exit_:
        main(args + extra)
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [expected]
    assert not (tmp_path / "runs").exists()  # nothing started


def test_help_keeps_the_full_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) > 100 and "--model.help" in out and "--trust_pickle" in out
