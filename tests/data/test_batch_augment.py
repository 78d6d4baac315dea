"""Batch augmentation: per-face parameters, seeded per batch, no change when every strength is zero."""

from __future__ import annotations

import torch

from faceage.data.batch_augment import BatchAugment
from faceage.data.transforms import AugmentConfig

CONFIG = {"image_size": 32, "crop": 0.8, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
NONE = AugmentConfig(hflip=False, rotation=0, translate=0, scale=0, color_jitter=0, grayscale=0)


def chips(n=8, side=40):
    return torch.randint(0, 256, (n, 3, side, side), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_without_augmentation_it_is_the_central_crop_normalised():
    x = chips()
    out = BatchAugment(CONFIG, NONE)(x, seed=0)
    assert out.shape == (8, 3, 32, 32)
    expected = (x[:, :, 4:36, 4:36].float() / 255 - 0.5) / 0.25  # 32 of 40 px: the crop lands on whole pixels
    assert torch.allclose(out, expected, atol=1e-4)


def test_seeded_by_batch_and_different_per_face():
    aug = BatchAugment(CONFIG, AugmentConfig())
    x = chips(1).expand(6, -1, -1, -1).contiguous()  # one face six times
    a, b, c = aug(x, seed=1), aug(x, seed=1), aug(x, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a[0], a[1])  # each face draws its own parameters


def test_flip_mirrors_and_greyscale_equalises_channels():
    x = chips(64)
    flipped = BatchAugment(CONFIG, AugmentConfig(hflip=True, rotation=0, translate=0, scale=0, color_jitter=0, grayscale=0))(x, seed=3)
    plain = BatchAugment(CONFIG, NONE)(x, seed=3)
    mirrored = [i for i in range(64) if torch.allclose(flipped[i], plain[i].flip(-1), atol=1e-4)]
    same = [i for i in range(64) if torch.allclose(flipped[i], plain[i], atol=1e-4)]
    assert len(mirrored) + len(same) == 64 and 20 < len(mirrored) < 44
    grey = BatchAugment({**CONFIG, "std": [1, 1, 1], "mean": [0, 0, 0]},
                        AugmentConfig(hflip=False, rotation=0, translate=0, scale=0, color_jitter=0, grayscale=1.0))(x, seed=0)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_wrong_chip_size_is_refused():
    import pytest

    with pytest.raises(ValueError, match="expects 40x40 chips"):
        BatchAugment(CONFIG, NONE)(chips(side=36), seed=0)
