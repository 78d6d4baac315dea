"""How much predictions move under controlled image changes: brightness, blur, JPEG quality, rotation, crop margin.

Each change is applied to the aligned face chips (the network's input before preprocessing), the model predicts
again, and the usual metrics are recomputed, so a table shows e.g. how MAE grows as JPEG quality drops::

    >>> from faceage.inference.predictor import Predictor
    >>> rows = sensitivity_analysis(Predictor("runs/x/model", detect=False), paths, ages)
    >>> [(r["perturbation"], r["value"], round(r["mae"], 2)) for r in rows]

Baseline row first (``perturbation == "none"``), then one row per ``(perturbation, value)`` condition.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from faceage.data.images import ImageLoadError, load_image
from faceage.data.records import GENDERS
from faceage.evaluation.metrics import AGE_BAND_LABELS, age_band_index, age_metrics, group_codes
from faceage.models.ages import reported_age

BASELINE = "none"
PERTURBATIONS: tuple[str, ...] = ("brightness", "blur", "jpeg", "rotation", "crop_margin")
DEFAULT_CONDITIONS: dict[str, tuple[float, ...]] = {
    "brightness": (0.5, 0.75, 1.25, 1.5),  # multiplicative factor (1 = unchanged)
    "blur": (1.0, 2.0, 4.0),  # Gaussian radius in chip pixels
    "jpeg": (75.0, 40.0, 15.0),  # JPEG quality
    "rotation": (-20.0, -10.0, 10.0, 20.0),  # degrees, counter-clockwise
    "crop_margin": (-0.15, -0.05, 0.05, 0.15),  # fraction of the side: >0 tighter crop, <0 wider (black border)
}
UNITS = {"brightness": "factor", "blur": "radius px", "jpeg": "quality", "rotation": "degrees", "crop_margin": "fraction"}


def perturb(image: Image.Image, kind: str, value: float) -> Image.Image:
    """One controlled change of an RGB face chip; the output has the input's size.

    Args:
        image: RGB chip.
        kind: one of :data:`PERTURBATIONS` (or ``"none"``).
        value: brightness factor; blur radius (pixels); JPEG quality 1..95; rotation in degrees
            (counter-clockwise, black corners); crop margin as a fraction of the side (positive crops that much
            off every side, negative adds that much black border), resized back to the chip size.

    Returns:
        A new image.

    Raises:
        ValueError: for an unknown kind or an out-of-range value.
    """
    image = image.convert("RGB")
    if kind == BASELINE:
        return image.copy()
    if kind == "brightness":
        if value < 0:
            raise ValueError(f"brightness factor must be >= 0, got {value}")
        return ImageEnhance.Brightness(image).enhance(float(value))
    if kind == "blur":
        if value < 0:
            raise ValueError(f"blur radius must be >= 0, got {value}")
        return image.filter(ImageFilter.GaussianBlur(radius=float(value)))
    if kind == "jpeg":
        if not 1 <= value <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {value}")
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(round(value)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "rotation":
        return image.rotate(float(value), resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    if kind == "crop_margin":
        if not -1 < value < 0.5:
            raise ValueError(f"crop margin must be in (-1, 0.5), got {value}")
        w, h = image.size
        dx, dy = round(w * value), round(h * value)
        if value >= 0:
            box = image.crop((dx, dy, w - dx, h - dy))
        else:
            box = Image.new("RGB", (w - 2 * dx, h - 2 * dy))
            box.paste(image, (-dx, -dy))
        return box.resize((w, h), Image.Resampling.BILINEAR)
    raise ValueError(f"unknown perturbation {kind!r}; choose from {', '.join(PERTURBATIONS)}")


def condition_label(kind: str, value: float) -> str:
    """Short text for a condition, e.g. ``"jpeg 40"`` or ``"none"``."""
    return BASELINE if kind == BASELINE else f"{kind} {value:g}"


# ------------------------------------------------------------------------------------------------ prediction


def face_chips(predictor: Any, images: Sequence[Any]) -> tuple[list[Image.Image], list[int]]:
    """Decodes images and, when the predictor detects faces, aligns the largest face of each.

    Args:
        predictor: a :class:`faceage.inference.predictor.Predictor`.
        images: paths, bytes, PIL images or arrays.

    Returns:
        ``(chips, kept)``: the chips and the indices of the images they come from (unreadable images and, with
        detection, images without a face are left out).
    """
    chips, kept = [], []
    for i, source in enumerate(images):
        try:
            image = load_image(source)
        except ImageLoadError:
            continue
        faces = predictor.face_chips.faces(image)  # the whole image when the predictor does not detect
        if not faces:
            continue
        chips.append(faces[0][1])
        kept.append(i)
    return chips, kept


def chip_outputs(predictor: Any, chips: Sequence[Image.Image], batch_size: int = 64) -> dict[str, np.ndarray]:
    """The predictor's engine outputs for aligned chips (no detection; :meth:`FaceChips.preprocess
    <faceage.inference.chips.FaceChips.preprocess>` then :meth:`~faceage.inference.predictor.Predictor.run`), in
    batches of ``batch_size``: ``{"age": (N,), "gender_prob": (N,)?, ...}``, ages as the predictor reports them."""
    outs = [predictor.run(predictor.face_chips.preprocess(list(chips[start : start + batch_size])))
            for start in range(0, len(chips), batch_size)]
    if not outs:
        return {"age": np.zeros(0)}
    out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    out["age"] = reported_age(out["age"], predictor.round_ages)
    return out


def _row(kind: str, value: float, pred: np.ndarray, true: np.ndarray, base: np.ndarray, out: Mapping[str, np.ndarray],
         gender: np.ndarray | None) -> dict[str, Any]:
    m = age_metrics(pred, true)
    band = age_band_index(true)
    shift = pred - base
    row: dict[str, Any] = {
        "perturbation": kind,
        "value": float(value),
        "label": condition_label(kind, value),
        "n": m["n"],
        "mae": m["mae"],
        "cs@5": m["cs@5"],
        "bias": m["bias"],
        "mean_shift": float(np.mean(shift)),
        "mean_abs_shift": float(np.mean(np.abs(shift))),
        "mae_by_age_band": {
            label: float(np.mean(np.abs(pred - true)[band == i])) for i, label in enumerate(AGE_BAND_LABELS) if np.any(band == i)
        },
        "gender_accuracy": None,
    }
    if gender is not None and "gender_prob" in out:
        known = gender >= 0
        if np.any(known):
            guess = (out["gender_prob"] >= 0.5).astype(np.int64)
            row["gender_accuracy"] = float(np.mean(guess[known] == gender[known]))
    return row


def sensitivity_analysis(
    predictor: Any,
    images: Sequence[Any],
    ages: Sequence[float] | np.ndarray,
    conditions: Mapping[str, Sequence[float]] | None = None,
    gender: Sequence[Any] | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Metrics of the predictor on clean and on perturbed chips.

    Args:
        predictor: a :class:`faceage.inference.predictor.Predictor`; with ``detect=True`` each image's largest
            face is aligned first and the changes are applied to that chip.
        images: N face images (paths, bytes, PIL images or arrays).
        ages: true ages, shape (N,).
        conditions: perturbation name -> values (default :data:`DEFAULT_CONDITIONS`).
        gender: true gender, shape (N,) (codes 0/1, names, or ``None`` / -1 unknown) for gender accuracy.
        batch_size: chips per forward pass.
        progress: a progress bar on stderr, one step per condition (:mod:`faceage.inference.progress`).

    Returns:
        Rows (baseline first) with ``perturbation``, ``value``, ``label``, ``n``, ``mae``, ``cs@5``, ``bias``,
        ``mean_shift`` / ``mean_abs_shift`` (prediction change against the clean chip), ``mae_by_age_band``
        and ``gender_accuracy`` (``None`` without gender labels or head).

    Raises:
        ValueError: on mismatched lengths, an unknown perturbation or when no image is usable.
    """
    true_all = np.asarray(ages, dtype=np.float64)
    if true_all.shape != (len(images),):
        raise ValueError(f"ages must have one value per image ({len(images)}), got shape {true_all.shape}")
    conditions = dict(DEFAULT_CONDITIONS if conditions is None else conditions)
    unknown = set(conditions) - set(PERTURBATIONS)
    if unknown:
        raise ValueError(f"unknown perturbation(s) {sorted(unknown)}; choose from {', '.join(PERTURBATIONS)}")
    chips, kept = face_chips(predictor, images)
    if not chips:
        raise ValueError("no usable image for the sensitivity analysis")
    true = true_all[kept]
    codes = group_codes(gender, GENDERS, len(images))[kept] if gender is not None else None
    from faceage.inference.progress import progress_bar

    with progress_bar(1 + sum(len(v) for v in conditions.values()), "condition", progress, "sensitivity") as bar:
        base_out = chip_outputs(predictor, chips, batch_size)
        base = base_out["age"].astype(np.float64)
        rows = [_row(BASELINE, 0.0, base, true, base, base_out, codes)]
        bar.update(1)
        for kind, values in conditions.items():
            for value in values:
                out = chip_outputs(predictor, [perturb(c, kind, value) for c in chips], batch_size)
                rows.append(_row(kind, value, out["age"].astype(np.float64), true, base, out, codes))
                bar.update(1)
    return rows


# ------------------------------------------------------------------------------------------------- output


def plot_sensitivity(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per perturbation: MAE against the perturbation's value, the clean MAE dashed.

    Args:
        rows: output of :func:`sensitivity_analysis`.
        path: PNG file to write.

    Returns:
        The path written.

    Raises:
        ValueError: if there is no perturbed row.
    """
    from faceage.evaluation.plots import _save, plt

    base = next((r for r in rows if r["perturbation"] == BASELINE), None)
    kinds = list(dict.fromkeys(r["perturbation"] for r in rows if r["perturbation"] != BASELINE))
    if not kinds:
        raise ValueError("no perturbed condition to plot")
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3.2), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds, strict=True):
        pts = sorted((r["value"], r["mae"]) for r in rows if r["perturbation"] == kind)
        ax.plot([v for v, _ in pts], [m for _, m in pts], marker="o", color="tab:red")
        if base is not None:
            ax.axhline(base["mae"], color="black", linestyle="--", linewidth=1, label=f"clean {base['mae']:.2f}")
            ax.legend(fontsize=7)
        ax.set_title(kind)
        ax.set_xlabel(UNITS.get(kind, "value"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MAE (years)")
    return _save(fig, path)
