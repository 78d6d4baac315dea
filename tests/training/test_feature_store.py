"""The feature store: frozen layers computed once per face and view, stored, and trained on.

Checks that stored view-0 activations equal the live frozen part, that a model trained on the store predicts through
the whole network what the store path gives, that the key follows what the values depend on, that an interrupted
fill resumes to the same store, and that a full disk is one line naming the store."""

from __future__ import annotations

import errno
import os

import lightning as L
import numpy as np
import pytest
import torch

from faceage.data.feature_store import DONE, FAILED, FeatureStore, FeatureStoreFull, StoreDataset
from faceage.models.backbone_split import split_backbone
from faceage.models.backbones import apply_transfer_mode, create_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _module(views: int = 3, transfer: str = "partial", folder=None, **kwargs):
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig
    from faceage.training.optim import OptimConfig

    backbone = BackboneConfig(name="resnet18", image_size=32, transfer=transfer, unfreeze_last=1 if transfer == "partial" else 0,
                              feature_store=True, feature_views=views, feature_dir=str(folder) if folder else None)
    return AgeModule(backbone, HeadConfig(name="dldl"), OptimConfig(lr=0.01, scheduler="none"), early_stopping_patience=0, **kwargs)


def _data(root, tmp_path, **kwargs):
    from faceage.data.datamodule import AgeDataModule, SplitConfig

    return AgeDataModule("utkface", str(root), split=SplitConfig(seed=0), batch_size=16, num_workers=0,
                         split_file=str(tmp_path / "split.json"), **kwargs)


def _fit(module, data, tmp_path, epochs: int = 2):
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=str(tmp_path / "run"), logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, data)
    return trainer


@pytest.mark.parametrize("name,size", [("resnet18", 32), ("cydral_resnet10", 64), ("sface", 112)])
def test_split_parts_compose_to_the_whole_backbone_and_freeze_the_first(name, size):
    torch.manual_seed(0)
    backbone = create_backbone(name, pretrained=name != "resnet18")
    apply_transfer_mode(backbone, "partial", 1)
    split = split_backbone(backbone, "partial", 1)
    backbone.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(split.trainable(split.frozen(x)), backbone(x), atol=1e-5)
    assert not any(p.requires_grad for p in split.frozen.parameters())
    trainable = {id(p) for p in split.trainable.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in backbone.parameters() if p.requires_grad} and trainable
    assert {id(p) for p in split.frozen.parameters()}.isdisjoint(trainable)


def test_store_fit_stores_live_view_0_and_predicts_as_the_whole_network(utkface_tree, tmp_path):
    from faceage.data.transforms import build_eval_transform

    L.seed_everything(0)
    module, data = _module(views=3, folder=tmp_path / "features"), _data(utkface_tree, tmp_path)
    frozen_before = {k: v.clone() for k, v in module._store[0].split.frozen.state_dict().items()}
    head_before = module.model.head.fc.weight.detach().clone()
    _fit(module, data, tmp_path)
    store = module._store[0]
    train = data.datasets["train"]
    assert isinstance(train, StoreDataset) and isinstance(data.datasets["val"], StoreDataset)
    state = np.load(store.store.folder / "state.npy")
    assert (state[:, train.rows] == DONE).all()  # every view of every training face
    assert (state[0, data.datasets["val"].rows] == DONE).all() and (state[1:, data.datasets["val"].rows] == 0).all()
    assert store.stats["rows_computed"] == len(train) * 3 + len(data.datasets["val"])
    # the frozen part did not change (weights and batch-norm statistics); the head and last block trained
    assert all(torch.equal(v, frozen_before[k]) for k, v in store.split.frozen.state_dict().items())
    assert not torch.equal(module.model.head.fc.weight, head_before)

    model = module.model.eval()
    tf = build_eval_transform(model.input_config)
    from faceage.data.images import load_image

    rows = train.rows[:8]
    images = torch.stack([tf(load_image(data.records[r].path)) for r in rows])
    stored = torch.from_numpy(np.load(store.store.folder / "view_0.npy")[rows].astype(np.float32))
    with torch.no_grad():
        live = store.split.frozen(images)
        assert torch.allclose(stored, live, rtol=1e-3, atol=1e-3)  # float16 storage
        whole = model.decode(model(images))["age"]
        through_store = model.decode(store.forward(model, stored))["age"]
    assert torch.allclose(whole, through_store, atol=0.05)
    views = {int(np.random.default_rng(s).integers(3)) for s in range(40)}
    assert views == {0, 1, 2}  # training picks among all stored views


