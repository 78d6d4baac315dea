"""Prediction sets for the bias report: one model's ages (and gender / race) on labelled faces with their group labels,
read from a run's predictions CSV or predicted over one split of a dataset."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from faceage.data.records import GENDERS, RACES
from faceage.evaluation.metrics import group_codes

PREDICTIONS_CSV = Path("test") / "test_predictions.csv"
SPLITS = ("test", "val", "train", "all")


@dataclass
class Predictions:
    """One prediction set with its group labels.

    Attributes:
        files: image file per sample.
        age_true: true ages, shape (N,).
        age_pred: predicted ages, shape (N,).
        gender: true gender codes (0 male, 1 female, -1 unknown), shape (N,).
        race: true race codes (0..4, -1 unknown), shape (N,).
        gender_prob: predicted P(female), shape (N,), or ``None`` without a gender head.
        race_pred: predicted race codes, shape (N,), or ``None`` without a race head.
        source: where the predictions came from (for the report header).
        n_failed: inputs that could not be predicted (unreadable images).
        age_low: lower interval bounds, shape (N,), or ``None`` (no distribution / not recorded).
        age_high: upper interval bounds.
        p_over: ``{N: P(age >= N) per face}`` for the over-N checks reported, or ``None``.
        thresholds: ``{N: threshold of the model's fitted over-N policy}``.
        level: the nominal coverage of the intervals.
        group_low: the true age group's first year per face, shape (N,), NaN for a face with an exact age; ``None``
            when no face carries a group (``age_true`` then holds a grouped face's representative age).
        group_high: the true age group's last year per face, shape (N,), NaN for an exact age.
    """

    files: list[str]
    age_true: np.ndarray
    age_pred: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    gender_prob: np.ndarray | None = None
    source: str = ""
    n_failed: int = 0
    notes: list[str] = field(default_factory=list)
    race_pred: np.ndarray | None = None
    age_low: np.ndarray | None = None
    age_high: np.ndarray | None = None
    p_over: dict[int, np.ndarray] | None = None
    thresholds: dict[int, float] | None = None
    level: float | None = None
    group_low: np.ndarray | None = None
    group_high: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    def grouped(self) -> np.ndarray:
        """Which faces carry an age group rather than an exact age: bool, shape (N,)."""
        if self.group_low is None:
            return np.zeros(len(self), dtype=bool)
        return ~np.isnan(self.group_low)

    def select(self, mask: np.ndarray) -> Predictions:
        """The predictions of the faces where ``mask`` (bool, shape (N,)) is true; the rest of the fields kept."""
        idx = np.flatnonzero(mask)
        take = lambda a: None if a is None else a[idx]
        return replace(self, files=[self.files[i] for i in idx], age_true=self.age_true[idx], age_pred=self.age_pred[idx],
                       gender=self.gender[idx], race=self.race[idx], gender_prob=take(self.gender_prob), race_pred=take(self.race_pred),
                       age_low=take(self.age_low), age_high=take(self.age_high), group_low=take(self.group_low),
                       group_high=take(self.group_high),
                       p_over=None if self.p_over is None else {k: v[idx] for k, v in self.p_over.items()})


def find_predictions_csv(run_dir: str | Path) -> Path:
    """The predictions CSV of a run: ``RUN_DIR`` itself if it is a CSV, ``RUN_DIR/test/test_predictions.csv``,
    else the most recent ``test/test_predictions.csv`` below ``RUN_DIR`` (e.g. ``lightning_logs/version_3``).

    Raises:
        FileNotFoundError: when there is none.
    """
    path = Path(run_dir)
    if path.is_file():
        return path
    if (path / PREDICTIONS_CSV).is_file():
        return path / PREDICTIONS_CSV
    found = [p for p in path.rglob(PREDICTIONS_CSV.name) if p.parent.name == "test" and p.is_file()] if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path}: no {PREDICTIONS_CSV} found (run `faceage test` first, or pass --model and --data)")
    return max(found, key=lambda p: p.stat().st_mtime)


def _labels_from_name(name: str) -> tuple[int, int]:
    """``(gender, race)`` codes from a UTKFace-style file name, ``-1`` where it has none."""
    from faceage.data.readers import LabelError, parse_utkface_name

    try:
        labels, _ = parse_utkface_name(Path(name).name)
    except LabelError:
        return -1, -1
    g, r = labels.get("gender"), labels.get("race")
    return (-1 if g is None else int(g)), (-1 if r is None else int(r))


def _cell(value: str) -> Any:
    """A CSV label cell: a number when it is one (codes), else the text (names); blank is unknown."""
    try:
        return float(value)
    except ValueError:
        return value or None


def _column(header: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in header), None)


def read_predictions_csv(path: str | Path) -> Predictions:
    """Reads a predictions CSV.

    Args:
        path: CSV with ``file``, ``age_true``, ``age_pred`` and optionally ``gender_true``/``gender``,
            ``race_true``/``race`` (codes or names) and ``gender_prob`` (P(female)). Gender and race missing
            from the columns are parsed from UTKFace file names (``AGE_GENDER_RACE_...``) where possible.
            ``group_low``/``group_high`` (blank for an exact age) give the true age group of faces labelled with one.

    Returns:
        The predictions.

    Raises:
        ValueError: when a required column is missing, a number does not parse or the file has no row.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    missing = [c for c in ("file", "age_true", "age_pred") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(header) or 'none'})")
    if not rows:
        raise ValueError(f"{path}: no predictions")
    files = [r["file"] for r in rows]
    try:
        true = np.array([float(r["age_true"]) for r in rows])
        pred = np.array([float(r["age_pred"]) for r in rows])
        gcol = _column(header, "gender_prob", "gender_p_female")
        gprob = np.array([float(r[gcol]) for r in rows]) if gcol else None
        bounds = None
        if "group_low" in header and "group_high" in header:
            bounds = [np.array([float(r[c]) if r[c] else np.nan for r in rows]) for c in ("group_low", "group_high")]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    n = len(rows)
    gender_col, race_col = _column(header, "gender_true", "gender"), _column(header, "race_true", "race")
    from_names = [_labels_from_name(f) for f in files] if gender_col is None or race_col is None else None
    gender = group_codes([_cell(r[gender_col]) for r in rows], GENDERS, n) if gender_col else np.array([g for g, _ in from_names])
    race = group_codes([_cell(r[race_col]) for r in rows], RACES, n) if race_col else np.array([r for _, r in from_names])
    notes = []
    if from_names is not None:
        notes.append("gender/race labels parsed from UTKFace-style file names")
    preds = Predictions(files, true, pred, gender.astype(np.int64), race.astype(np.int64), gprob, str(path), notes=notes)
    if bounds is not None and not np.all(np.isnan(bounds[0])):
        preds.group_low, preds.group_high = bounds
    return preds


def select_records(records: Sequence[Any], split: str = "test", seed: int = 0, split_file: str | Path | None = None) -> list[Any]:
    """The records of one split: a saved ``split.json`` if given, else :func:`split_records` (0.1/0.1, ``seed``),
    the datamodule's default split.

    Raises:
        ValueError: for an unknown split name.
    """
    from faceage.data.splits import load_split, split_records

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return list(records)
    idx = load_split(split_file, records) if split_file else split_records(records, seed=seed)
    return [records[i] for i in idx[split]]


def labelled_face(path: str, faces: list) -> Any | None:
    """:func:`faceage.data.boxes.middle_face` of the photo at ``path`` (its size read from the file's header)."""
    from PIL import Image

    from faceage.data.boxes import middle_face

    if not faces:
        return None
    with Image.open(path) as im:
        return middle_face(faces, im.size)


def predict_dataset(
    model: str | Path | None,
    data: str | Path,
    dataset: str = "utkface",
    split: str = "test",
    split_file: str | Path | None = None,
    max_samples: int = 0,
    batch_size: int = 64,
    workers: int | None = None,
    predictor: Any = None,
    progress: bool = False,
    detect: bool = False,
) -> tuple[Predictions, Any]:
    """Runs a model over one split of a dataset: on each image as one aligned chip (``Predictor(detect=False)``), or
    with ``detect`` on each photo's labelled face, the one in the middle (:func:`faceage.data.boxes.middle_face`).

    Args:
        model: model directory / checkpoint (``None``: the bundled model); ignored when ``predictor`` is given.
        data: dataset folder.
        dataset: reader name (``faceage.data.readers.READERS``).
        split: ``test``, ``val``, ``train`` or ``all``.
        split_file: a saved ``split.json`` to use instead of recomputing the split.
        max_samples: keep a seeded random subset of this many records (0: all).
        batch_size: faces per forward pass.
        workers: image decoding threads (default: :func:`faceage.inference.predictor.default_workers`).
        predictor: an existing predictor to use.
        progress: a progress bar on stderr (faces per second, ETA).
        detect: the images are photos (FairFace's, say): detect every face and score the one in the middle; a photo
            where no face holds the middle counts as failed.

    Returns:
        ``(predictions, predictor)``.
    """
    from faceage.data.readers import read_dataset
    from faceage.inference.predictor import Predictor

    records, _ = read_dataset(dataset, data)
    records = select_records(records, split, split_file=split_file)
    if max_samples and len(records) > max_samples:
        keep = np.sort(np.random.default_rng(0).choice(len(records), max_samples, replace=False))
        records = [records[i] for i in keep]
    if not records:
        raise ValueError(f"{data}: no {dataset} records in split {split!r}")
    predictor = predictor or Predictor(model, detect=detect, batch_size=batch_size, workers=workers)
    calibration = getattr(predictor, "calibration", None)
    policies = {int(k): float(v["threshold"]) for k, v in (calibration.config.get("verify", {}) if calibration else {}).items()}
    overs = sorted(policies) or [18]
    lows, highs, p_over = [], [], {n: [] for n in overs}
    files, true, pred, gender, race, gprob, rpred, group_low, group_high = [], [], [], [], [], [], [], [], []
    n_failed = 0
    from faceage.inference.progress import progress_bar

    bar = progress_bar(len(records), "face", progress, "predict")
    for rec, result in zip(records, predictor.predict_files([r.path for r in records]), strict=True):
        bar.update(1)
        face = labelled_face(result.path, result.faces) if detect and not result.error else (
            result.faces[0] if result.faces and not result.error else None)
        if face is None:
            n_failed += 1
            continue
        files.append(rec.path)
        true.append(rec.age)
        pred.append(face.age)
        gender.append(-1 if rec.gender is None else rec.gender)
        race.append(-1 if rec.race is None else rec.race)
        group_low.append(rec.age_low if rec.is_grouped else np.nan)
        group_high.append(rec.age_high if rec.is_grouped else np.nan)
        if face.gender is not None:
            gprob.append(face.gender_p if face.gender == "female" else 1.0 - face.gender_p)
        if face.race is not None:
            rpred.append(RACES.index(face.race))
        if face.age_low is not None:
            lows.append(face.age_low)
            highs.append(face.age_high)
        if face.distribution is not None:
            for n in overs:
                p_over[n].append(face.p_over(n))
    bar.close()
    preds = Predictions(
        files, np.asarray(true, float), np.asarray(pred, float), np.asarray(gender, np.int64), np.asarray(race, np.int64),
        np.asarray(gprob, float) if len(gprob) == len(files) and gprob else None,
        f"{model or 'bundled model'} on {dataset} {data} ({split})", n_failed,
        race_pred=np.asarray(rpred, np.int64) if rpred and len(rpred) == len(files) else None,
    )
    if files and not np.all(np.isnan(group_low)):
        preds.group_low, preds.group_high = np.asarray(group_low, float), np.asarray(group_high, float)
    if lows and len(lows) == len(files):
        preds.age_low, preds.age_high = np.asarray(lows, float), np.asarray(highs, float)
        preds.level = getattr(predictor, "level", None)
    if all(len(v) == len(files) for v in p_over.values()) and files and p_over[overs[0]]:
        preds.p_over = {n: np.asarray(v, float) for n, v in p_over.items()}
        preds.thresholds = policies
    return preds, predictor
