"""Raw photos in, aligned chips out, for training and testing: detection + alignment run once per image and settings.

A dataset whose images are whole photos (FG-NET's scans, AAF's or UTKFace's original images) is turned into
UTKFace-like aligned chips before training, like :mod:`faceage.data.prepare` does on request, but on its own and with
a cache keyed by content: the chip of a photo lives at ``<cache>/aligned/<settings key>/<content key>.jpg`` (default
cache ``$FACEAGE_CACHE`` or ``~/.cache/faceage``), so the next run, another fold, another copy or another name of the
same photo reuses it, and a changed photo or other settings give another chip. A photo where no face was found leaves
a ``<content key>.miss`` note, so it is not searched again either.

Landmark files beside the images (FG-NET's ``points/001a02.pts``: 68 hand-placed points) pick which detected face is
the labelled one, and give the face box where the detector finds none. The detector's landmarks still align the chip
(dlib's 68-point model fitted in that box), so the framing is that of every other chip, whatever the points' order.

``align="auto"`` decides per dataset: images already square and small (at most :data:`CHIP_MAX_SIDE` px), or named
like UTKFace's chips (``*.chip.jpg``), are taken as chips; anything else is aligned.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from faceage._io import atomic_target, write_text_atomic
from faceage.data.detectors import DEFAULT_DETECTOR
from faceage.data.records import FaceRecord

ALIGN_MODES = ("auto", "always", "never")
FORMAT = 2  # bump when the chip a photo gives changes for the same settings (2: the middle face before the largest)
CHIP_MAX_SIDE = 256  # square images up to this side count as chips (UTKFace's and the shared AAF's are 200 px)
SQUARE_TOLERANCE = 0.02  # |w - h| / max(w, h) of a "square" image
SAMPLE_SIZE = 64  # images whose header ``auto`` reads to decide
POINTS_IOU = 0.3  # a detected face is the one the landmark file marks when their boxes overlap this much
JPEG_QUALITY = 95
# dlib's HOG box for a face whose 68 landmarks span ``s`` pixels: side 1.016 s, centre (0.004 s, -0.080 s) off the
# landmarks' bounding-box centre (faceage.data.detect LANDMARKS_TO_HOG, medians over 147 faces)
POINTS_TO_BOX = (1.016, 0.0043, -0.0796)
# worker processes only for this many photos or more: each one starts in ~2 s and loads dlib's models (~100 MB)
MIN_POOL_JOBS = 64
MAX_LISTED = 20  # dropped photos named in the summary (all of them go to the report's ``dropped``)


@dataclass(frozen=True)
class AlignSettings:
    """Everything that changes a chip: the detector, the chip side and the alignment padding (UTKFace's framing)."""

    detector: str = DEFAULT_DETECTOR
    chip_size: int = 200
    padding: float = 0.2  # faceage.data.detect.UTKFACE_PADDING

    def key(self) -> str:
        """Short hash naming this settings' cache folder."""
        text = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class AlignReport:
    """What :func:`align_records` did: chips made now (by detection or from a landmark file), chips reused, photos
    dropped (``dropped``: display name -> problem)."""

    source: str = ""
    folder: str = ""
    aligned: bool = True
    reason: str = ""
    n_detected: int = 0
    n_from_points: int = 0
    n_cached: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    bad_points: list[str] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return self.n_detected + self.n_from_points + self.n_cached

    def summary(self) -> str:
        """One line of totals, then the dropped photos by problem, each named (the first :data:`MAX_LISTED`)."""
        if not self.aligned:
            return f"{self.source}: images used as they are ({self.reason})"
        lines = [(f"{self.source}: {self.n_ok} faces aligned ({self.reason}): {self.n_detected} detected now, "
                  f"{self.n_from_points} from landmark files, {self.n_cached} cached in {self.folder}; "
                  f"{len(self.dropped)} photos dropped")]
        by_problem: dict[str, list[str]] = {}
        for name, problem in self.dropped.items():
            by_problem.setdefault(problem, []).append(name)
        for problem, names in sorted(by_problem.items(), key=lambda kv: -len(kv[1])):
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            lines.append(f"  dropped {len(names)} x {problem}: {', '.join(names[:MAX_LISTED])}{more}")
        lines += [f"  landmark file not used: {problem}" for problem in self.bad_points]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**asdict(self), "n_ok": self.n_ok}