def test_later_fit_reuses_the_store_and_a_changed_key_recomputes(utkface_tree, tmp_path):
    def fit(views: int, seed: int = 0):
        L.seed_everything(seed)  # the backbone's random start: the frozen weights
        module = _module(views=views, folder=tmp_path / "features")
        _fit(module, _data(utkface_tree, tmp_path), tmp_path, epochs=1)
        return module._store[0]

    first, again = fit(2), fit(2)
    assert first.stats["rows_computed"] == 77 * 2 + 10 and again.stats["rows_computed"] == 0
    assert again.store.folder == first.store.folder
    assert fit(3).store.folder != first.store.folder  # another view count
    other_weights = fit(2, seed=1)
    assert other_weights.store.folder != first.store.folder and other_weights.stats["rows_computed"] == 77 * 2 + 10


def test_key_changes_with_weights_preprocessing_augmentation_and_records(utkface_tree, tmp_path):
    from faceage.data.transforms import AugmentConfig

    torch.manual_seed(0)
    module, data = _module(), _data(utkface_tree, tmp_path)
    data.prepare_records()
    store, model = module._store[0], module.model

    def key(m=model, d=data):
        return store.key(m, d, (256, 2, 2))[0]

    base = key()
    assert key() == base
    with torch.no_grad():
        store.split.frozen.get_submodule("model.conv1").weight[0, 0, 0, 0] += 1e-3
    assert key() != base
    with torch.no_grad():
        store.split.frozen.get_submodule("model.conv1").weight[0, 0, 0, 0] -= 1e-3
    assert key() == base
    model.input_config = {**model.input_config, "crop": 0.9}
    assert key() != base
    model.input_config = {**model.input_config, "crop": 1.0}
    data.augment = AugmentConfig(rotation=5.0)
    assert key() != base
    data.augment = AugmentConfig()
    data.align = "always"
    assert key() != base
    data.align = "auto"
    assert store.key(model, data, (256, 2, 2), bf16=True)[0] != base  # a bf16 recipe's activations are its own
    path = data.records[3].path
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert key() != base


def _toy_store(folder, n=10, views=2):
    return FeatureStore(folder, "k" * 32, n, views, (3,), {"what": "toy"}).open()


def _toy_compute(view, rows):
    values = (np.asarray(rows, dtype=np.float32)[:, None] * 10 + view + np.arange(3)) / 7
    ok = np.asarray(rows) != 4  # row 4: an unreadable image
    return values, ok


