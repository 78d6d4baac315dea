"""``faceage prepare``: detect and align every face once, cache the chips, so training never re-detects.

Each source image with exactly one face (or, with ``largest=True``, at least one) becomes an aligned chip under
``out_dir`` at the source's path relative to ``root`` with the same file name, so labels parsed from names (UTKFace's
``AGE_GENDER_RACE_*.jpg``) still parse. ``out_dir/manifest.jsonl`` lists every chip with its source, box and score.
Images with no face, several faces or unreadable bytes are skipped and reported by kind, never raised.

A chip that exists and is at least as new as its source is reused without detection, as long as the settings
(recorded in ``out_dir/prepare_settings.json``) are unchanged.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from faceage import _signals
from faceage._io import atomic_target, write_text_atomic
from faceage.data.detect import UTKFACE_PADDING, FaceDetector
from faceage.data.detectors import DEFAULT_DETECTOR
from faceage.data.images import ImageLoadError, is_image_file, load_image

MANIFEST = "manifest.jsonl"
SETTINGS = "prepare_settings.json"
JPEG_QUALITY = 95
_KEEP_NAME_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that changes a chip; a cache made with other settings is not reused."""

    detector: str = DEFAULT_DETECTOR
    chip_size: int = 200
    padding: float = UTKFACE_PADDING
    largest: bool = False


@dataclass
class PrepareReport:
    """What :func:`prepare_images` did: chips made, chips reused, and images skipped by kind with example names."""

    out_dir: str = ""
    n_ok: int = 0
    n_cached: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    cache_reset: bool = False
    max_examples: int = 5

    def skip(self, kind: str, name: str) -> None:
        """Counts one skipped image of ``kind``, keeping the first few names."""
        self.problems[kind] += 1
        names = self.examples.setdefault(kind, [])
        if len(names) < self.max_examples:
            names.append(str(name))

    @property
    def n_skipped(self) -> int:
        return sum(self.problems.values())

    @property
    def n_total(self) -> int:
        return self.n_ok + self.n_cached + self.n_skipped

    @property
    def manifest(self) -> str:
        return str(Path(self.out_dir) / MANIFEST)

    def summary(self) -> str:
        """Human-readable lines: totals, then each problem kind with its count and example file names."""
        lines = [f"{self.out_dir}: {self.n_ok + self.n_cached} chips ({self.n_ok} new, {self.n_cached} cached), "
                 f"{self.n_skipped} images skipped, of {self.n_total}"]
        if self.cache_reset:
            lines.append("  settings changed since the last run: every image was detected again")
        for kind, n in sorted(self.problems.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  skipped {n} x {kind}: e.g. {', '.join(self.examples.get(kind, []))}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "n_ok": self.n_ok, "n_cached": self.n_cached, "problems": dict(self.problems),
                "examples": self.examples, "cache_reset": self.cache_reset}


@dataclass
class _Job:
    source: str
    chip: str  # absolute or out_dir-joined path of the chip to write
    settings: PrepareSettings


@dataclass
class _Outcome:
    problem: str | None = None  # None when a chip was written
    box: list[int] | None = None
    score: float | None = None
    n_faces: int = 0


# ---- inputs ---------------------------------------------------------------------------------------------------


def _source_paths(records_or_paths, out_dir: Path) -> list[str]:
    """Paths from records (anything with ``.path``), paths, or folders (expanded recursively to image files);
    files inside ``out_dir`` (our own chips, when the output folder lies inside the input) are left out."""
    if isinstance(records_or_paths, (str, os.PathLike)):
        records_or_paths = [records_or_paths]
    out: list[str] = []
    for item in records_or_paths:
        path = Path(getattr(item, "path", item))
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*")) if f.is_file() and is_image_file(f))
        else:
            out.append(str(path))
    return [s for s in out if not _under(Path(s), out_dir)]


