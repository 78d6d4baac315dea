"""The model-file layer (faceage.models.files) and the typed age-model config (faceage.models.config.AgeModelConfig)."""

from __future__ import annotations

import json

import pytest
import torch

from faceage._io import atomic_target
from faceage.models.age_model import AgeModel, load_model
from faceage.models.config import AgeModelConfig, ModelConfigError
from faceage.models.ensemble import AgeEnsemble
from faceage.models.files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    model_kind,
    model_state,
    save_module,
    source_kind,
    write_config,
)


def _tiny(**kw) -> AgeModel:
    torch.manual_seed(0)
    return AgeModel("resnet18", "dldl", image_size=32, **kw).eval()


def test_config_round_trip_and_one_definition():
    model = _tiny(gender=True, race=True, crop=0.9)
    cfg = AgeModelConfig.from_dict(model.config)
    assert cfg.race is True and cfg.gender is True and cfg.input["crop"] == 0.9 and cfg.input["image_size"] == 32
    assert cfg.to_dict() == model.config
    rebuilt = AgeModel(cfg)
    assert rebuilt.config == model.config
    # metadata written beside the model's own keys is accepted; anything else is one clear error
    AgeModelConfig.from_dict({**model.config, "faceage_version": "x", "metrics": {}, "calibration": {}})
    with pytest.raises(ValueError, match=r"unknown keys: \['colour'\]"):
        AgeModelConfig.from_dict({**model.config, "colour": 1})
    with pytest.raises(ModelConfigError, match="input.image_size"):
        AgeModelConfig.from_dict({**model.config, "input": {**model.config["input"], "image_size": 0}})
    with pytest.raises(ModelConfigError, match="unknown input keys"):
        AgeModelConfig(input={"imagesize": 32})


def test_kinds_and_dispatch(tmp_path):
    age = _tiny()
    ens = AgeEnsemble([_tiny(), _tiny()])
    assert model_kind(age.config) == "age" and model_kind(ens.config) == "ensemble" and model_kind({"kind": "siamese"}) == "pair"
    age.save_pretrained(tmp_path / "a")
    ens.save_pretrained(tmp_path / "e")
    assert source_kind(tmp_path / "a") == "age" and source_kind(tmp_path / "e" / WEIGHTS_NAME) == "ensemble"
    assert source_kind(tmp_path / "missing") is None
    assert isinstance(load_model(tmp_path / "a"), AgeModel) and isinstance(load_model(tmp_path / "e"), AgeEnsemble)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path / "e").decode(load_model(tmp_path / "e")(x))["age"], ens.decode(ens(x))["age"])


def test_checkpoint_state_prefix_and_loading(tmp_path):
    model = _tiny()
    ckpt = {"model_config": model.config, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()} | {"mae.x": torch.zeros(1)}}
    assert set(model_state(ckpt["state_dict"])) == set(model.state_dict())
    path = tmp_path / "run.ckpt"
    torch.save(ckpt, path)
    assert source_kind(path) == "age"
    loaded = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x)["age_logits"], model(x)["age_logits"])
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="run.ckpt: not a readable faceage checkpoint"):
        load_model(path)


def test_writes_are_atomic(tmp_path):
    target = tmp_path / CONFIG_NAME
    write_config(tmp_path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_target(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_NAME]  # no temp file left behind
    save_module(_tiny(), _tiny().config, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_pair_model_config_is_typed_and_checked():
    from faceage.models.config import PairModelConfig
    from faceage.models.pairs import create_pair_model

    model = create_pair_model("siamese", backbone="resnet18", pretrained=False, image_size=32, hidden=[8])
    cfg = PairModelConfig.from_dict(model.config)
    assert cfg.kind == "siamese" and cfg.backbone == "resnet18" and cfg.hidden == [8] and cfg.input["image_size"] == 32
    assert cfg.to_dict() == model.config
    with pytest.raises(ModelConfigError, match=r"unknown keys: \['colour'\]"):
        PairModelConfig.from_dict({**model.config, "colour": 1})
    with pytest.raises(ModelConfigError, match="needs a 'kind'"):
        PairModelConfig.from_dict({"input": {}})


def test_a_bad_config_names_its_file(tmp_path):
    _tiny().save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / CONFIG_NAME
    config = json.loads(path.read_text())
    for change, problem in (({"backbone": "nosuchnet"}, "unknown backbone 'nosuchnet'"),
                            ({"input": {**config["input"], "imagesize": 3}}, r"unknown input keys \['imagesize'\]"),
                            ({"gender_net": "vgg"}, "gender_net must be null or 'cydral'")):
        path.write_text(json.dumps({**config, **change}))
        with pytest.raises(ModelConfigError, match=f"^{path}: .*{problem}"):
            load_model(tmp_path / "m")
