"""``Predictor``: photos in, one :class:`FaceResult` per face out — detect + align (or take the image as the face),
preprocess from the model's own input config, run the engine, decode age, 90% interval and gender.
The interval is the model's calibrated one when its config holds a calibration (``faceage calibrate``,
:mod:`faceage.inference.calibration`), else the raw distribution's central interval.

    >>> predictor = Predictor()                       # bundled model, ONNX Runtime (as `faceage predict`)
    >>> faces = predictor.predict("photo.jpg")        # list[FaceResult]
    >>> faces[0].age, faces[0].interval, faces[0].gender
    >>> faces[0].p_over(18)                           # P(age >= 18) from the age distribution
    >>> predictor.verify("photo.jpg", over=18)        # list[AgeDecision]: pass / refer, with the stated policy
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.data.detectors import DEFAULT_DETECTOR
from faceage.data.images import ImageLoadError, is_image_file
from faceage.data.records import RACES
from faceage.inference.calibration import interval_from_distribution
from faceage.inference.chips import FaceChips
from faceage.models.ages import reported_age


@dataclass
class FaceResult:
    """One face in one image.

    Attributes:
        face: index of the face in its image (largest first).
        box: ``(left, top, right, bottom)`` in image pixels (the whole image with ``detect=False``).
        age: estimated age in years.
        age_low: lower end of the 90% interval (``None`` when the head has no distribution).
        age_high: upper end of the 90% interval.
        gender: ``"male"``/``"female"`` when the model has a gender head, else ``None``.
        gender_p: probability of the predicted gender.
        race: most likely of ``faceage.data.records.RACES`` when the model has a race head, else ``None``.
        race_p: its probability.
        distribution: probabilities of the ages ``min_age, min_age + 1, ...`` (``None`` when the head has none);
            left out of :meth:`to_dict` unless asked for.
        min_age: the age of ``distribution[0]``.
    """

    face: int
    box: tuple[int, int, int, int]
    age: float
    age_low: float | None = None
    age_high: float | None = None
    gender: str | None = None
    gender_p: float | None = None
    race: str | None = None
    race_p: float | None = None
    distribution: np.ndarray | None = field(default=None, repr=False, compare=False)
    min_age: int = field(default=0, repr=False, compare=False)

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.age_low is None else (self.age_low, self.age_high)

    def p_over(self, age: float) -> float | None:
        """``P(age >= age)`` from the age distribution (``None`` without one)."""
        if self.distribution is None:
            return None
        from faceage.inference.calibration import p_over

        return float(p_over(np.asarray(self.distribution)[None], self.min_age, age)[0])

    def to_dict(self, distribution: bool = False) -> dict:
        """The fields as a dict; ``distribution=True`` adds the age distribution in the compact form of
        :func:`compact_distribution` (``{"start": age, "p": [...]}``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("distribution", "min_age")}  # no deep copy of the array
        if distribution:
            out["distribution"] = None if self.distribution is None else compact_distribution(self.distribution, self.min_age)
        return out


def compact_distribution(dist, min_age: int = 0, eps: float = 1e-4, decimals: int = 4) -> dict:
    """An age distribution as ``{"start": first age, "p": [probabilities]}``: the tails below ``eps`` on either
    side are dropped and values rounded to ``decimals`` places (what ``predict --format jsonl`` writes)."""
    p = np.asarray(dist, dtype=np.float64)
    keep = np.flatnonzero(p >= eps)
    if keep.size == 0:
        return {"start": int(min_age), "p": []}
    a, b = int(keep[0]), int(keep[-1]) + 1
    return {"start": int(min_age) + a, "p": [round(float(v), decimals) for v in p[a:b]]}


@dataclass
class FileResult:
    """Outcome for one input file: its faces, or the problem that stopped it."""

    path: str
    faces: list[FaceResult]
    error: str | None = None


