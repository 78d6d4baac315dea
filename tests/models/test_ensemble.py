"""AgeEnsemble: averaged outputs, member checks, the model-directory round trip, the CLI with ONNX, and the
consumers that take any age model (Predictor, Grad-CAM, the comparators)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceage.cli import main
from faceage.models.age_model import AgeModel, load_model
from faceage.models.ensemble import AgeEnsemble

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _member(seed: int, **kw) -> AgeModel:
    torch.manual_seed(seed)
    return AgeModel("resnet18", "dldl", image_size=32, gender=True, **kw).eval()


def test_outputs_are_the_mean_of_the_members():
    a, b = _member(0, race=True), _member(1)
    ens = AgeEnsemble([a, b]).eval()
    x = torch.randn(3, 3, 32, 32)
    da, db, de = a.decode(a(x)), b.decode(b(x)), ens.decode(ens(x))
    assert ens.output_names == ["age", "distribution", "gender_prob", "race_probs"]
    for name in ("age", "distribution", "gender_prob"):
        assert torch.allclose(de[name], (da[name] + db[name]) / 2, atol=1e-6), name
    assert torch.allclose(de["race_probs"], da["race_probs"])  # race from the one member that has a race head
    # with a distribution head the ensemble age is the expectation of the mean distribution
    ages = a.head.age_values.float()
    assert torch.allclose(de["age"], de["distribution"] @ ages, atol=1e-3)
    assert ens.config["gender"] is True and ens.config["race"] is True and len(ens.config["ensemble"]) == 2


def test_members_must_share_input_and_age_range():
    with pytest.raises(ValueError, match="at least two members"):
        AgeEnsemble([_member(0)])
    other = AgeModel("resnet18", "dldl", image_size=48, gender=True)
    with pytest.raises(ValueError, match="member 1 has a different 'input'"):
        AgeEnsemble([_member(0), other])
    with pytest.raises(ValueError, match="'max_age'"):
        AgeEnsemble([_member(0), AgeModel("resnet18", "dldl", image_size=32, max_age=90)])


def test_cli_round_trip_onnx_and_consumers(tmp_path, image_zoo):
    from faceage.inference.explain import Explainer
    from faceage.inference.predictor import Predictor
    from faceage.models.pairs import AgeDifferenceComparator, AgeFeatureComparator

    dirs = [_member(s).save_pretrained(tmp_path / f"m{s}") for s in (0, 1)]
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, dirs), "--output", str(out), "--tta-flip", "on"]) == 0
    ens = load_model(out)
    assert isinstance(ens, AgeEnsemble) and ens.config["tta_flip"] is True
    chip = image_zoo.valid["gray"][0]
    t = Predictor(str(out), detect=False).predict(chip)[0]
    o = Predictor(str(out), engine="onnx", detect=False).predict(chip)[0]
    assert abs(t.age - o.age) < 1e-4 and abs(t.gender_p - o.gender_p) < 1e-4
    # the ensemble's age is the members' mean (each with flip averaging)
    members = [Predictor(str(d), detect=False) for d in dirs]
    for p in members:
        p.engine.wrapper.tta_flip = True
    assert t.age == pytest.approx(np.mean([p.predict(chip)[0].age for p in members]), abs=1e-3)
    heat = Explainer(ens)(chip)
    assert heat.shape == (30, 40) and heat.dtype == np.float32 and 0 <= heat.min() <= heat.max() <= 1
    x = torch.randn(2, 3, 32, 32)
    assert AgeDifferenceComparator(ens)(x, x.flip(0)).shape == (2,)
    feat = AgeFeatureComparator(ens, hidden=[8])
    assert feat.head[0].in_features == 3 * 2 * 512 and feat(x, x.flip(0)).shape == (2,)


def test_round_ages_follows_the_first_member_unless_given(tmp_path, image_zoo):
    from faceage.inference.predictor import Predictor

    plain, rounding = _member(0), _member(1, round_ages=True)
    assert AgeEnsemble([plain, rounding]).config["round_ages"] is False
    assert AgeEnsemble([rounding, plain]).config["round_ages"] is True
    assert AgeEnsemble([rounding, plain], round_ages=False).config["round_ages"] is False
    dirs = [m.save_pretrained(tmp_path / f"m{i}") for i, m in enumerate((plain, rounding))]
    for flag in ("off", "on"):
        assert main(["ensemble", *map(str, dirs), "--output", str(tmp_path / flag), "--round-ages", flag]) == 0
    assert load_model(tmp_path / "on").config["round_ages"] is True  # survives the directory round trip
    chip = image_zoo.valid["gray"][0]
    exact = Predictor(str(tmp_path / "off"), detect=False).predict(chip)[0].age
    for engine in ("torch", "onnx"):
        whole = Predictor(str(tmp_path / "on"), engine=engine, detect=False).predict(chip)[0].age
        assert whole == round(exact) and not exact.is_integer()  # rounded once, after the members' average
    assert Predictor(str(tmp_path / "on"), detect=False, round_ages=False).predict(chip)[0].age == pytest.approx(exact, abs=1e-6)
    out = tmp_path / "fractional.csv"
    assert main(["predict", str(chip), "--model", str(tmp_path / "on"), "--no-detect", "--fractional-ages", "--output", str(out)]) == 0
    assert float(out.read_text().splitlines()[1].split(",")[2]) == pytest.approx(exact, abs=0.01)


def test_cli_names_bad_members(tmp_path, capsys):
    a = _member(0).save_pretrained(tmp_path / "a")
    b = AgeModel("resnet18", "dldl", image_size=48).save_pretrained(tmp_path / "b")
    assert main(["ensemble", str(a), str(b), "--output", str(tmp_path / "e")]) == 2
    assert "member 1 has a different 'input'" in capsys.readouterr().err
    assert main(["ensemble", str(a), str(tmp_path / "missing"), "--output", str(tmp_path / "e")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before anything is written
        main(["ensemble", str(a), str(a), "--output", str(tmp_path / "q"), "--quantize", "int8"])
    assert "needs --calibration" in capsys.readouterr().err and not (tmp_path / "q").exists()
    with pytest.raises(FileNotFoundError, match="not a faceage model directory"):
        AgeEnsemble.from_pretrained(tmp_path)
