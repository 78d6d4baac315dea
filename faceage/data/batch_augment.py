"""Training augmentation on whole batches: one affine resampling and a few tensor ops for 64 faces at once.

Per-sample augmentation costs more than the network on 2 CPU cores: torchvision's ``RandomAffine`` +
``ColorJitter`` on one 71-px chip take about 2.3 ms (the hue step converts every pixel to HSV), so a batch of 64
costs ~150 ms of a core beside a ~250 ms forward + backward; kornia's batched version measured 90 ms a batch here
(its jitter goes through HSV too). torchvision's v2 transforms applied to a batch draw one set of parameters for the
whole batch. So this module draws parameters per face and applies them as batch tensor ops, written by hand:

- geometry: rotation, scale, translation and the horizontal flip compose into one 2x3 matrix per face, and a
  single ``affine_grid`` + ``grid_sample`` maps the cached ``T x T`` chip (:func:`faceage.data.transforms.
  train_chip_size`) straight to the ``S x S`` central crop the network sees;
- colour: brightness, contrast and saturation as torchvision defines them (multiply; blend with the mean grey;
  blend with the greyscale image), a hue rotation in YIQ space (a 3x3 matrix per face: the classic linear
  approximation of an HSV hue shift), and random greyscale;
- photo effects (sepia, blur, low resolution, JPEG re-compression, colour cast, grain), each on a random subset of
  the batch, with one strength per batch for the blur and resolution (one kernel, one resize) and per face for the
  rest;
- normalisation with the model's mean/std.

Randomness comes from a ``torch.Generator`` seeded by the batch's first item seed (a function of training seed,
epoch and position, see :class:`faceage.data.datasets.EpochSampler`), so a resumed run draws the same augmentation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceage.data.transforms import AugmentConfig, train_chip_size

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_GREY = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
# the classic sepia matrix (rows: output R, G, B from input R, G, B)
_SEPIA = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


class BatchAugment(torch.nn.Module):
    """``(B, 3, T, T)`` uint8 chips -> ``(B, 3, S, S)`` augmented, normalised float images.

    Args:
        input_config: the model's input config (``image_size``, ``crop``, ``mean``, ``std``).
        augment: the same :class:`AugmentConfig` the per-sample path reads; ``erasing`` hides one rectangle of each
            chosen face (torchvision's ``RandomErasing`` ranges: 2-33% of the face, aspect 0.3-3.3) behind noise.
    """

    def __init__(self, input_config: dict, augment: AugmentConfig | None = None) -> None:
        super().__init__()
        self.aug = augment or AugmentConfig()
        self.size = int(input_config["image_size"])
        self.full = train_chip_size(input_config)
        self.register_buffer("mean", torch.tensor(list(input_config["mean"]), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(input_config["std"]), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _theta(self, n: int, g: torch.Generator) -> torch.Tensor:
        a = self.aug

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=g)

        angle = uniform(-a.rotation, a.rotation) * (math.pi / 180)
        scale = uniform(1 - a.scale, 1 + a.scale)
        tx, ty = uniform(-a.translate, a.translate) * 2, uniform(-a.translate, a.translate) * 2  # normalised [-1, 1] units
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if a.hflip else torch.ones(n)
        # output pixel (normalised to the S crop) -> input position (normalised to the T chip): crop, then inverse affine
        crop = self.size / self.full
        cos, sin = torch.cos(angle), torch.sin(angle)
        m = torch.zeros(n, 2, 3)
        m[:, 0, 0], m[:, 0, 1] = cos * crop / scale * flip, -sin * crop / scale
        m[:, 1, 0], m[:, 1, 1] = sin * crop / scale * flip, cos * crop / scale
        m[:, 0, 2], m[:, 1, 2] = -tx, -ty
        return m

    def _colour(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c = len(x), self.aug.color_jitter
        grey = _GREY.to(x).view(1, 3, 1, 1)
        if c:
            def factor() -> torch.Tensor:
                return (1 - c + 2 * c * torch.rand(n, generator=g)).to(x).view(n, 1, 1, 1)

            x = (x * factor()).clamp(0, 1)  # brightness
            mean = (x * grey).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            f = factor()
            x = (f * x + (1 - f) * mean).clamp(0, 1)  # contrast
            f = factor()
            x = (f * x + (1 - f) * (x * grey).sum(1, keepdim=True)).clamp(0, 1)  # saturation
            hue = min(0.05, c / 4)
            if hue:
                theta = (2 * torch.rand(n, generator=g) - 1) * hue * 2 * math.pi
                rot = torch.zeros(n, 3, 3)
                rot[:, 0, 0] = 1
                rot[:, 1, 1], rot[:, 1, 2] = torch.cos(theta), -torch.sin(theta)
                rot[:, 2, 1], rot[:, 2, 2] = torch.sin(theta), torch.cos(theta)
                mat = (_YIQ_TO_RGB @ rot @ _RGB_TO_YIQ).to(x)
                x = torch.einsum("nij,njhw->nihw", mat, x).clamp(0, 1)
        if self.aug.grayscale:
            pick = (torch.rand(n, generator=g) < self.aug.grayscale).to(x).view(n, 1, 1, 1)
            x = pick * (x * grey).sum(1, keepdim=True).expand_as(x) + (1 - pick) * x
        return x

    def _photo(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Photo effects on ``(B, 3, S, S)`` images in [0, 1]."""
        a, n = self.aug, len(x)

        def chosen(p: float) -> torch.Tensor:
            return torch.rand(n, generator=g) < p

        def uniform(lo: float, hi: float, size: int = 1) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(size, generator=g)

        if a.color_cast:
            gains = 1 + a.color_cast * (2 * torch.rand(n, 3, generator=g) - 1)
            x = (x * gains.to(x).view(n, 3, 1, 1)).clamp(0, 1)
        if a.sepia:
            pick = chosen(a.sepia).to(x).view(n, 1, 1, 1)
            sepia = torch.einsum("ij,njhw->nihw", _SEPIA.to(x), x).clamp(0, 1)
            x = pick * sepia + (1 - pick) * x
        if a.low_res and (pick := chosen(a.low_res)).any():
            side = max(8, int(self.size * float(uniform(0.3, 0.7))))
            small = F.interpolate(x[pick], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            x = x.clone()
            x[pick] = F.interpolate(small, size=(self.size, self.size), mode="bilinear", align_corners=False).clamp(0, 1)
        if a.blur and (pick := chosen(a.blur)).any():
            from torchvision.transforms.v2.functional import gaussian_blur

            sigma = float(uniform(0.4, 1.5))
            x = x.clone()
            x[pick] = gaussian_blur(x[pick], [5, 5], [sigma, sigma])
        if a.noise and (pick := chosen(a.noise)).any():
            sigma = uniform(0.01, 0.05, n).to(x).view(n, 1, 1, 1)
            grain = torch.randn(x.shape, generator=g).to(x) * sigma
            x = torch.where(pick.to(x.device).view(n, 1, 1, 1), (x + grain).clamp(0, 1), x)
        if a.jpeg and (pick := chosen(a.jpeg)).any():
            from torchvision.transforms.v2.functional import jpeg

            x = x.clone()
            quality = int(uniform(20, 70))
            x[pick] = jpeg((x[pick] * 255).round().to(torch.uint8).cpu(), quality=quality).to(x) / 255
        return x

    def forward(self, chips: torch.Tensor, seed: int) -> torch.Tensor:
        if chips.shape[-1] != self.full or chips.shape[-2] != self.full:
            raise ValueError(f"batch augmentation expects {self.full}x{self.full} chips, got {tuple(chips.shape[-2:])}")
        g = torch.Generator().manual_seed(int(seed))
        x = chips.float().div_(255)
        theta = self._theta(len(x), g).to(x)
        grid = F.affine_grid(theta, [len(x), 3, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = self._colour(x, g)
        if self.aug.photo_effects():
            x = self._photo(x, g)
        if self.aug.erasing:
            x = self._erase(x, g)
        return (x - self.mean) / self.std

    def _erase(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A hand, a cup or another head in front of the face: with probability ``erasing`` one rectangle per face,
        each its own size, shape and place, filled with uniform noise. Written out because torchvision's
        ``RandomErasing`` draws one rectangle for a whole batch."""
        n, _, h, w = x.shape
        area = h * w * (0.02 + 0.31 * torch.rand(n, generator=g))
        aspect = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * torch.rand(n, generator=g))
        eh = (area * aspect).sqrt().clamp(1, h)
        ew = (area / aspect).sqrt().clamp(1, w)
        top = (h - eh) * torch.rand(n, generator=g)
        left = (w - ew) * torch.rand(n, generator=g)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        mask = (inside & (torch.rand(n, generator=g) < self.aug.erasing).view(n, 1, 1)).unsqueeze(1).to(x.device)
        return torch.where(mask, torch.rand(x.shape, generator=g).to(x), x)
