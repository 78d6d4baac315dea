"""Keeping what a pretrained network knows: L2-SP's pull toward the start and the linear probe before fine-tuning
(LP-FT), through a real fit on generated faces."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from faceage.training.optim import OptimConfig, StartAnchor, build_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_start_anchor_pulls_each_anchored_weight_by_lr_times_l2_sp():
    anchored, frozen, head = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    anchor = StartAnchor([anchored, frozen])
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.5, backbone_lr=0.1, l2_sp=2.0, momentum=0.0, weight_decay=0.0), [head], [anchored, frozen])
    with torch.no_grad():
        for p in (anchored, frozen, head):
            p.add_(10.0)
    anchored.grad, head.grad = torch.zeros(3), torch.zeros(3)  # frozen has no gradient this step
    anchor.pull(opt)
    assert torch.allclose(anchored, torch.full((3,), 8.0))  # 10 - 0.1 * 2.0 * (10 - 0)
    assert torch.equal(frozen, torch.full((3,), 10.0)) and torch.equal(head, torch.full((3,), 10.0))


def test_l2_sp_replaces_the_backbones_weight_decay_only():
    head, backbone = [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(2))]
    groups = build_optimizer(OptimConfig(weight_decay=0.05, l2_sp=0.1), head, backbone).param_groups
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0 and groups[1]["l2_sp"] == 0.1
    assert build_optimizer(OptimConfig(weight_decay=0.05), head, backbone).param_groups[1]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="l2_sp"):
        build_optimizer(OptimConfig(l2_sp=-1.0), head, backbone)


def _fit(root, tmp_path, backbone: dict, optim: dict, epochs: int, callbacks=()):
    from faceage.data.datamodule import AgeDataModule, SplitConfig
    from faceage.data.transforms import AugmentConfig
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig

    L.seed_everything(0)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32, **backbone), HeadConfig(name="dldl"),
                       OptimConfig(lr=0.01, scheduler="none", **optim), early_stopping_patience=0)
    start = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    module.head_start = {k: v.clone() for k, v in module.model.head.state_dict().items()}
    data = AgeDataModule("utkface", str(root), split=SplitConfig(seed=0), batch_size=16, num_workers=0,
                         augment=AugmentConfig(), split_file=str(tmp_path / "split.json"))
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=str(tmp_path), callbacks=list(callbacks), logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, data)
    return module, start


def test_l2_sp_at_full_rate_keeps_the_backbone_at_its_start_while_the_head_learns(utkface_tree, tmp_path):
    # lr x l2_sp = 1: every step's move of a backbone weight is undone, so only the head (and batch-norm running
    # statistics, which are buffers) can change
    module, start = _fit(utkface_tree, tmp_path, {}, {"backbone_lr": 0.01, "l2_sp": 100.0}, epochs=1)
    params = dict(module.model.backbone.named_parameters())
    assert all(torch.allclose(params[k], start[k], atol=1e-6) for k in params)
    assert any(not torch.equal(start[k], v) for k, v in module.model.backbone.state_dict().items() if "running_mean" in k)
    free, free_start = _fit(utkface_tree, tmp_path / "free", {}, {"backbone_lr": 0.01}, epochs=1)
    assert any(not torch.allclose(p, free_start[k]) for k, p in free.model.backbone.named_parameters())


def test_probe_epochs_train_the_head_alone_then_everything(utkface_tree, tmp_path):
    seen = {}

    class AfterEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen[trainer.current_epoch] = ({k: v.clone() for k, v in pl_module.model.backbone.state_dict().items()},
                                           {k: v.clone() for k, v in pl_module.model.head.state_dict().items()})

    module, start = _fit(utkface_tree, tmp_path, {"probe_epochs": 1}, {}, epochs=2, callbacks=[AfterEpoch()])
    probed_backbone, probed_head = seen[0]
    assert all(torch.equal(probed_backbone[k], start[k]) for k in start)  # weights and batch-norm statistics
    assert any(not torch.equal(v, module.head_start[k]) for k, v in probed_head.items())  # the probe trained the head
    assert any(not torch.equal(seen[1][0][k], start[k]) for k in start)  # then the backbone fine-tunes
    assert all(p.requires_grad for p in module.model.backbone.parameters())
    with pytest.raises(ValueError, match="probe_epochs"):
        _fit(utkface_tree, tmp_path / "bad", {"probe_epochs": -1}, {}, epochs=1)


def _saved(tmp_path, name: str, **kwargs):
    from faceage.models.age_model import AgeModel
    from faceage.models.config import AgeModelConfig
    from faceage.models.files import save_module

    torch.manual_seed(1)
    model = AgeModel(AgeModelConfig.from_kwargs(backbone="resnet18", head="dldl", image_size=32, **kwargs), pretrained=False)
    save_module(model, model.config, tmp_path / name)
    return model, tmp_path / name


def test_init_from_a_trained_model_copies_its_weights_and_names_what_it_lacks(tmp_path, capsys):
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig

    source, folder = _saved(tmp_path, "utk_model", gender=True)
    module = AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="mean_variance"),
                       OptimConfig(l2_sp=1.0), race=True, teacher=["start"], init_from=str(folder))
    state = module.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items() if k in state)
    assert "race_head.weight" in capsys.readouterr().out  # the head the source lacks keeps its own start
    # teacher "start" and L2-SP's anchor are the trained model, not the backbone's own start
    assert torch.equal(module._start[0].state_dict()["head.fc.weight"], source.state_dict()["head.fc.weight"])
    anchor = module._anchor[0].start
    assert all(torch.equal(anchor[id(p)], source.state_dict()[n]) for n, p in module.model.named_parameters() if n.startswith("backbone."))


def test_init_from_refuses_a_model_of_another_shape_naming_it(tmp_path):
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig

    _, folder = _saved(tmp_path, "wide", max_age=80)
    with pytest.raises(ValueError, match=rf"{folder}: max_age 80 differs"):
        AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="dldl"), init_from=str(folder))
    with pytest.raises(FileNotFoundError, match=r"model.init_from: .*not a faceage model directory.*--model.init_from null"):
        AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="dldl"), init_from=str(tmp_path / "nothing"))


def test_init_from_default_starts_the_fgnet_recipes_network_from_the_bundled_model():
    """What ``--model.init_from default --model.head.max_age 110`` does to the FG-NET recipe's network."""
    from safetensors.torch import load_file

    from faceage.models.age_model import AgeModel
    from faceage.models.config import AgeModelConfig
    from faceage.models.pretrained import BUNDLED_DIR, start_from

    model = AgeModel(AgeModelConfig.from_kwargs(backbone="cydral_resnet10", head="mean_variance", max_age=110, image_size=64,
                                                crop=0.9), pretrained=False)
    assert start_from(model, "default") == []
    bundled = load_file(str(BUNDLED_DIR / "model.safetensors"))
    assert all(torch.equal(v, bundled[k].float()) for k, v in model.state_dict().items() if v.is_floating_point())
