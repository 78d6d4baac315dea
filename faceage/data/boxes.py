"""Box geometry shared by the detectors, the video tracker and the choice of a photo's labelled face."""

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


def middle_face(faces: list, size: tuple[int, int]) -> object | None:
    """The face of a photo labelled for one face in its middle (FairFace's convention, and a centred crop's): the face
    whose box holds the photo's centre, the one whose box centre is nearest where several do.

    Args:
        faces: objects with a ``box`` ``(left, top, right, bottom)`` (a detector's ``Face``, a ``FaceResult``).
        size: the photo's ``(width, height)``.

    Returns:
        That face, or ``None`` when no box holds the centre.
    """
    cx, cy = size[0] / 2, size[1] / 2
    holding = [(abs((f.box[0] + f.box[2]) / 2 - cx) + abs((f.box[1] + f.box[3]) / 2 - cy), i)
               for i, f in enumerate(faces) if f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]]
    return faces[min(holding)[1]] if holding else None
