"""The decoded-chip cache: built once, reused, rebuilt when a file's content changes, bad files reported."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceage.data.chips import chip_array
from faceage.data.datasets import FaceDataset
from faceage.data.images import load_image
from faceage.data.records import FaceRecord
from faceage.data.transforms import build_eval_transform, build_train_chip_transform, train_chip_size

CONFIG = {"image_size": 24, "crop": 0.8, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def faces(root, n=6):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"{20 + i}_0_0_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(path, quality=95)
        paths.append(str(path))
    return paths


def test_eval_chips_equal_the_uncached_transform(tmp_path):
    paths = faces(tmp_path / "img")
    tf = build_eval_transform(CONFIG)
    ds = FaceDataset([FaceRecord(p, 30.0) for p in paths], tf, cache="disk", cache_dir=str(tmp_path / "cache"))
    ds.preload()
    for i, p in enumerate(paths):
        assert np.array_equal(ds[i]["image"].numpy(), tf(load_image(p)).numpy())


def test_built_once_then_reused_and_rebuilt_on_new_content(tmp_path):
    paths = faces(tmp_path / "img")
    tf = build_train_chip_transform(CONFIG)
    cache = tmp_path / "cache"
    chips, failed = chip_array(paths, tf.static, tf.key, folder=cache)
    assert chips.shape == (6, train_chip_size(CONFIG), train_chip_size(CONFIG), 3) == (6, 30, 30, 3) and not failed
    assert isinstance(chips, np.memmap)
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 1
    again, _ = chip_array(paths, tf.static, tf.key, folder=cache)
    assert sorted(cache.glob("*.npy")) == files and np.array_equal(again, chips)
    # same name, new pixels: another key, another array; a different resolution too
    Image.new("RGB", (50, 50), (10, 200, 30)).save(paths[2], quality=95)
    changed, _ = chip_array(paths, tf.static, tf.key, folder=cache)
    assert len(list(cache.glob("*.npy"))) == 2
    assert np.array_equal(changed[0], chips[0]) and not np.array_equal(changed[2], chips[2])
    assert abs(int(changed[2, 15, 15, 1]) - 200) <= 3
    other = build_train_chip_transform({**CONFIG, "image_size": 32})
    chip_array(paths, other.static, other.key, folder=cache)
    assert len(list(cache.glob("*.npy"))) == 3
    assert not list(cache.glob(".*tmp"))  # no temporary file left behind


def test_unreadable_files_are_reported_and_skipped(tmp_path):
    paths = faces(tmp_path / "img", n=4)
    (tmp_path / "img" / "bad.jpg").write_bytes(b"not a jpeg")
    paths.append(str(tmp_path / "img" / "bad.jpg"))
    ds = FaceDataset([FaceRecord(p, 30.0) for p in paths], build_train_chip_transform(CONFIG), cache="disk",
                     cache_dir=str(tmp_path / "cache"))
    ds.preload()
    assert list(ds.failed) == [paths[-1]] and "not an image" in ds.failed[paths[-1]]
    assert ds[4] is None and ds[0]["image"].shape == (3, 30, 30)
    # a reopened cache remembers the problem without decoding again
    ds2 = FaceDataset(ds.records, build_train_chip_transform(CONFIG), cache="disk", cache_dir=str(tmp_path / "cache"))
    ds2.preload()
    assert ds2.failed == ds.failed and ds2[4] is None


def test_unknown_cache_mode_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cache must be 'none', 'memory' or 'disk'"):
        FaceDataset([], build_eval_transform(CONFIG), cache="ram")
