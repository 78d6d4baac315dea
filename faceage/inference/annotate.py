"""Draws face boxes and ages onto a copy of the image (seed 002's "write the age onto the image")."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from faceage.inference.predictor import FaceResult


def label(face: FaceResult) -> str:
    text = f"{face.age:.0f}"
    if face.interval is not None:
        text += f" ({face.age_low:.0f}-{face.age_high:.0f})"
    if face.gender:
        text += f" {face.gender[0].upper()}"
    return text


def annotate(image: Image.Image, faces: list[FaceResult]) -> Image.Image:
    """Returns a copy of ``image`` with each face's box and label drawn."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(12, out.width // 40)
    font = ImageFont.load_default(size=size)
    width = max(2, out.width // 300)
    for face in faces:
        left, top, right, bottom = face.box
        draw.rectangle((left, top, right, bottom), outline=(255, 40, 40), width=width)
        text = label(face)
        tb = draw.textbbox((left, top), text, font=font)
        y = top - (tb[3] - tb[1]) - 2 * width if top - (tb[3] - tb[1]) - 2 * width >= 0 else bottom + width
        draw.rectangle((left, y, left + tb[2] - tb[0] + 2 * width, y + tb[3] - tb[1] + 2 * width), fill=(255, 40, 40))
        draw.text((left + width, y - (tb[1] - top)), text, fill=(255, 255, 255), font=font)
    return out
