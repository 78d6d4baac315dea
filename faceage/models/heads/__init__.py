"""Age heads, chosen by name: ``create_head("coral", in_features=512)``; ``HEADS.names()`` lists them."""

from faceage.models.heads import classification, ordinal, regression  # noqa: F401  (fills the registry)
from faceage.models.heads.base import HEADS, AgeHead, create_head

__all__ = ["HEADS", "AgeHead", "create_head"]
