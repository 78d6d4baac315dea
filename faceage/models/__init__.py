"""Backbones, age heads and the models built from them."""

from faceage.models.age_model import AgeModel, load_model
from faceage.models.backbones import BACKBONES, create_backbone
from faceage.models.heads import HEADS, create_head

__all__ = ["AgeModel", "BACKBONES", "HEADS", "create_backbone", "create_head", "load_model"]