def default_workers(detect: bool) -> int:
    """Image workers when none are asked for. With detection, the per-image work (dlib) is the heavy part: one worker
    per core (processes for many files, see :meth:`Predictor.predict_files`). On pre-cropped faces the engine is the
    heavy part and already uses every core, so one thread per two cores. On the 2-core machine, 781 chips with the int8 bundle: one thread gave 560-570 faces/s, two gave 476-525
    (benchmarks/RESULTS.md)."""
    cores = os.cpu_count() or 1
    return max(1, cores if detect else cores // 2)


def format_age(age: float, decimals: int = 2) -> str:
    """``28`` for a whole-year age (a model with ``round_ages``), else ``27.73`` (``decimals`` places)."""
    return f"{age:.0f}" if float(age).is_integer() else f"{age:.{decimals}f}"


def expand_inputs(paths: Iterable[str | os.PathLike], videos: bool = False) -> list[str]:
    """Files as given (any name: decoding goes by content), folders expanded (recursively, sorted) to the files with
    an image extension (see :data:`faceage.data.images.IMAGE_EXTENSIONS`); ``videos``: also those with a video
    extension (:data:`faceage.data.video.VIDEO_EXTENSIONS`)."""
    from faceage.data.video import is_video_file

    def wanted(f: Path) -> bool:
        return is_image_file(f) or (videos and is_video_file(f))

    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            # dangling links with an image name are kept so that they are reported, not silently skipped
            out.extend(str(f) for f in sorted(path.rglob("*")) if wanted(f) and (f.is_file() or (f.is_symlink() and not f.exists())))
        else:
            out.append(str(path))
    return out


class Predictor:
    """Age (and gender) of every face in an image.

    Args:
        model: model directory, ``.ckpt``, an ``AgeModel`` / ``AgeEnsemble``, or ``None`` for the bundled default model.
        engine: ``"torch"``, ``"onnx"`` (needs ``model.onnx`` in the model directory; never imports torch) or
            ``"auto"`` (default, as in ``faceage predict``, so both give the same answer for a face): ONNX Runtime when
            the model directory has ``model.onnx``, else torch (:func:`faceage.inference.engines.resolve_engine`).
        detect: find and align faces; ``False`` treats each image as one pre-cropped aligned face.
        detector: ``"yunet"`` (OpenCV Zoo's, :mod:`faceage.data.yunet`; the default), ``"blazeface"``
            (MediaPipe's, :mod:`faceage.data.blazeface`), ``"hog"`` or ``"cnn"``
            (dlib's HOG or MMOD).
        thorough: smaller faces everywhere, slower: BlazeFace also searches four corner tiles of every photo; HOG is
            always upsampled and its weak hits confirmed by dlib's CNN (:class:`faceage.data.detect.FaceDetector`).
        batch_size: faces per forward pass.
        workers: helpers decoding (and detecting) images in parallel (default: :func:`default_workers`): worker
            processes when :meth:`predict_files` detects faces in many files, threads otherwise.
        threads: intra-op threads of the engine (default: library default).
        round_ages: report whole-year ages (default: the model config's ``round_ages``); ``False`` gives the
            expected age unrounded.
        device: ``"cpu"`` or ``"cuda"`` (torch on the GPU, or onnxruntime's CUDAExecutionProvider); ``ValueError``
            with one line when CUDA is not available.
        level: coverage of the reported interval. A calibrated model must have been calibrated at this level
            (``faceage calibrate --level``); default: its first calibrated level, else 0.9 off the raw distribution.
        calibrated: use the model's calibration when it has one (``False``: the raw distribution's interval).
    """

    def __init__(self, model=None, engine: str = "auto", detect: bool = True, detector: str = DEFAULT_DETECTOR, batch_size: int = 64,
                 workers: int | None = None, threads: int | None = None, round_ages: bool | None = None,
                 device: str = "cpu", level: float | None = None, calibrated: bool = True, thorough: bool = False) -> None:
        from faceage.inference.engines import resolve_engine

        engine = resolve_engine(model, engine, device)
        if model is None:
            from faceage.models.pretrained import bundled_model_dir

            model = bundled_model_dir()
        self.engine_name = engine
        if engine == "onnx":
            from faceage.inference.engines import OnnxEngine

            if not isinstance(model, (str, os.PathLike)):
                raise ValueError("the onnx engine needs a model directory holding model.onnx")
            self.engine = OnnxEngine(model, threads=threads, device=device)
        else:
            from faceage.inference.engines import TorchEngine
            from faceage.models.age_model import load_model

            loaded = model if hasattr(model, "decode") else load_model(model)  # an AgeModel / AgeEnsemble object, or a path
            self.engine = TorchEngine(loaded, device=device, threads=threads)
        self.config = self.engine.config
        self.input_config = self.config["input"]
        self.round_ages = bool(self.config.get("round_ages", False)) if round_ages is None else bool(round_ages)
        from faceage.inference.calibration import DEFAULT_LEVEL, Calibration, interval_key

        self.calibration = Calibration.from_model_config(self.config) if calibrated else None
        if self.calibration is not None and level is not None and not self.calibration.has_level(level):
            raise ValueError(f"the model is calibrated at level(s) {', '.join(interval_key(v) for v in self.calibration.levels)}, not "
                             f"{interval_key(level)}: run `faceage calibrate MODEL --level {interval_key(level)}` or choose a calibrated level")
        if level is None:
            level = self.calibration.levels[0] if self.calibration is not None and self.calibration.levels else DEFAULT_LEVEL
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.level = float(level)
        self.detect = detect
        self.batch_size = batch_size
        self.workers = default_workers(detect) if workers is None else workers
        self.face_chips = FaceChips(self.input_config, detect, detector, thorough)
        self._pool = None  # worker processes of predict_files (started on first use)

    @property
    def detector(self):
        """The face detector + aligner (:attr:`FaceChips.detector`)."""
        return self.face_chips.detector

    # ---- stages -------------------------------------------------------------------------------------------------
    def chips(self, image) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
        """One image (path, bytes, PIL image or uint8 array) -> ``(boxes, chips)``: each face's box and its aligned
        chip preprocessed for the model, ``(N, 3, S, S)`` float32. Raises :class:`ImageLoadError`."""
        return self.face_chips(image)

    def predict_chips(self, chips, boxes: list | None = None) -> list[FaceResult]:
        """Preprocessed chips (:meth:`chips`) or aligned PIL chips -> one :class:`FaceResult` per chip (``boxes``:
        their boxes, default the whole chip)."""
        if len(chips) and isinstance(chips[0], Image.Image):
            chips = self.face_chips.preprocess(list(chips))
        if not len(chips):
            return []
        size = int(self.input_config["image_size"])
        return self._results(boxes if boxes is not None else [(0, 0, size, size)] * len(chips), self.run(np.asarray(chips)))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The engine on preprocessed chips ``(N, 3, S, S)`` in batches: raw outputs (``age`` unrounded, ...)."""
        outs: list[dict[str, np.ndarray]] = []
        for i in range(0, len(batch), self.batch_size):
            outs.append(self.engine(np.ascontiguousarray(batch[i : i + self.batch_size])))
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _results(self, boxes: list, out: dict[str, np.ndarray]) -> list[FaceResult]:
        results = []
        ages = reported_age(out["age"], self.round_ages)
        lo = hi = None
        min_age = int(self.config.get("min_age", 0))
        if "distribution" in out:
            if self.calibration is not None and self.calibration.has_level(self.level):
                lo, hi = self.calibration.intervals(out["distribution"], ages, self.level)
            else:
                lo, hi = interval_from_distribution(out["distribution"], min_age, self.level)
        for i, box in enumerate(boxes):
            r = FaceResult(face=i, box=tuple(int(v) for v in box), age=float(ages[i]))
            if lo is not None:
                r.age_low, r.age_high = float(lo[i]), float(hi[i])
                r.distribution, r.min_age = out["distribution"][i], min_age
            if "gender_prob" in out:
                p = float(out["gender_prob"][i])
                r.gender, r.gender_p = ("female", p) if p >= 0.5 else ("male", 1 - p)
            if "race_probs" in out:
                k = int(np.argmax(out["race_probs"][i]))
                r.race, r.race_p = RACES[k], float(out["race_probs"][i][k])
            results.append(r)
        return results

    # ---- public -------------------------------------------------------------------------------------------------
    def predict(self, image) -> list[FaceResult]:
        """One image (path, bytes, PIL image or uint8 array) -> its faces. Raises :class:`ImageLoadError`."""
        boxes, arrays = self.chips(image)
        return self.predict_chips(arrays, boxes)

    def verify(self, image, over: int = 18, challenge: float | None = None) -> list:
        """Over-``over`` decision for each face of one image (list of
        :class:`faceage.inference.calibration.AgeDecision`): ``pass`` when ``P(age >= over)`` reaches the threshold
        of the model's fitted policy (``faceage calibrate --over``), or, with ``challenge``, when the estimated age
        is at least ``challenge``; else ``refer``. Raises ``ValueError`` when no policy is fitted for ``over``."""
        return self.decisions(self.predict(image), over, challenge)

    def decisions(self, faces: list[FaceResult], over: int = 18, challenge: float | None = None) -> list:
        """:meth:`verify` for faces already predicted."""
        from faceage.inference.calibration import AgeDecision, decide

        policy = self.calibration.policy(over) if self.calibration is not None else None
        threshold = None if policy is None else float(policy["threshold"])
        p = [f.p_over(over) for f in faces]
        passed, rule = decide(None if any(v is None for v in p) else np.array(p, dtype=np.float64), np.array([f.age for f in faces]),
                              over, threshold, challenge)
        name = f"challenge{challenge:g}" if challenge is not None else f"fpr<={policy.get('max_fpr', 0.01):g}@{'-'.join(map(str, policy.get('minor_ages', [over - 5, over - 1])))}"
        return [AgeDecision(f.face, f.age, int(over), "pass" if ok else "refer", v, rule, name) for f, ok, v in zip(faces, passed, p)]

    def predict_files(self, paths: Iterable[str | os.PathLike]) -> Iterator[FileResult]:
        """Files/folders -> one :class:`FileResult` per image file, in order; bad files carry their error and the
        rest go on. Images are decoded (and faces detected) by ``workers`` helpers, a bounded number of files ahead
        of the engine, and faces are batched across files; results do not depend on ``batch_size`` or ``workers``.

        The helpers are worker processes when faces are detected in at least :data:`PROCESS_POOL_MIN_FILES` files
        with ``workers > 1`` (the pool is started once and kept until :meth:`close`), threads otherwise. A file that
        kills its worker process (a crash in a native decoder) gets its own error and the pool is restarted."""
        files = expand_inputs(paths)
        # (path, boxes, arrays, error) in input order; errors wait here too so that batches stay full
        pending: list[tuple[str, list, np.ndarray | None, str | None]] = []

        def flush() -> Iterator[FileResult]:
            arrays = [a for _, boxes, a, _ in pending if boxes]
            out = self.run(np.concatenate(arrays)) if arrays else {}
            start = 0
            for path, boxes, _, error in pending:
                if error is not None:
                    yield FileResult(path, [], error)
                elif not boxes:
                    yield FileResult(path, [], "no face found")
                else:
                    part = {k: v[start : start + len(boxes)] for k, v in out.items()}
                    start += len(boxes)
                    if not np.isfinite(part["age"]).all():  # e.g. a config with std 0: an error, never an "ok" NaN age
                        yield FileResult(path, [], "the model gave a non-finite age (NaN or inf); check its config")
                        continue
                    yield FileResult(path, self._results(boxes, part))
            pending.clear()

        ahead = max(1, self.workers) * 4 + self.batch_size  # bounds memory on huge folders
        n_faces = 0
        for path, prepared in self._prepared(files, ahead):
            if isinstance(prepared, str):
                pending.append((path, [], None, prepared))
            else:
                boxes, arrays = prepared
                pending.append((path, boxes, arrays, None))
                n_faces += len(boxes)
            if n_faces >= self.batch_size or len(pending) >= ahead:
                yield from flush()
                n_faces = 0
        yield from flush()

    def _prepared(self, files: list[str], ahead: int) -> Iterator[tuple[str, tuple | str]]:
        """``(path, (boxes, chips) or problem)`` for each file in order, prepared at most ``ahead`` files ahead."""
        fc = self.face_chips
        # dlib's CNN (the cnn detector, HOG's thorough check) hung in forked workers: threads there
        forkable = fc.detector_kind != "cnn" and not (fc.thorough and fc.detector_kind == "hog")
        if self.detect and forkable and self.workers > 1 and len(files) >= PROCESS_POOL_MIN_FILES and _can_fork():
            yield from self._prepared_in_processes(files, ahead)
            return
        if self.detect and self.workers > 1 and len(files) > 1:
            fc.detector.load()  # once, here: threads starting together would each load the same dlib models
        with ThreadPoolExecutor(max(1, self.workers)) as pool:
            yield from _in_order(files, ahead, lambda path: pool.submit(_prepare, self.face_chips, path))

    def _prepared_in_processes(self, files: list[str], ahead: int) -> Iterator[tuple[str, tuple | str]]:
        from concurrent.futures.process import BrokenProcessPool

        todo = files
        while todo:
            results = _in_order(todo, ahead, self._submit_to_worker)
            for i, (path, prepared) in enumerate(results):
                if not isinstance(prepared, BrokenProcessPool):
                    yield path, (_problem(prepared) if isinstance(prepared, Exception) else prepared)
                    continue
                # the pool is broken: this file goes again alone, to find whether it is the culprit, then the rest
                results.close()
                self.close()
                try:
                    yield path, self._submit_to_worker(path).result()
                except BrokenProcessPool:
                    self.close()
                    yield path, "the image crashed the face detector (its worker process died)"
                todo = todo[i + 1 :]
                break
            else:
                return

    def _submit_to_worker(self, path: str):
        """A future of ``path`` prepared in a worker process; a pool already broken gives a failed future (the caller
        restarts the pool)."""
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._process_pool().submit(_prepare_in_worker, path)
        except BrokenProcessPool as e:
            failed: Future = Future()
            failed.set_exception(e)
            return failed

    def _process_pool(self):
        """The worker processes (started on first use; each builds its own detector once)."""
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.face_chips.detector.load()  # loaded once here, shared by the forked workers
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"), initializer=_init_worker,
                                             initargs=(self.face_chips,))
        return self._pool

    def close(self) -> None:
        """Stops the worker processes of :meth:`predict_files`, if any (they also stop when the predictor is
        garbage-collected or the interpreter exits). After Ctrl-C / SIGTERM (:mod:`faceage._signals`) they are killed
        at once instead of finishing the photos already handed to them."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        from faceage import _signals

        if _signals.received() is not None:
            _signals.kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)  # joins the pool's threads: nothing left to fail at exit

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- image workers --------------------------------------------------------------------------------------------
# With detection, photos are prepared in worker processes: dlib's HOG releases the GIL, but its landmarks, the chips
# and the Python around them do not, and two threads used only ~1.5 of 2 cores. On 48 photos of four 130-px faces
# (2 cores), two threads gave 25.5 photos/s, two processes 42.0 (benchmarks/RESULTS.md, "Detection on photos").
# The workers are forked, as PyTorch's DataLoader forks its workers: they start at once, share the dlib models already
# loaded here, and need no `if __name__ == "__main__"` guard in the user's script (spawn and forkserver re-import the
# main module). They use only dlib, Pillow and NumPy, never the engine whose threads run in this process. Where fork
# is not the platform's way (macOS, Windows) the helpers stay threads.
PROCESS_POOL_MIN_FILES = 16  # fewer files: threads (forking the workers costs more than a few photos)
_worker_chips: FaceChips | None = None