def aligned_root() -> Path:
    """``$FACEAGE_CACHE/aligned``, else ``~/.cache/faceage/aligned``."""
    base = os.environ.get("FACEAGE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "faceage") / "aligned"


# ---- deciding ---------------------------------------------------------------------------------------------------


def _image_size(path: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # noqa: BLE001 - an unreadable header is the loader's to report
        return None


def is_chip(path: str) -> bool:
    """Whether one image looks like an aligned chip: named like UTKFace's (``*.chip.jpg``), or square and at most
    :data:`CHIP_MAX_SIDE` pixels."""
    if ".chip." in Path(path).name.lower():
        return True
    size = _image_size(path)
    if size is None:
        return True  # unreadable: nothing to align; the loader reports it
    w, h = size
    return max(w, h) <= CHIP_MAX_SIDE and abs(w - h) <= SQUARE_TOLERANCE * max(w, h)


def needs_alignment(records: list[FaceRecord], mode: str = "auto") -> tuple[bool, str]:
    """Whether ``records`` must be aligned, and why (for the report).

    ``auto`` reads the headers of up to :data:`SAMPLE_SIZE` images spread over the records: all chips
    (:func:`is_chip`) -> no alignment; otherwise every image is aligned.

    Raises:
        ValueError: for a mode outside :data:`ALIGN_MODES`.
    """
    if mode not in ALIGN_MODES:
        raise ValueError(f"data.align must be one of {', '.join(ALIGN_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "always", f"data.align {mode}"
    if not records:
        return False, "no images"
    step = max(1, len(records) // SAMPLE_SIZE)
    sample = records[::step][:SAMPLE_SIZE]
    photos = [r.path for r in sample if not is_chip(r.path)]
    if not photos:
        return False, f"{len(sample)} of {len(sample)} sampled images are square chips of at most {CHIP_MAX_SIDE} px"
    return True, f"{len(photos)} of {len(sample)} sampled images are not aligned chips, e.g. {Path(photos[0]).name}"


# ---- landmark files ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _pts_index(folder: str) -> dict[str, str]:
    """Lower-cased stem -> path of every ``.pts`` file in ``folder`` (FG-NET's names differ in case from its images)."""
    try:
        return {Path(n).stem.lower(): os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(".pts")}
    except OSError:
        return {}


@lru_cache(maxsize=64)
def _points_folders(folder: str) -> tuple[str, ...]:
    """``folder`` and its sub-folders named ``points`` in any case."""
    try:
        subs = [os.path.join(folder, n) for n in os.listdir(folder) if n.lower() == "points"]
    except OSError:
        subs = []
    return (folder, *[s for s in subs if os.path.isdir(s)])


def find_points(image: str | os.PathLike) -> str | None:
    """The landmark file of an image: ``<stem>.pts`` beside it, in ``points/`` beside it, or in ``../points/``
    (FG-NET's layout: ``images/001A02.JPG`` with ``points/001a02.pts``), names matched without regard to case."""
    path = Path(image)
    stem = path.stem.lower()
    here, parent = _points_folders(str(path.parent)), _points_folders(str(path.parent.parent))[1:]
    for folder in (*here, *parent):
        found = _pts_index(folder).get(stem)
        if found:
            return found
    return None


def read_points(path: str | os.PathLike) -> np.ndarray:
    """The ``(N, 2)`` points of an ASM/AAM ``.pts`` file (``version: 1`` / ``n_points: 68`` / ``{`` x y lines ``}``).

    Raises:
        ValueError: naming the file, when it holds fewer than 3 points or a line that is no point.
    """
    text = Path(path).read_text(errors="replace")
    match = re.search(r"\{(.*?)\}", text, flags=re.DOTALL)
    body = match.group(1) if match else text
    points = []
    for line in body.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            points.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            raise ValueError(f"{path}: not a landmark line: {line.strip()!r}") from None
    if len(points) < 3:
        raise ValueError(f"{path}: {len(points)} landmark points, need at least 3")
    return np.asarray(points, dtype=np.float64)


def points_box(points: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The face box (left, top, right, bottom; right/bottom exclusive) dlib's detector would draw around these
    landmarks (:data:`POINTS_TO_BOX`), clipped to the image."""
    lo, hi = points.min(0), points.max(0)
    span = float((hi - lo).max())
    k, dx, dy = POINTS_TO_BOX
    cx, cy = (lo + hi) / 2 + np.array([dx, dy]) * span
    half = k * span / 2
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    return left, top, min(width, round(cx + half)), min(height, round(cy + half))


# ---- work (runs in worker processes) ----------------------------------------------------------------------------


@dataclass
class _Job:
    source: str
    points: np.ndarray | None
    chip: str
    miss: str
    settings: AlignSettings


@lru_cache(maxsize=2)
def _detector(settings: AlignSettings):
    from faceage.data.detect import FaceDetector

    return FaceDetector(detector=settings.detector, chip_size=settings.chip_size, padding=settings.padding)


def _box_iou(a, b) -> float:
    from faceage.data.boxes import iou

    return iou(tuple(a), tuple(b))


def _align_one(job: _Job) -> tuple[str | None, str]:
    """Detects and aligns one photo; returns ``(problem, how)`` with ``how`` ``"detected"`` or ``"points"``. A photo
    with no face leaves its ``.miss`` note (the problem); nothing here raises."""
    from faceage.data.images import ImageLoadError, load_image

    try:
        image = load_image(job.source)
    except ImageLoadError as e:
        return e.problem, ""  # unreadable now: not noted, so a repaired file is tried again
    try:
        face, how = _choose_face(image, job.points, job.settings)
    except Exception as e:  # noqa: BLE001 - one bad photo must not stop the dataset
        return f"alignment failed ({type(e).__name__})", ""
    if face is None:
        write_text_atomic(job.miss, "no face found\n")
        return "no face found", ""
    Path(job.chip).parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(job.chip) as tmp:
        face.chip.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    return None, how


def _choose_face(image, points: np.ndarray | None, settings: AlignSettings):
    """The labelled face: with landmark points, the detected face overlapping their box (else the box itself, aligned
    by the landmark model); without, the face holding the photo's centre (:func:`faceage.data.boxes.middle_face`:
    FairFace's photos show others beside the labelled person), else the largest detected face."""
    from faceage.data.boxes import middle_face

    detector = _detector(settings)
    faces = detector.detect(image)
    if points is None:
        return ((middle_face(faces, image.size) or faces[0]), "detected") if faces else (None, "")
    box = points_box(points, image.width, image.height)
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return (faces[0], "detected") if faces else (None, "")
    best = max(faces, key=lambda f: _box_iou(f.box, box), default=None)
    if best is not None and _box_iou(best.box, box) >= POINTS_IOU:
        return best, "detected"
    return detector.align_box(image, box), "points"


def _run(jobs: list[_Job], workers: int):
    """Outcomes in job order, from ``workers`` processes (dlib holds the GIL: threads would not run in parallel)."""
    if workers <= 1 or len(jobs) < MIN_POOL_JOBS:
        yield from (_align_one(j) for j in jobs)
        return
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch/OpenMP threads exist in the parent
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for outcome in pool.map(_align_one, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 4)))):
                done += 1
                yield outcome
    except BrokenProcessPool:
        for _ in jobs[done:]:
            yield "worker process died (out of memory?)", ""


# ---- public -----------------------------------------------------------------------------------------------------


def content_key(path: str | os.PathLike, points: str | os.PathLike | None = None) -> str:
    """Hash of the photo's bytes (and of its landmark file's, which change the chip too)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read())
    if points is not None:
        h.update(b"\0points\0")
        with open(points, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def align_records(records: list[FaceRecord], mode: str = "auto", source: str = "", settings: AlignSettings | None = None,
                  cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                  progress: bool | None = None) -> tuple[list[FaceRecord], AlignReport]:
    """The records with their photos replaced by cached aligned chips (detecting and aligning those not cached yet).

    Args:
        records: a reader's records (paths to photos or to chips).
        mode: ``auto`` (align unless the images are chips already, :func:`needs_alignment`), ``always`` or ``never``.
        source: name for the report (the dataset folder).
        settings: detector, chip size and padding (default: UTKFace's framing, the default detector).
        cache_dir: where the chips go (default :func:`aligned_root`).
        workers: detection processes (default 2, or fewer cores).
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        ``(records, report)``: one record per photo with a face, labels unchanged, ``path`` the chip; photos with no
        face found, unreadable ones and byte-identical copies of an earlier photo are left out and named in the report.
    """
    settings = settings or AlignSettings()
    report = AlignReport(source=source)
    report.aligned, report.reason = needs_alignment(records, mode)
    if not report.aligned:
        return list(records), report
    folder = Path(cache_dir) if cache_dir is not None else aligned_root()
    folder = folder / settings.key()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "settings.json").exists():
        write_text_atomic(folder / "settings.json", json.dumps({"format": FORMAT, **asdict(settings)}, indent=2) + "\n")
    report.folder = str(folder)
    base = _common_folder(records)

    out: dict[int, FaceRecord] = {}
    jobs: list[tuple[int, str, _Job]] = []
    seen: dict[str, str] = {}
    for i, r in enumerate(records):
        name = _display(r.path, base)
        points_file = find_points(r.path)
        try:
            key = content_key(r.path, points_file)
        except OSError as e:
            report.dropped[name] = f"cannot read file ({e.strerror or e})"
            continue
        if key in seen:
            report.dropped[name] = f"same image as {seen[key]}"
            continue
        seen[key] = name
        chip, miss = folder / f"{key}.jpg", folder / f"{key}.miss"
        if chip.exists():
            report.n_cached += 1
            out[i] = replace(r, path=str(chip))
        elif miss.exists():
            report.dropped[name] = miss.read_text().strip() or "no face found"
        else:
            points = None
            if points_file is not None:
                try:
                    points = read_points(points_file)
                except (OSError, ValueError) as e:  # the photo is still searched by the detector
                    report.bad_points.append(str(e))
            jobs.append((i, name, _Job(r.path, points, str(chip), str(miss), settings)))

    if jobs:
        bar = _progress_bar(len(jobs), progress)
        for (i, name, job), (problem, how) in zip(jobs, _run([j for _, _, j in jobs], workers or min(2, os.cpu_count() or 1))):
            if problem is not None:
                report.dropped[name] = problem
            else:
                out[i] = replace(records[i], path=job.chip)
                if how == "points":
                    report.n_from_points += 1
                else:
                    report.n_detected += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    return [out[i] for i in sorted(out)], report


def _common_folder(records: list[FaceRecord]) -> str:
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(r.path)) for r in records]) if records else ""
    except ValueError:  # paths on different drives
        return ""


def _display(path: str, base: str) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(base).as_posix() if base else Path(path).name
    except ValueError:
        return Path(path).name


def _progress_bar(total: int, wanted: bool | None):
    import sys

    if wanted is False or (wanted is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="photo", desc="align", leave=False)
