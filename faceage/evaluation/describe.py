"""What a dataset holds, before anyone trains on it: counts, ages by band, gender and race mix, image sizes, bad records.

:func:`describe_records` summarises one set of records as a plain dict; :func:`format_side_by_side` prints several
(two datasets, or the splits of one) as one table, so a skew shows at once — ``utkface-part1`` against ``utkface/``
shows that the older folder is 30% under-tens; :func:`plot_descriptions` draws the same as a PNG. ``faceage
describe`` is the command; ``faceage fit`` prints the table for its splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES, FaceRecord, ReadReport
from faceage.evaluation.metrics import AGE_BANDS, age_band_index

BAND_NAMES = tuple(f"{lo}-{hi}" if hi < 200 else f"{lo}+" for lo, hi in AGE_BANDS)


def _shares(codes: Sequence[int | None], names: Sequence[str]) -> dict[str, float]:
    n = len(codes)
    counts = {name: 0 for name in (*names, "unknown")}
    for c in codes:
        counts[names[c] if c is not None and 0 <= c < len(names) else "unknown"] += 1
    return {k: round(v / n, 4) if n else 0.0 for k, v in counts.items() if v or k != "unknown"}


def image_sizes(records: Sequence[FaceRecord], limit: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Width/height of up to ``limit`` images (a seeded sample), read from the file headers only."""
    from PIL import Image

    idx = np.arange(len(records))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), limit, replace=False))
    sides, unreadable = [], 0
    for i in idx:
        try:
            with Image.open(records[i].path) as img:
                sides.append(min(img.size))
        except Exception:  # noqa: BLE001 - a bad file is counted, never fatal here
            unreadable += 1
    if not sides:
        return {"sampled": int(len(idx)), "unreadable": unreadable}
    s = np.asarray(sides)
    return {"sampled": int(len(idx)), "unreadable": unreadable, "min_side": int(s.min()), "median_side": float(np.median(s)), "max_side": int(s.max())}


def describe_records(records: Sequence[FaceRecord], report: ReadReport | None = None, sizes: bool = True) -> dict[str, Any]:
    """One dataset (or split) as a dict.

    Returns:
        ``{"n", "age": {"mean", "median", "min", "max"}, "age_bands": {band: share}, "age_hist": [count per year
        0..120], "gender": {name: share}, "race": {name: share}, "image_sizes": {...}, "bad_records": {...}}``.
    """
    ages = np.asarray([r.age for r in records if r.age is not None], dtype=np.float64)
    out: dict[str, Any] = {"n": len(records)}
    if len(ages):
        bands = np.bincount(age_band_index(ages), minlength=len(AGE_BANDS))
        out["age"] = {"mean": round(float(ages.mean()), 2), "median": float(np.median(ages)), "min": float(ages.min()), "max": float(ages.max())}
        out["age_bands"] = {name: round(float(c) / len(ages), 4) for name, c in zip(BAND_NAMES, bands)}
        out["age_hist"] = np.bincount(np.clip(ages, 0, 120).astype(int), minlength=121).tolist()
    out["gender"] = _shares([r.gender for r in records], GENDERS)
    out["race"] = _shares([r.race for r in records], RACES)
    if sizes:
        out["image_sizes"] = image_sizes(records)
    if report is not None:
        out["bad_records"] = {"skipped": dict(report.skipped), "dropped_field": dict(report.dropped)}
    return out


def format_side_by_side(descriptions: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table, one column per description (dataset or split), one row per figure."""
    names = list(descriptions)
    rows: list[tuple[str, list[str]]] = [("faces", [str(d["n"]) for d in descriptions.values()])]

    def add(label: str, get) -> None:
        rows.append((label, [get(d) for d in descriptions.values()]))

    add("mean age", lambda d: f"{d.get('age', {}).get('mean', float('nan')):.1f}")
    add("median age", lambda d: f"{d.get('age', {}).get('median', float('nan')):.0f}")
    for band in BAND_NAMES:
        add(f"age {band}", lambda d, b=band: f"{100 * d.get('age_bands', {}).get(b, 0.0):.1f}%")
    for key in ("gender", "race"):
        labels = list(dict.fromkeys(k for d in descriptions.values() for k in d.get(key, {})))
        for label in labels:
            add(f"{key} {label}", lambda d, k=key, lab=label: f"{100 * d.get(k, {}).get(lab, 0.0):.1f}%")
    if any("image_sizes" in d for d in descriptions.values()):
        add("image side (median)", lambda d: str(d.get("image_sizes", {}).get("median_side", "-")))
        add("image side (min-max)", lambda d: f"{d.get('image_sizes', {}).get('min_side', '-')}-{d.get('image_sizes', {}).get('max_side', '-')}")
    if any("bad_records" in d for d in descriptions.values()):
        add("records skipped", lambda d: str(sum(d.get("bad_records", {}).get("skipped", {}).values())))
        add("fields dropped", lambda d: str(sum(d.get("bad_records", {}).get("dropped_field", {}).values())))
    width = max(len(r[0]) for r in rows)
    cols = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    lines += [label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, cols)) for label, values in rows]
    return "\n".join(lines)


def plot_descriptions(descriptions: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """PNG: age histograms (share of faces per year) overlaid, and band / gender / race shares as grouped bars."""
    from faceage.evaluation.plots import _save, plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [2.2, 1.4, 0.8, 1.4]})
    for name, d in descriptions.items():
        hist = np.asarray(d.get("age_hist", []), dtype=np.float64)
        if hist.sum():
            axes[0].plot(np.arange(len(hist)), hist / hist.sum(), label=f"{name} (n={d['n']})", lw=1.2)
    axes[0].set(xlabel="age (years)", ylabel="share of faces", title="age distribution")
    axes[0].legend(fontsize=8)
    for ax, key, labels in ((axes[1], "age_bands", BAND_NAMES), (axes[2], "gender", GENDERS), (axes[3], "race", RACES)):
        width = 0.8 / max(1, len(descriptions))
        for j, d in enumerate(descriptions.values()):
            values = [d.get(key, {}).get(label, 0.0) for label in labels]
            ax.bar(np.arange(len(labels)) + j * width, values, width=width, label=list(descriptions)[j])
        ax.set_xticks(np.arange(len(labels)) + width * (len(descriptions) - 1) / 2, labels, rotation=30, fontsize=8)
        ax.set(title=key.replace("_", " "), ylabel="share")
    return _save(fig, path)