def _can_fork() -> bool:
    import multiprocessing as mp
    import sys

    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def _init_worker(face_chips: FaceChips) -> None:
    global _worker_chips
    _worker_chips = face_chips  # the parent's, inherited by the fork (with its detector's settings and models)
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the parent stops, and shuts the pool down itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker whose parent was killed (kill -9) would wait for work forever: it holds the task pipe's write end
    # itself, so it never reads an end of file. It checks once a second and exits when it has been orphaned.
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="faceage-orphan-watch", daemon=True).start()


def _prepare_in_worker(path: str) -> tuple | str:
    return _prepare(_worker_chips, path)


def _prepare(face_chips: FaceChips, path: str) -> tuple | str:
    """``(boxes, chips)`` of one file, or the one-line problem with it."""
    try:
        return face_chips(path)
    except Exception as e:  # noqa: BLE001 - any decoder surprise is this file's problem only
        return _problem(e)


def _problem(e: Exception) -> str:
    """The one-line problem of a file that could not be prepared."""
    return e.problem if isinstance(e, ImageLoadError) else f"{type(e).__name__}: {e}"


def _in_order(paths: Iterable[str], ahead: int, submit) -> Iterator[tuple]:
    """Submits ``submit(path)`` at most ``ahead`` paths ahead and yields ``(path, result)`` in input order (an
    exception raised by the job becomes the result); closing it early cancels the jobs not yet started."""
    futures: deque = deque()
    queue = iter(paths)
    try:
        for path in queue:
            futures.append((path, submit(path)))
            if len(futures) >= ahead:
                break
        while futures:
            path, future = futures.popleft()
            nxt = next(queue, None)
            if nxt is not None:
                futures.append((nxt, submit(nxt)))
            try:
                result = future.result()
            except Exception as e:  # noqa: BLE001 - handed to the caller, which knows what it means
                result = e
            yield path, result
    finally:
        for _, future in futures:  # consumer stopped early: drop the work not yet started
            future.cancel()
