"""Splits and folds: disjoint, complete, stratified by age, subject-exclusive, reproducible, saved by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceage.data.records import FaceRecord
from faceage.data.splits import fold_split, kfold_records, leave_one_subject_out, load_split, save_split, split_records


def make_records(n: int = 2000, seed: int = 1, root: str = "/data/faces") -> list[FaceRecord]:
    """Ages skewed young like UTKFace (many children, a long old tail)."""
    rng = np.random.default_rng(seed)
    ages = np.clip(np.concatenate([rng.integers(1, 10, n * 3 // 10), rng.gamma(6, 6, n - n * 3 // 10)]), 0, 110)
    rng.shuffle(ages)
    return [FaceRecord(path=f"{root}/{i:05d}.jpg", age=float(int(a))) for i, a in enumerate(ages)]


def make_subject_records(n_subjects: int = 150, seed: int = 2) -> list[FaceRecord]:
    """FG-NET-like: each subject photographed 1..20 times around its own age."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_subjects):
        base = rng.integers(0, 70)
        for k in range(int(rng.integers(1, 21))):
            age = float(min(base + rng.integers(0, 10), 110))
            records.append(FaceRecord(path=f"/data/fgnet/{s:03d}A{k:02d}.jpg", age=age, subject=f"{s:03d}"))
    order = rng.permutation(len(records))  # subjects interleaved, as a reader sorted by path would not give
    return [records[i] for i in order]


def age_histogram(records, indices) -> np.ndarray:
    ages = np.array([records[i].age for i in indices])
    counts = np.histogram(ages, bins=[0, 10, 20, 30, 40, 50, 60, 121])[0]
    return counts / counts.sum()


def assert_partition(split: dict, n: int) -> None:
    all_indices = [i for idx in split.values() for i in idx]
    assert sorted(all_indices) == list(range(n))  # complete and disjoint
    for idx in split.values():
        assert idx == sorted(idx)


def subjects_of(records, indices) -> set:
    return {records[i].subject for i in indices}


def test_split_is_a_stratified_partition_with_requested_sizes():
    records = make_records()
    split = split_records(records, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert set(split) == {"train", "val", "test"}
    assert_partition(split, len(records))
    assert abs(len(split["val"]) - 200) <= 1 and abs(len(split["test"]) - 400) <= 1
    whole = age_histogram(records, range(len(records)))
    for name, idx in split.items():
        assert np.abs(age_histogram(records, idx) - whole).max() < 0.02, name
        assert abs(np.mean([records[i].age for i in idx]) - np.mean([r.age for r in records])) < 1.0, name


def test_stratification_beats_chance_on_a_small_dataset():
    records = make_records(200, seed=5)
    whole = age_histogram(records, range(len(records)))
    split = split_records(records, 0.2, 0.2, seed=3)
    unstratified = split_records(records, 0.2, 0.2, seed=3, stratify=False)
    assert_partition(unstratified, len(records))
    err = max(np.abs(age_histogram(records, split[k]) - whole).max() for k in ("val", "test"))
    assert err < 0.06


def test_split_is_deterministic_per_seed():
    records = make_records(500)
    assert split_records(records, seed=7) == split_records(records, seed=7)
    assert split_records(records, seed=7) != split_records(records, seed=8)


def test_zero_fractions_give_empty_splits():
    records = make_records(300)
    split = split_records(records, val_fraction=0.0, test_fraction=0.25)
    assert split["val"] == [] and abs(len(split["test"]) - 75) <= 1
    split = split_records(records, val_fraction=0.0, test_fraction=0.0)
    assert split == {"train": list(range(300)), "val": [], "test": []}


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0), (0.2, 0.9)])
def test_bad_fractions_raise(val, test):
    with pytest.raises(ValueError, match="fraction"):
        split_records(make_records(50), val_fraction=val, test_fraction=test)


def test_tiny_and_empty_inputs():
    assert split_records([]) == {"train": [], "val": [], "test": []}
    records = make_records(3)
    assert_partition(split_records(records), 3)
    unknown = [FaceRecord(path=f"/x/{i}.jpg", age=None) for i in range(10)] + make_records(20)
    assert_partition(split_records(unknown, 0.2, 0.2), 30)


