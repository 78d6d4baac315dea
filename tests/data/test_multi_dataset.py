"""Several datasets in one recipe: each read by its own reader, split on its own, tagged by source, sampled by weight."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.data.datamodule import AgeDataModule, DatasetSpec, SplitConfig
from faceage.data.datasets import EpochSampler
from faceage.data.readers.guess import guess_reader
from tests.conftest import write_utkface_tree

INPUT_CONFIG = {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop": 1.0}


def write_aaf_tree(root: Path, n: int = 40, size: int = 32, seed: int = 1) -> Path:
    """``n`` generated faces with All-Age-Faces names (``NNNNNAyy.jpg``), one person each."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        age = int(rng.integers(2, 80))
        Image.fromarray(np.full((size, size, 3), 40 + 2 * age, np.uint8)).save(root / f"{i * 200:05d}A{age:02d}.jpg")
    return root


def make(tmp_path: Path, weights=(1.0, 1.0), **kw) -> AgeDataModule:
    utk, aaf = write_utkface_tree(tmp_path / "utk", n=60), write_aaf_tree(tmp_path / "aaf")
    specs = [DatasetSpec("utkface", str(utk), weight=weights[0]),
             DatasetSpec("auto", str(aaf), split_file=str(tmp_path / "aaf_split.json"), label="aaf", weight=weights[1])]
    dm = AgeDataModule(datasets=specs, split=SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0), batch_size=8,
                       num_workers=0, cache_images=False, check_images=False, **kw)
    dm.input_config = INPUT_CONFIG
    return dm


def test_each_root_gets_its_own_reader(tmp_path):
    assert guess_reader(write_utkface_tree(tmp_path / "u", n=5)) == "utkface"
    assert guess_reader(write_aaf_tree(tmp_path / "a", n=5)) == "aaf"
    fg = tmp_path / "fg" / "images"
    fg.mkdir(parents=True)
    for name in ("001A02.JPG", "078A11a.JPG", "002A16.JPG"):
        Image.new("RGB", (8, 8)).save(fg / name, format="JPEG")
    assert guess_reader(tmp_path / "fg") == "fgnet"
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "holiday.jpg")
    with pytest.raises(ValueError, match=r"other: cannot tell which dataset"):
        guess_reader(other)


def test_records_carry_their_source_and_splits_stay_per_dataset(tmp_path):
    dm = make(tmp_path)
    dm.setup("fit")
    assert dm.sources == ["utkface", "aaf"]
    by_source = Counter(r.source for r in dm.records)
    assert by_source == {"utkface": 60, "aaf": 40}
    # each dataset is split on its own: 20% of each in val, and the AAF split is saved where its spec says
    val = Counter(r.source for r in dm.subset("val"))
    assert val == {"utkface": 12, "aaf": 8}
    saved = json.loads((tmp_path / "aaf_split.json").read_text())
    assert len(saved["splits"]["val"]["indices"]) == 8
    # items say which dataset they come from
    items = [dm.datasets["val"][i] for i in range(len(dm.datasets["val"]))]
    assert Counter(item["source"] for item in items) == {0: 12, 1: 8}
    # a second module reads the saved AAF split back: the same faces in val
    again = make(tmp_path)
    again.prepare_records()
    assert {r.path for r in again.subset("val") if r.source == "aaf"} == {r.path for r in dm.subset("val") if r.source == "aaf"}


def test_sampling_weight_sets_each_datasets_share_of_an_epoch(tmp_path):
    dm = make(tmp_path, weights=(0.5, 2.0))
    dm.setup("fit")
    train = dm.datasets["train"]
    n_utk, n_aaf = (int((train.source_ids == k).sum()) for k in (0, 1))
    loader = dm.train_dataloader()
    order = [i for i, _ in loader.sampler]
    assert len(order) == round(0.5 * n_utk) + 2 * n_aaf == len(loader.sampler)
    counts = Counter(int(train.source_ids[i]) for i in order)
    assert counts == {0: round(0.5 * n_utk), 1: 2 * n_aaf}
    # every AAF face twice, and a fresh half of UTKFace in the next epoch
    assert set(Counter(i for i in order if train.source_ids[i] == 1).values()) == {2}
    loader.sampler.epoch = 1
    later = {i for i, _ in loader.sampler if train.source_ids[i] == 0}
    assert later != {i for i in order if train.source_ids[i] == 0}


def test_epoch_sampler_weights_are_seeded():
    groups = np.array([0] * 10 + [1] * 4)
    a = list(EpochSampler(14, seed=3, groups=groups, group_weights=[0.3, 1.5]))
    b = list(EpochSampler(14, seed=3, groups=groups, group_weights=[0.3, 1.5]))
    assert a == b and len(a) == 3 + 6


def test_bad_specs_are_named(tmp_path):
    with pytest.raises(ValueError, match="labels must differ"):
        AgeDataModule(datasets=[DatasetSpec("utkface", "a"), DatasetSpec("utkface", "b")])
    with pytest.raises(ValueError, match="weight of 'x' must be >= 0"):
        AgeDataModule(datasets=[DatasetSpec("utkface", "a", label="x", weight=-1)])


def test_describe_reads_each_root_with_its_own_reader(tmp_path, capsys):
    from faceage.cli import main

    utk, aaf = write_utkface_tree(tmp_path / "utk", n=12), write_aaf_tree(tmp_path / "aaf", n=9)
    assert main(["describe", str(utk), str(aaf), "--no-sizes"]) == 0
    out = capsys.readouterr().out
    assert "utkface: 12 records ok, 0 skipped" in out and "aaf: 9 records ok, 0 skipped" in out
    faces = next(line for line in out.splitlines() if line.startswith("faces"))
    assert faces.split()[1:] == ["12", "9"]
