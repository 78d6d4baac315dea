"""Draws face boxes and ages onto a copy of the image (``faceage predict --annotate``)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from faceage.inference.predictor import FaceResult


def label(face: FaceResult, numbered: bool = False) -> str:
    """``"28 (21-36) F"``; ``numbered``: ``"#1 28 (21-36) F"`` (face number = ``face.face + 1``, as in the app's table)."""
    text = f"{face.age:.0f}"
    if numbered:
        text = f"#{face.face + 1} {text}"
    if face.interval is not None:
        text += f" ({face.age_low:.0f}-{face.age_high:.0f})"
    if face.gender:
        text += f" {face.gender[0].upper()}"
    return text


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def annotate(image: Image.Image, faces: list[FaceResult], numbered: bool = False) -> Image.Image:
    """Returns a copy of ``image`` with each face's box and label drawn (``numbered``: the label starts with the
    face number ``#1``, ``#2``, ... so that it can be matched to a table or JSON answer).

    The label sits above the box, else below it, else (a box filling the image, as with ``detect=False``) inside
    its top-left corner; it is shifted left to stay on the image.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = _font(max(12, out.width // 40))
    width = max(2, out.width // 300)
    for face in faces:
        left, top, right, bottom = face.box
        right, bottom = max(left, min(right, out.width) - 1), max(top, min(bottom, out.height) - 1)  # inclusive corners
        draw.rectangle((left, top, right, bottom), outline=(255, 40, 40), width=width)
        text = label(face, numbered)
        tb = draw.textbbox((0, 0), text, font=font)
        label_w, label_h = tb[2] - tb[0] + 2 * width, tb[3] - tb[1] + 2 * width
        if top - label_h >= 0:
            y = top - label_h
        elif bottom + 1 + label_h <= out.height:
            y = bottom + 1
        else:
            y = top + width
        x = max(0, min(left, out.width - label_w))
        draw.rectangle((x, y, x + label_w - 1, y + label_h - 1), fill=(255, 40, 40))
        draw.text((x + width - tb[0], y + width - tb[1]), text, fill=(255, 255, 255), font=font)
    return out


def number_image(image: Image.Image, number: int) -> Image.Image:
    """A copy of ``image`` with ``number`` in a red box in its top-left corner (the face number on each heatmap)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = _font(max(12, out.width // 8))
    text = str(number)
    tb = draw.textbbox((0, 0), text, font=font)
    pad = max(2, out.width // 100)
    draw.rectangle((0, 0, tb[2] - tb[0] + 2 * pad - 1, tb[3] - tb[1] + 2 * pad - 1), fill=(255, 40, 40))
    draw.text((pad - tb[0], pad - tb[1]), text, fill=(255, 255, 255), font=font)
    return out