def test_subject_exclusive_split():
    records = make_subject_records()
    split = split_records(records, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert_partition(split, len(records))
    train, val, test = (subjects_of(records, split[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    for name in ("val", "test"):
        assert abs(len(split[name]) / len(records) - 0.15) < 0.03, name
        mean = np.mean([records[i].age for i in split[name]])
        assert abs(mean - np.mean([r.age for r in records])) < 5.0, name
    # "auto" turns grouping on; False turns it off (and subjects then leak)
    assert split == split_records(records, 0.15, 0.15, seed=0, subject_exclusive=True)
    loose = split_records(records, 0.15, 0.15, seed=0, subject_exclusive=False)
    assert subjects_of(records, loose["train"]) & subjects_of(records, loose["test"])


def test_kfold_covers_every_index_once_and_is_stratified():
    records = make_records(1000)
    folds = kfold_records(records, n_folds=5, seed=0)
    assert len(folds) == 5
    assert sorted(i for f in folds for i in f) == list(range(1000))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    whole = age_histogram(records, range(1000))
    for fold in folds:
        assert np.abs(age_histogram(records, fold) - whole).max() < 0.02
    assert folds == kfold_records(records, n_folds=5, seed=0)
    assert folds != kfold_records(records, n_folds=5, seed=1)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_records(records[:3], n_folds=5)


def test_kfold_groups_subjects():
    records = make_subject_records()
    folds = kfold_records(records, n_folds=5, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(len(records)))
    fold_subjects = [subjects_of(records, f) for f in folds]
    for a in range(5):
        for b in range(a + 1, 5):
            assert not fold_subjects[a] & fold_subjects[b]
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 20  # at most about one subject's worth of images apart


def test_leave_one_subject_out():
    records = make_subject_records(30)
    folds = leave_one_subject_out(records)
    assert len(folds) == 30
    assert sorted(i for f in folds for i in f) == list(range(len(records)))
    assert all(len(subjects_of(records, f)) == 1 for f in folds)
    with pytest.raises(ValueError, match="subject"):
        leave_one_subject_out(records + [FaceRecord(path="/x.jpg", age=3.0)])


def test_fold_split():
    records = make_subject_records()
    folds = kfold_records(records, n_folds=4, seed=0)
    split = fold_split(records, folds, fold=2, val_fraction=0.1, seed=0)
    assert split["test"] == sorted(folds[2])
    assert_partition(split, len(records))
    assert not subjects_of(records, split["train"]) & subjects_of(records, split["val"])
    assert abs(len(split["val"]) / (len(records) - len(folds[2])) - 0.1) < 0.04
    with pytest.raises(ValueError, match="fold"):
        fold_split(records, folds, fold=4)


def test_save_load_round_trip(tmp_path):
    records = make_records(300, root=str(tmp_path / "faces"))
    split = split_records(records, seed=4)
    path = tmp_path / "split.json"
    save_split(split, path, records)
    assert load_split(path, records) == split
    saved = json.loads(path.read_text())
    assert saved["splits"]["test"]["paths"][0] == records[split["test"][0]].path.rsplit("/", 1)[1]
    # a re-read list in another order maps by path, not by position
    shuffled = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    loaded = load_split(path, shuffled)
    for name in split:
        assert sorted(shuffled[i].path for i in loaded[name]) == sorted(records[i].path for i in split[name])
    # the whole dataset moved elsewhere still matches
    moved = [FaceRecord(path=r.path.replace(str(tmp_path), "/mnt/elsewhere"), age=r.age) for r in records]
    assert load_split(path, moved) == split


def test_save_split_replaces_the_file_whole(tmp_path, monkeypatch):
    # another DDP rank may read the split while rank 0 writes it: it must see the old file or the new one, never half
    records = make_records(100, root=str(tmp_path / "faces"))
    old, new = split_records(records, seed=0), split_records(records, seed=1)
    path = tmp_path / "split.json"
    save_split(old, path, records)
    seen = []
    write_text = Path.write_text

    def checked_write(self, *args, **kwargs):
        seen.append(load_split(path, records))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", checked_write)
    save_split(new, path, records)
    assert seen == [old]
    assert load_split(path, records) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.json"]


def test_load_split_detects_a_changed_folder(tmp_path):
    records = make_records(100, root=str(tmp_path / "faces"))
    split = split_records(records, seed=0)
    path = tmp_path / "split.json"
    save_split(split, path, records)
    lost = records[split["val"][0]]
    fewer = [r for r in records if r is not lost]
    with pytest.raises(ValueError, match=lost.path.rsplit("/", 1)[1]):
        load_split(path, fewer)
    more = records + [FaceRecord(path=str(tmp_path / "faces" / "new.jpg"), age=30.0)]
    with pytest.warns(UserWarning, match="1 record"):
        assert load_split(path, more) == split
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a faceage split"):
        load_split(path, records)
    path.write_text('{"format": "faceage-split", "splits": {"train"')  # cut short
    with pytest.raises(ValueError, match="split.json: not a faceage split file \\(invalid JSON"):
        load_split(path, records)