def test_interrupted_fill_resumes_to_the_same_store(tmp_path):
    needed = {0: np.arange(10), 1: np.array([1, 2, 5, 6, 8, 9])}
    whole = _toy_store(tmp_path / "whole")
    assert whole.fill(needed, _toy_compute, chunk=3, progress=False) == 16
    calls = []

    def interrupted(view, rows):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(list(rows))
        return _toy_compute(view, rows)

    part = _toy_store(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        part.fill(needed, interrupted, chunk=3, progress=False)
    reopened = _toy_store(tmp_path / "part")  # a new process: state and values from disk
    assert (reopened.state[0, :9] != 0).all() and (reopened.state[0, 9:] == 0).all()
    assert reopened.fill(needed, _toy_compute, chunk=3, progress=False) == 16 - 9
    for v in range(2):
        assert np.array_equal(np.load(tmp_path / "part" / ("k" * 32) / f"view_{v}.npy"), np.load(tmp_path / "whole" / ("k" * 32) / f"view_{v}.npy"))
    assert np.array_equal(reopened.state, whole.state) and whole.state[0, 4] == FAILED and whole.state[1, 3] == 0
    from faceage.data.records import FaceRecord

    ds = StoreDataset([FaceRecord("x.jpg", 30.0), FaceRecord("y.jpg", 40.0)], reopened.folder, [4, 5], 1, reopened.state)
    assert ds[0] is None and torch.allclose(ds[1]["features"], torch.tensor((50 + np.arange(3)) / 7, dtype=torch.float32), atol=1e-2)


def test_store_of_another_shape_or_views_is_rebuilt_not_reused(tmp_path):
    store = _toy_store(tmp_path)
    store.fill({0: np.arange(10)}, _toy_compute, progress=False)
    assert _toy_store(tmp_path).state[0].any()  # same layout: reused
    other = FeatureStore(tmp_path, "k" * 32, 10, 3, (3,)).open()
    assert not other.state.any() and other.state.shape == (3, 10)


def test_full_disk_is_one_line_naming_the_store(tmp_path, monkeypatch):
    import faceage.data.feature_store as fs

    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs, "_allocate", no_space)
    with pytest.raises(FeatureStoreFull) as info:
        _toy_store(tmp_path / "disk")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "disk" / ("k" * 32)) in message and "no space" in message
    assert info.value.errno == errno.ENOSPC and not list((tmp_path / "disk" / ("k" * 32)).glob("view_*.npy"))
    monkeypatch.undo()
    store = _toy_store(tmp_path / "late")
    monkeypatch.setattr(store, "_save_state", lambda: no_space(None))  # the disk fills while marking rows done
    with pytest.raises(FeatureStoreFull, match="no space"):
        store.fill({0: np.arange(10)}, _toy_compute, progress=False)
    assert not _toy_store(tmp_path / "late").state.any()  # nothing was marked done: the next fill computes it all


def test_refused_combinations_are_named(tmp_path):
    from faceage.training.module import AgeModule, BackboneConfig

    with pytest.raises(ValueError, match="teacher"):
        _module(teacher=["start"])
    with pytest.raises(ValueError, match="'frozen' or 'partial'"):
        AgeModule(BackboneConfig(name="resnet18", image_size=32, transfer="finetune", feature_store=True))
    with pytest.raises(ValueError, match="unfreeze_last"):
        AgeModule(BackboneConfig(name="resnet18", image_size=32, transfer="partial", unfreeze_last=99, feature_store=True))


def test_frozen_transfer_stores_pooled_features_and_trains_only_heads(utkface_tree, tmp_path):
    L.seed_everything(0)
    module = _module(views=1, transfer="frozen", folder=tmp_path / "features")
    before = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    _fit(module, _data(utkface_tree, tmp_path), tmp_path, epochs=1)
    assert module._store[0].stats["shape"] == [512]
    assert all(torch.equal(v, before[k]) for k, v in module.model.backbone.state_dict().items())


def test_folds_share_one_store_and_compute_only_their_missing_rows(utkface_tree, tmp_path):
    from faceage.data.datamodule import SplitConfig

    stores = []
    for fold in (0, 1):
        L.seed_everything(0)
        module = _module(views=2, folder=tmp_path / "features")
        data = _data(utkface_tree, tmp_path)
        data.split_config, data.split_file = SplitConfig(seed=0, n_folds=3, fold=fold), str(tmp_path / f"split_{fold}.json")
        _fit(module, data, tmp_path / f"fold_{fold}", epochs=1)
        train, val = data.datasets["train"].rows, data.datasets["val"].rows
        stores.append((module._store[0], set(train), set(val)))
    (first, train0, val0), (second, train1, val1) = stores
    assert second.store.folder == first.store.folder
    # fold 1 computes view 0 of its faces fold 0 had not seen, and view 1 of its training faces fold 0 did not train on
    expected = len((train1 | val1) - (train0 | val0)) + len(train1 - train0)
    assert 0 < second.stats["rows_computed"] == expected < first.stats["rows_computed"]
