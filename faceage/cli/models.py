"""``faceage models``: the registered backbones and heads."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from faceage.models import BACKBONES, HEADS

    print("backbones:", ", ".join(BACKBONES.names()), "(or any timm model name)")
    print("heads:", ", ".join(HEADS.names()))
    return 0