def _under(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _common_root(sources: list[str]) -> Path:
    parents = [os.path.dirname(os.path.abspath(s)) for s in sources]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def chip_name(source: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The chip's path relative to the output folder: the source's path under ``root``, same file name.

    JPEG and PNG sources keep their name exactly; other formats (saved as JPEG) get ``.jpg`` appended.
    Sources outside ``root`` (or with no root) keep only their file name.
    """
    src = Path(os.path.abspath(source))
    try:
        rel = src.relative_to(os.path.abspath(root)) if root is not None else Path(src.name)
    except ValueError:
        rel = Path(src.name)
    if rel.suffix.lower() not in _KEEP_NAME_SUFFIXES:
        rel = rel.with_name(rel.name + ".jpg")
    return rel.as_posix()


def _display_name(source: str, root: Path) -> str:
    """The name reports use: the source's path under ``root`` (its file name when outside)."""
    try:
        return Path(os.path.abspath(source)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(source).name


def _is_cached(source: str, chip: Path) -> bool:
    try:
        return chip.stat().st_mtime >= Path(source).stat().st_mtime
    except OSError:
        return False


def _read_manifest(out_dir: Path) -> dict[str, dict]:
    try:
        with open(out_dir / MANIFEST) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return {}
    return {r["source"]: r for r in rows if isinstance(r, dict) and "source" in r}


def _read_settings(out_dir: Path) -> PrepareSettings | None:
    try:
        return PrepareSettings(**json.loads((out_dir / SETTINGS).read_text()))
    except (OSError, ValueError, TypeError):
        return None


# ---- work (runs in worker processes) --------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _detector(settings: PrepareSettings) -> FaceDetector:
    return FaceDetector(detector=settings.detector, chip_size=settings.chip_size, padding=settings.padding)


def _save_chip(chip, path: Path) -> None:
    """Writes atomically (temp file + rename), so an interrupted run never leaves a half chip that looks cached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _KEEP_NAME_SUFFIXES.get(path.suffix.lower(), "JPEG")
    with atomic_target(path) as tmp:
        chip.save(tmp, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))


def _remove_stale(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _process(job: _Job) -> _Outcome:
    """Detects, aligns and saves one image; every failure becomes a problem string, never an exception."""
    chip_path = Path(job.chip)
    try:
        faces = _detector(job.settings).detect(load_image(job.source))
    except ImageLoadError as e:
        outcome = _Outcome(problem=e.problem)
    except Exception as e:  # noqa: BLE001 - one bad image must not stop a long preparation run
        outcome = _Outcome(problem=f"detection failed ({type(e).__name__})")
    else:
        outcome = _keep(faces, chip_path, job.settings.largest)
    if outcome.problem is not None:
        _remove_stale(chip_path)  # a chip left from an older version of this source must not be trained on
    return outcome


def _keep(faces: list, chip_path: Path, largest: bool) -> _Outcome:
    if not faces:
        return _Outcome(problem="no face")
    if len(faces) > 1 and not largest:
        return _Outcome(problem=f"several faces ({len(faces)})", n_faces=len(faces))
    face = faces[0]  # sorted largest first
    try:
        _save_chip(face.chip, chip_path)
    except OSError as e:
        return _Outcome(problem=f"cannot write chip ({e.strerror or e})")
    return _Outcome(box=[int(v) for v in face.box], score=round(float(face.score), 4), n_faces=len(faces))


def _run_jobs(jobs: list[_Job], workers: int) -> Iterable[_Outcome]:
    """Outcomes in job order; worker processes (dlib holds the GIL, so threads would not run in parallel)."""
    if workers <= 1 or len(jobs) < 2:
        yield from (_process(j) for j in jobs)
        return
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch/OpenMP threads exist in the parent
    chunk = max(1, min(16, len(jobs) // (workers * 4)))
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_signals.ignore_in_child) as pool:
            try:
                for outcome in pool.map(_process, jobs, chunksize=chunk):
                    done += 1
                    yield outcome
            finally:
                if _signals.received() is not None:  # Ctrl-C: the chips handed out are not waited for
                    _signals.kill_workers(pool)
    except BrokenProcessPool:
        for _ in jobs[done:]:
            yield _Outcome(problem="worker process died (out of memory?)")


# ---- public ---------------------------------------------------------------------------------------------------


def prepare_images(records_or_paths, out_dir: str | os.PathLike, detector: str = DEFAULT_DETECTOR, chip_size: int = 200,
                   padding: float = UTKFACE_PADDING, workers: int = 2, largest: bool = False,
                   root: str | os.PathLike | None = None,
                   progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Detects and aligns the face of every image once and caches the chips.

    Args:
        records_or_paths: ``FaceRecord``-like objects (with ``.path``), image paths, or folders (searched
            recursively), or one path/folder.
        out_dir: folder for the chips and ``manifest.jsonl``; created if missing.
        detector: ``"yunet"`` (the default), ``"blazeface"``, ``"hog"`` or ``"cnn"`` (:data:`faceage.data.detectors.DETECTORS`).
        chip_size: chip side in pixels.
        padding: alignment padding; the default reproduces UTKFace's chips.
        workers: worker processes (1 runs in this process).
        largest: keep the largest face of images with several instead of skipping them.
        root: folder whose layout is mirrored under ``out_dir``; default the sources' deepest common folder.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        A :class:`PrepareReport`; ``manifest.jsonl`` holds one line per chip (``source``, ``chip`` relative to
        ``out_dir``, ``box`` as left/top/right/bottom in source pixels, ``score``, ``n_faces``), in input order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = PrepareSettings(detector=detector, chip_size=chip_size, padding=float(padding), largest=largest)
    sources = _source_paths(records_or_paths, out)
    root = Path(root) if root is not None else _common_root(sources)
    report = PrepareReport(out_dir=str(out))
    previous = _read_settings(out)
    report.cache_reset = previous is not None and previous != settings
    old_rows = {} if report.cache_reset else _read_manifest(out)

    rows: dict[int, dict] = {}
    jobs: list[tuple[int, _Job]] = []
    seen: dict[str, str] = {}
    for i, src in enumerate(sources):
        name = chip_name(src, root)
        if name in seen:
            report.skip(f"same chip name as {_display_name(seen[name], root)}", _display_name(src, root))
            continue
        seen[name] = src
        chip = out / name
        # a chip without its manifest row (made by workers when a run was stopped) is made again, with its box
        if not report.cache_reset and _is_cached(src, chip) and src in old_rows:
            report.n_cached += 1
            old = old_rows.get(src, {})
            rows[i] = {"source": src, "chip": name, "box": old.get("box"), "score": old.get("score"),
                       "n_faces": old.get("n_faces")}
        else:
            jobs.append((i, _Job(src, str(chip), settings)))

    total, done = len(sources), len(sources) - len(jobs)
    try:
        for (i, job), outcome in zip(jobs, _run_jobs([j for _, j in jobs], workers)):
            if outcome.problem is not None:
                report.skip(outcome.problem, _display_name(job.source, root))
            else:
                report.n_ok += 1
                rows[i] = {"source": job.source, "chip": chip_name(job.source, root), "box": outcome.box,
                           "score": outcome.score, "n_faces": outcome.n_faces}
            done += 1
            if progress is not None:
                progress(done, total)
    finally:  # also after Ctrl-C: the chips made so far keep their rows, and a rerun goes on from them
        write_text_atomic(out / MANIFEST, "".join(json.dumps(rows[i]) + "\n" for i in sorted(rows)))
        write_text_atomic(out / SETTINGS, json.dumps(asdict(settings), indent=2))
    return report
