"""AgeDataModule: which faces train, validate and test."""

from __future__ import annotations

import pytest

from faceage.data.datamodule import AgeDataModule, SplitConfig

INPUT_CONFIG = {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop": 1.0}


def make_module(root, **kw) -> AgeDataModule:
    dm = AgeDataModule("utkface", str(root), split=SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0),
                       batch_size=8, num_workers=0, cache_images=False, **kw)
    dm.input_config = INPUT_CONFIG
    return dm


def paths(dataset) -> set[str]:
    return {r.path for r in dataset.records}


def test_trains_on_the_train_split_by_default(utkface_tree):
    dm = make_module(utkface_tree)
    dm.setup("fit")
    assert paths(dm.datasets["train"]) == {r.path for r in dm.subset("train")}
    assert not paths(dm.datasets["train"]) & paths(dm.datasets["val"])
    assert not paths(dm.datasets["train"]) & paths(dm.datasets["test"])


def test_refit_on_train_and_val_keeps_the_test_faces_unseen(utkface_tree):
    dm = make_module(utkface_tree, train_splits=["train", "val"])
    dm.setup("fit")
    train = paths(dm.datasets["train"])
    assert len(train) == len(dm.datasets["train"]) == len(dm.subset("train")) + len(dm.subset("val"))
    assert paths(dm.datasets["val"]) <= train
    assert not train & paths(dm.datasets["test"])
    # the split itself is the seeded one, unchanged by the option
    plain = make_module(utkface_tree)
    plain.prepare_records()
    assert plain.splits == dm.splits


def test_unknown_training_split_is_named(utkface_tree):
    dm = make_module(utkface_tree, train_splits=["train", "validation"])
    with pytest.raises(ValueError, match=r"train_splits: no split named \['validation'\]"):
        dm.setup("fit")
