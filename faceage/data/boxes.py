"""Box geometry shared by the detectors and the video tracker."""

from __future__ import annotations


def intersection(a, b) -> float:
    """Area shared by two ``(left, top, right, bottom)`` boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def iou(a, b) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    inter = intersection(a, b)
    if inter == 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
