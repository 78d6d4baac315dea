"""Pair sets (seed 003's knobs): gap, size, swap duplicates, unique images, determinism, split isolation, CSV files."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from faceage.data.datamodule import SplitConfig
from faceage.data.pairs import (
    PairConfig,
    PairDataModule,
    PairRow,
    count_pairs,
    pair_labels,
    read_pair_csv,
    sample_pairs,
    write_pair_csv,
)

INPUT_CONFIG = {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop": 1.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ages(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 90, n).astype(float)


def unordered(pairs: np.ndarray) -> list[frozenset]:
    return [frozenset(p) for p in pairs.tolist()]


def test_all_pairs_are_every_valid_pair_once():
    a = np.concatenate([ages(60), [30.5, 31.5, 31.0]])  # float ages too
    pairs = sample_pairs(a, year_diff=3, data_size=0, seed=1)
    brute = {frozenset((i, j)) for i, j in itertools.combinations(range(len(a)), 2) if abs(a[i] - a[j]) >= 3}
    assert len(pairs) == len(brute) == count_pairs(a, 3)
    assert set(unordered(pairs)) == brute
    labels = pair_labels(a, pairs)
    assert 0.4 < labels.mean() < 0.6  # the order of each pair is a fair coin
    assert np.array_equal(labels, (a[pairs[:, 0]] > a[pairs[:, 1]]).astype(np.float32))


def test_sampled_pairs_respect_gap_size_and_are_distinct():
    a = ages(300)
    pairs = sample_pairs(a, year_diff=5, data_size=500, seed=0)
    assert pairs.shape == (500, 2)
    assert np.all(np.abs(a[pairs[:, 0]] - a[pairs[:, 1]]) >= 5)
    assert len(set(unordered(pairs))) == 500
    assert sample_pairs(a, year_diff=5, data_size=10**9, seed=0).shape[0] == count_pairs(a, 5)  # capped at all


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_duplicate_probability_adds_swapped_pairs(p):
    a = ages(400)
    base = 4000
    pairs = sample_pairs(a, year_diff=1, data_size=base, duplicate_probability=p, seed=2)
    combos = unordered(pairs)
    n_dup = len(combos) - len(set(combos))
    assert len(pairs) == base + n_dup
    assert abs(n_dup / base - p) < 0.03
    seen: dict[frozenset, tuple] = {}
    for row, key in zip(map(tuple, pairs.tolist()), combos):
        if key in seen:
            assert row == seen[key][::-1]  # a duplicate is the same pair swapped
        seen[key] = row


def test_unique_images_use_each_image_once():
    a = ages(500, seed=3)
    pairs = sample_pairs(a, year_diff=2, data_size=0, unique_images=True, seed=0)
    flat = pairs.ravel().tolist()
    assert len(flat) == len(set(flat))
    assert np.all(np.abs(a[pairs[:, 0]] - a[pairs[:, 1]]) >= 2)
    assert len(pairs) >= 0.45 * len(a)  # nearly everyone finds a partner
    limited = sample_pairs(a, year_diff=2, data_size=30, unique_images=True, seed=0)
    assert len(limited) == 30 and len(set(limited.ravel().tolist())) == 60
    dup = sample_pairs(a, year_diff=2, data_size=50, unique_images=True, duplicate_probability=1.0, seed=0)
    assert len(dup) == 100 and len(set(unordered(dup))) == 50


def test_same_seed_same_pairs():
    a = ages(200)
    for unique in (False, True):
        kw = dict(year_diff=1, data_size=300, duplicate_probability=0.2, unique_images=unique)
        assert np.array_equal(sample_pairs(a, seed=5, **kw), sample_pairs(a, seed=5, **kw))
        assert not np.array_equal(sample_pairs(a, seed=5, **kw), sample_pairs(a, seed=6, **kw))


def test_edge_cases_and_bad_arguments():
    assert sample_pairs([30.0] * 10, year_diff=1).shape == (0, 2)  # nobody differs
    assert sample_pairs([30.0] * 10, year_diff=1, unique_images=True).shape == (0, 2)
    assert sample_pairs([], year_diff=1).shape == (0, 2)
    with pytest.raises(ValueError, match="year_diff"):
        sample_pairs(ages(5), year_diff=0)
    with pytest.raises(ValueError, match="duplicate_probability"):
        sample_pairs(ages(5), duplicate_probability=1.5)


def test_large_sets_are_sampled_not_enumerated():
    a = ages(20_000)  # ~2e8 candidate pairs: listing them would take seconds and gigabytes
    start = time.perf_counter()
    pairs = sample_pairs(a, year_diff=1, data_size=100_000, seed=0)
    assert time.perf_counter() - start < 2.0
    assert pairs.shape == (100_000, 2) and np.all(np.abs(a[pairs[:, 0]] - a[pairs[:, 1]]) >= 1)


def test_pair_csv_round_trip(tmp_path):
    images = tmp_path / "faces"
    images.mkdir()
    rows = [(str(images / "a b.jpg"), str(images / "c.jpg"), 1), (str(images / "c.jpg"), str(images / "é.jpg"), None)]
    csv_path = tmp_path / "sets" / "pairs.csv"
    assert write_pair_csv(csv_path, rows) == 2
    text = csv_path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "left,right,label" and text[1].startswith("../faces/")  # relative to the CSV's folder
    back = read_pair_csv(csv_path)
    assert [(r.left, r.right, r.label) for r in back] == [(str(images / "a b.jpg"), str(images / "c.jpg"), 1), (str(images / "c.jpg"), str(images / "é.jpg"), None)]
    assert [r.row for r in back] == [1, 2]
    raw = read_pair_csv(csv_path, resolve=False)
    assert raw[0].left == "../faces/a b.jpg"


def test_pair_csv_without_header_and_malformed_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x.jpg,y.jpg\n\nx.jpg\nx.jpg,y.jpg,maybe\n/abs/z.jpg,y.jpg,0\n")
    rows = read_pair_csv(path, strict=False)
    assert [r.row for r in rows] == [1, 2, 3, 4]
    assert rows[0] == PairRow(str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg"), None, 1)
    assert "expected 'left,right[,label]'" in rows[1].error
    assert "label must be 0 or 1" in rows[2].error
    assert rows[3].left == "/abs/z.jpg" and rows[3].label == 0
    with pytest.raises(ValueError, match="row 2"):
        read_pair_csv(path)


def make_module(root, **kw) -> PairDataModule:
    dm = PairDataModule(
        dataset="utkface", root=str(root), split=SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0),
        pairs=PairConfig(seed=0, year_diff=1, data_size=300), eval_pairs=PairConfig(seed=0, year_diff=1, data_size=60),
        batch_size=8, num_workers=0, augment=None, **kw,
    )
    dm.input_config = INPUT_CONFIG
    return dm


def test_datamodule_pairs_stay_inside_their_split(utkface_tree, tmp_path, capsys):
    dm = make_module(utkface_tree)
    dm.setup()
    used = {}
    for name, ds in dm.datasets.items():
        assert len(ds) > 0
        paths = {ds.records[i].path for i in ds.pairs.ravel().tolist()}
        assert paths <= {r.path for r in dm.subset(name)}
        used[name] = paths
        for i, (left, right) in enumerate(ds.pairs.tolist()[:50]):
            assert ds.labels[i] == float(ds.records[left].age > ds.records[right].age)
            assert abs(ds.records[left].age - ds.records[right].age) >= 1
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
    assert len(dm.datasets["train"]) == 300

    again = make_module(utkface_tree)
    again.setup()
    for name in dm.datasets:
        assert np.array_equal(dm.datasets[name].pairs, again.datasets[name].pairs)

    batch = next(iter(dm.train_dataloader()))
    assert batch["left"].shape == batch["right"].shape == (8, 3, 32, 32)
    assert set(batch["label"].tolist()) <= {0.0, 1.0} and batch["age_left"].shape == (8,)


def test_datamodule_fixed_pair_file(utkface_tree, tmp_path):
    files = sorted(utkface_tree.iterdir())
    csv_path = tmp_path / "val_pairs.csv"
    write_pair_csv(csv_path, [(str(files[0]), str(files[1]), 1), (str(files[2]), str(files[3]), None), (str(files[4]), str(files[5]), 0)])
    dm = make_module(utkface_tree, pair_files={"val": str(csv_path)})
    dm.setup("validate")
    val = dm.datasets["val"]
    assert len(val) == 3 and val.labels[0] == 1.0 and val.labels[2] == 0.0
    ages_by_name = {f.name: int(f.name.split("_")[0]) for f in files}
    assert val.labels[1] == float(ages_by_name[files[2].name] > ages_by_name[files[3].name])  # from the dataset's ages
    with pytest.raises(ValueError, match="pair_files keys"):
        make_module(utkface_tree, pair_files={"dev": str(csv_path)})


def test_unreadable_image_drops_only_its_pairs(utkface_tree):
    dm = make_module(utkface_tree, cache_images=False)
    dm.setup("fit")
    ds = dm.datasets["train"]
    victim = ds.records[int(ds.pairs[0, 0])].path
    open(victim, "wb").write(b"not an image")
    assert ds[0] is None  # dropped by collate_skip_none
    other = next(i for i, (l, r) in enumerate(ds.pairs.tolist()) if victim not in (ds.records[l].path, ds.records[r].path))
    assert ds[other] is not None
    assert "not an image" in ds.faces.failed[victim]
