"""Config errors are one line naming the key and what is allowed, with exit status 2 (the full usage stays behind
``--help``): a YAML key typo, an unknown head, contradictory options, out-of-bounds batch and image sizes."""

from __future__ import annotations

import pytest

from faceage.cli import main

BASE = ["--model.backbone.name", "resnet18", "--model.backbone.image_size", "32", "--data.num_workers", "0", "--trainer.max_epochs", "1"]

CASES = {
    "yaml typo": ("model:\n  early_stoping_patience: 3\n", [],
                  "error: model: Option 'early_stoping_patience' is not accepted; did you mean 'early_stopping_patience'?"),
    "nested typo": (None, ["--model.head.nmae", "coral"], "error: model.head: Option 'nmae' is not accepted; did you mean 'name'?"),
    "unknown head": (None, ["--model.head.name", "coarl"],
                     "error: model: unknown head 'coarl'; choose one of: ce, coral, corn, dldl, l1, mean_variance, mse"),
    "gender net without gender": (None, ["--model.gender", "false", "--model.gender_net", "cydral"], "error: model: gender_net needs gender: true"),
    "zero batch": (None, ["--data.batch_size", "0"], "error: data.batch_size: must be an integer >= 1, got 0"),
    "negative image size": (None, ["--model.backbone.image_size", "-64"],
                            "error: model.backbone.image_size: must be an integer within 8..1024 (or null: the backbone's), got -64"),
    "not a number": (None, ["--data.batch_size", "x"], "error: data.batch_size: Expected a <class 'int'>. Got value: x"),
}


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
