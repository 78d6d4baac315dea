"""Knowledge distillation: teacher soft targets, the soft loss, and ``faceage fit --model.teacher``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from faceage.cli import main
from faceage.models.age_model import AgeModel
from faceage.training.distill import Teacher, soft_target_loss
from faceage.training.module import AgeModule, BackboneConfig, HeadConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _saved(tmp_path: Path, name: str, seed: int = 0, **kw) -> tuple[AgeModel, Path]:
    torch.manual_seed(seed)
    model = AgeModel(**{"backbone": "resnet18", "head": "dldl", "image_size": 32, "gender": True, "race": True, **kw}).eval()
    return model, model.save_pretrained(tmp_path / name)


def test_student_equal_to_its_teacher_has_no_age_soft_loss(tmp_path):
    model, directory = _saved(tmp_path, "t")
    teacher = Teacher([directory], model.config, flip=False)
    images = torch.randn(4, 3, 32, 32)
    soft = teacher(images)
    assert set(soft) == {"distribution", "age", "gender_prob", "race_probs"}
    terms = soft_target_loss(model, model(images), soft)
    assert terms["age_soft"].item() == pytest.approx(0.0, abs=1e-4)
    # the gender/race soft terms are then the teacher's own entropy, not zero
    p = soft["gender_prob"]
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean()
    assert terms["gender_soft"].item() == pytest.approx(entropy.item(), rel=1e-4)


def test_teachers_average_and_flip(tmp_path):
    a, dir_a = _saved(tmp_path, "a", seed=0)
    b, dir_b = _saved(tmp_path, "b", seed=1, image_size=40)  # another size: the batch is resized for it
    images = torch.randn(3, 3, 32, 32)
    soft = Teacher([dir_a, dir_b], a.config, flip=True)(images)
    resized = torch.nn.functional.interpolate(images, size=(40, 40), mode="bilinear", antialias=True, align_corners=False)
    views = [a.decode(a(images)), a.decode(a(images.flip(-1))), b.decode(b(resized)), b.decode(b(resized.flip(-1)))]
    expected = sum(v["age"] for v in views) / 4
    assert torch.allclose(soft["age"], expected, atol=1e-4)
    assert torch.allclose(soft["distribution"].sum(dim=1), torch.ones(3), atol=1e-5)


def test_incompatible_teacher_is_named(tmp_path):
    student, _ = _saved(tmp_path, "s")
    _, other_range = _saved(tmp_path, "range", max_age=90)
    with pytest.raises(ValueError, match=r"range.*max_age 90"):
        Teacher([other_range], student.config)
    _, other_crop = _saved(tmp_path, "crop", crop=0.8)
    with pytest.raises(ValueError, match=r"crop.*input crop"):
        Teacher([other_crop], student.config)
    with pytest.raises(FileNotFoundError, match="missing"):
        Teacher([tmp_path / "missing"], student.config)
    # a module is built without its teacher (validate/test of a distilled checkpoint need no teacher files) ...
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32), teacher=[str(tmp_path / "missing")])
    # ... and training fails before its first step, naming the directory
    with pytest.raises(FileNotFoundError, match="missing"):
        module.on_fit_start()


def test_distillation_pulls_the_student_to_the_teacher(tmp_path):
    """Trained on the soft loss alone (teacher_weight 1), a student's ages converge to the teacher's (about 20 years)."""
    teacher, _ = _saved(tmp_path, "t", seed=0)
    with torch.no_grad():  # a teacher that sees everyone near 20, far from an untrained student's ~55
        teacher.head.fc.bias.copy_(-((teacher.head.age_values - 20) / 3).square())
        teacher.head.fc.weight.mul_(0.01)
    directory = teacher.save_pretrained(tmp_path / "t")
    torch.manual_seed(1)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="dldl"), gender=True, race=True,
                       teacher=[str(directory)], teacher_weight=1.0, teacher_flip=False)
    images = torch.randn(16, 3, 32, 32)
    target = module.teacher()(images)["age"]
    gap = lambda: (module.model.decode(module.model.eval()(images))["age"] - target).abs().mean().item()  # noqa: E731
    before = gap()
    optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-3)
    batch = {"image": images, "age": torch.full((16,), 50.0), "gender": torch.zeros(16, dtype=torch.long), "race": torch.zeros(16, dtype=torch.long)}
    for _ in range(40):
        module.model.train()
        loss = module._distill(images, module.model(images), module.model.loss(module.model(images), batch["age"]))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert gap() < 0.3 * before, (before, gap())
    # the teacher is not part of the trained module: no parameters in the optimizer, nothing in the state dict
    assert not any(k.startswith("_teacher") or "members." in k for k in module.state_dict())


def test_teacher_weight_zero_is_the_plain_loss(tmp_path):
    _, directory = _saved(tmp_path, "t")
    torch.manual_seed(0)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="dldl"), gender=True, teacher=[str(directory)], teacher_weight=0.0)
    images, ages = torch.randn(4, 3, 32, 32), torch.tensor([3.0, 20.0, 41.0, 70.0])
    out = module.model(images)
    plain = module.model.loss(out, ages)
    assert module._distill(images, out, plain)["loss"].item() == pytest.approx(plain["loss"].item())
    with pytest.raises(ValueError, match="teacher_weight"):
        AgeModule(BackboneConfig(name="resnet18", image_size=32), teacher=[str(directory)], teacher_weight=1.5)


def test_fit_with_a_teacher_through_the_cli(utkface_tree, tiny_model_dir, tmp_path):
    from tests.training.test_training import TINY, _run_dir

    runs = tmp_path / "runs"
    # the shared tiny model (32px resnet18 dldl, gender) teaches a student with a race head it does not have
    main(["fit", *TINY, "--data.root", str(utkface_tree), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs),
          "--model.teacher", f"[{tiny_model_dir}]", "--model.teacher_weight", "0.5"])
    run = _run_dir(runs)
    hparams = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["teacher"] == [str(tiny_model_dir)] and hparams["teacher_weight"] == 0.5
    config = json.loads((run / "model" / "config.json").read_text())
    saved = AgeModel.from_pretrained(run / "model")
    assert config["race"] is True and not any("members" in k for k in saved.state_dict())


def test_teacher_start_is_the_student_before_training_without_its_random_race_head():
    module = AgeModule(backbone=BackboneConfig(name="resnet18", image_size=32), head=HeadConfig(name="dldl"), gender=True, race=True,
                       teacher=["start"], teacher_flip=False)
    images = torch.randn(4, 3, 32, 32)
    module.model.eval()
    before = module.model.predict(images, flip=False)
    soft = module.teacher()(images)
    assert set(soft) == {"distribution", "age", "gender_prob"}
    assert torch.allclose(soft["distribution"], before["distribution"], atol=1e-6)
    with torch.no_grad():  # the student moves on; the teacher stays where the student started
        for p in module.model.parameters():
            p.add_(0.1)
    assert torch.allclose(module.teacher()(images)["age"], before["age"], atol=1e-5)
    assert not any(k.startswith("_start") or "teacher" in k for k in module.state_dict())
