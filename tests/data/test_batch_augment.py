"""Batch augmentation: per-face parameters, seeded per batch, no change when every strength is zero."""

from __future__ import annotations

from dataclasses import replace

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


def _pixels(aug: AugmentConfig, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Augmented faces back in [0, 1] (undoing the normalisation)."""
    return BatchAugment(CONFIG, aug)(x, seed=seed) * 0.25 + 0.5


def test_photo_effects_each_do_what_they_say():
    from dataclasses import replace

    x = chips(16)
    plain = _pixels(NONE, x)
    sepia = _pixels(replace(NONE, sepia=1.0), x)
    assert (sepia[:, 0] >= sepia[:, 1] - 1e-5).all() and (sepia[:, 1] >= sepia[:, 2] - 1e-5).all()  # warm tone: R >= G >= B
    # blur and low resolution smooth the noise chips: neighbouring pixels come closer
    for effect in ("blur", "low_res"):
        out = _pixels(replace(NONE, **{effect: 1.0}), x)
        assert out.diff(dim=-1).abs().mean() < 0.8 * plain.diff(dim=-1).abs().mean(), effect
    jpeg = _pixels(replace(NONE, jpeg=1.0), x)
    assert not torch.allclose(jpeg, plain, atol=1e-3) and (jpeg - plain).abs().mean() < 0.25
    cast = _pixels(replace(NONE, color_cast=0.2), x)
    ratio = (cast.mean(dim=(2, 3)) / plain.mean(dim=(2, 3)).clamp(min=1e-3))
    assert ratio.min() > 0.75 and ratio.max() < 1.25 and ratio.std() > 0.01
    grain = _pixels(replace(NONE, noise=1.0), x)
    assert 0.003 < (grain - plain).abs().mean() < 0.06


def test_photo_effects_apply_to_the_chosen_share_and_are_seeded():
    from dataclasses import replace

    x = chips(64)
    aug = replace(NONE, sepia=0.25)
    a, b = _pixels(aug, x, seed=5), _pixels(aug, x, seed=5)
    assert torch.equal(a, b)
    changed = ((a - _pixels(NONE, x)).abs().flatten(1).max(dim=1).values > 1e-4).float().mean()
    assert 0.1 < changed < 0.45


def test_erasing_hides_one_rectangle_of_each_chosen_face():
    x = torch.full((200, 3, 40, 40), 128, dtype=torch.uint8)  # flat grey faces: any change is the erased rectangle
    plain = BatchAugment(CONFIG, NONE)(x, seed=0)
    out = BatchAugment(CONFIG, replace(NONE, erasing=0.5))(x, seed=3)
    changed = (out != plain).any(1)  # (B, 32, 32) pixels that changed
    hit = changed.flatten(1).any(1)
    assert 0.35 < hit.float().mean() < 0.65  # about half the faces
    for face in changed[hit]:
        rows, cols = face.any(1).nonzero().flatten(), face.any(0).nonzero().flatten()
        box = face[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.float().mean() > 0.95  # one filled rectangle (noise may equal grey in a few pixels)
        assert 0.01 < box.numel() / face.numel() <= 0.34  # 2-33% of the face, as torchvision's RandomErasing
    again = BatchAugment(CONFIG, replace(NONE, erasing=0.5))(x, seed=3)
    assert torch.equal(out, again)  # seeded by the batch like every other parameter
