"""``faceage compare``: which of two faces is older, with a pair model or from an age model's predictions.

    faceage compare A.jpg B.jpg [--model M]              # prints which is older and the probability
    faceage compare --pairs pairs.csv --output out.csv   # left,right,p_left_older for every readable row

``--model`` may be a pair model (directory or ``PairModule`` checkpoint, see :mod:`faceage.models.pairs`) or an
age model; with an age model, or none (the bundled one), the training-free age-difference comparator is used:
P(A older) from the two predicted age distributions (:func:`p_older_from_distributions`). Each image is one face:
the largest detected face after alignment, or the whole image with ``--no-detect`` (as ``faceage predict``).

With an age model each distinct face of a pair file is run once (cached by path and detection settings, see
:meth:`FaceComparer.age_outputs`) and every pair is then scored from the two cached distributions, so 20,000 pairs
over 2,000 faces cost about one ``faceage predict`` of the 2,000 faces, not 40,000 crops.

A row whose file is missing or unreadable gets ``error: row N: <file>: <problem>`` on stderr and the other rows
are still written (``--output``/``--format`` as ``faceage predict``: CSV, JSONL or Parquet, streamed, text cells
escaped, see :mod:`faceage.inference.output`). Exit status: 0 the run completed (also with failed rows), 1 some
row failed with ``--strict`` (and two images of which one cannot be read), 2 bad arguments, model or pair file, or
no pairs. Relative paths in a pair CSV are relative to the CSV's folder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceage.data.detectors import DEFAULT_DETECTOR
from faceage.data.images import ImageLoadError
from faceage.inference.chips import FaceChips
from faceage.inference.predictor import Predictor, default_workers

CHUNK_ROWS = 256  # pair rows whose images are decoded together (bounds memory on huge pair files)
OUTPUT_COLUMNS = ("left", "right", "p_left_older")
AGE_KEYS = ("age", "distribution")  # the engine outputs a pair score needs (cached per distinct face)


def is_pair_model(source: str | Path | None) -> bool:
    """Whether ``source`` is a pair model (directory whose config has a ``kind``, or a ``PairModule`` checkpoint)
    rather than an age model."""
    from faceage.models.files import source_kind

    return source is not None and source_kind(source) == "pair"


class FaceComparer:
    """P(left face older) for pairs of image files.

    Args:
        model: pair model or age model (directory / checkpoint); ``None`` for the bundled age model.
        engine: ``auto`` (ONNX Runtime when the age model directory has ``model.onnx``, else torch), ``torch`` or
            ``onnx`` (age models only; pair models run with torch).
        detect: detect and align the largest face; ``False`` takes each image as an aligned face.
        detector: ``yunet`` (the default), ``blazeface``, ``hog`` or ``cnn`` (see :class:`faceage.inference.predictor.Predictor`).
        batch_size: images (or pairs) per forward pass.
        workers: image decoding threads (default: :func:`faceage.inference.predictor.default_workers`).
        threads: intra-op threads of the engine.
        age_scale: years per logit unit when an age model gives no distribution.
        device: ``cpu`` or ``cuda`` (see :class:`faceage.inference.predictor.Predictor`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        engine: str = "auto",
        detect: bool = True,
        detector: str = DEFAULT_DETECTOR,
        batch_size: int = 64,
        workers: int | None = None,
        threads: int | None = None,
        age_scale: float = 2.0,
        device: str = "cpu",
    ) -> None:
        self.batch_size = max(1, batch_size)
        self.workers = default_workers(detect) if workers is None else max(1, workers)
        self.age_scale = age_scale
        self.pair_model = None
        if is_pair_model(model):
            if engine not in ("auto", "torch"):
                raise ValueError("pair models run with the torch engine only")
            import torch

            from faceage.inference.engines import check_device
            from faceage.models.pairs import load_pair_model

            check_device(device)
            if device == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"--device cuda: CUDA is not available to torch {torch.__version__} here; use --device cpu")
            if threads:
                torch.set_num_threads(threads)
            self.device = device
            self.pair_model = load_pair_model(model).eval().to(device)
            self.kind = self.pair_model.kind
            self.prepper = None
            self.face_chips = FaceChips(self.pair_model.input_config, detect, detector)
        else:
            self.prepper = Predictor(
                model, engine=engine, detect=detect, detector=detector, batch_size=batch_size, workers=self.workers, threads=threads,
                device=device,
            )
            self.face_chips = self.prepper.face_chips
            self.kind = "age_difference"
        # (path, detect, detector) -> the engine's age outputs for that face, or its ImageLoadError: each distinct
        # face of a pair file is decoded and run once (age models only; a pair model needs the two images together)
        self._cache: dict[tuple, dict[str, np.ndarray] | ImageLoadError] = {}

    # ---- images -------------------------------------------------------------------------------------------------
    def prepare(self, path: str) -> np.ndarray:
        """One image file -> its largest face, preprocessed ``(3, S, S)``.

        Raises:
            ImageLoadError: unreadable file, or no face found.
        """
        try:
            boxes, arrays = self.face_chips(path)
        except ImageLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder/detector surprise is this file's problem only
            raise ImageLoadError(path, f"{type(e).__name__}: {e}") from None
        if not boxes:
            raise ImageLoadError(path, "no face found")
        return arrays[0]

    def prepare_many(self, paths: Sequence[str]) -> dict[str, np.ndarray | ImageLoadError]:
        """Unique paths -> face array or the error, decoded in ``workers`` threads."""

        def one(path: str) -> np.ndarray | ImageLoadError:
            try:
                return self.prepare(path)
            except ImageLoadError as e:
                return e

        unique = list(dict.fromkeys(paths))
        with ThreadPoolExecutor(self.workers) as pool:
            return dict(zip(unique, pool.map(one, unique)))

    # ---- scores -------------------------------------------------------------------------------------------------
    def _age_outputs(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        return self.prepper.run(np.ascontiguousarray(faces, dtype=np.float32))

    def cache_key(self, path: str) -> tuple:
        """What makes two face crops the same: the file and the detection settings."""
        return (path, self.face_chips.detect, self.face_chips.detector_kind)

    def age_outputs(self, paths: Sequence[str]) -> dict[str, dict[str, np.ndarray] | ImageLoadError]:
        """Paths -> the age engine's outputs (``age``, ``distribution``) for each one's face, or its error; a path
        seen before (same detection settings) comes from the cache, the new ones are decoded in ``workers`` threads
        and run in batches. Age models only."""
        new = [p for p in dict.fromkeys(paths) if self.cache_key(p) not in self._cache]
        if new:
            faces = self.prepare_many(new)
            ok = [p for p in new if not isinstance(faces[p], ImageLoadError)]
            for p in new:
                if p not in ok:
                    self._cache[self.cache_key(p)] = faces[p]
            if ok:
                out = self._age_outputs(np.stack([faces[p] for p in ok]))
                for i, p in enumerate(ok):
                    self._cache[self.cache_key(p)] = {k: out[k][i] for k in AGE_KEYS if k in out}
        return {p: self._cache[self.cache_key(p)] for p in paths}

    def p_from_age_outputs(self, left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> np.ndarray:
        """Stacked age outputs of the left and right faces -> P(left older) ``(B,)``
        (:func:`faceage.models.pair_scores.p_older`)."""
        from faceage.models.pair_scores import p_older

        return np.asarray(p_older(left, right, self.age_scale))

    def p_left_older(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Preprocessed faces ``(B, 3, S, S)`` each -> P(left older) ``(B,)``."""
        if len(left) == 0:
            return np.zeros(0, dtype=np.float64)
        if self.pair_model is None:
            out = self._age_outputs(np.concatenate([left, right]))
            n = len(left)
            return self.p_from_age_outputs({k: v[:n] for k, v in out.items()}, {k: v[n:] for k, v in out.items()})
        import torch

        probs = []
        with torch.inference_mode():
            for i in range(0, len(left), self.batch_size):
                lt = torch.from_numpy(np.ascontiguousarray(left[i : i + self.batch_size])).to(self.device)
                rt = torch.from_numpy(np.ascontiguousarray(right[i : i + self.batch_size])).to(self.device)
                probs.append(self.pair_model.predict_proba(lt, rt).double().cpu().numpy())
        return np.concatenate(probs)

    def compare_files(self, left: str, right: str) -> float:
        """P(``left`` face older than ``right`` face). Raises :class:`ImageLoadError`."""
        faces = self.prepare_many([left, right])
        for path in (left, right):
            if isinstance(faces[path], ImageLoadError):
                raise faces[path]
        return float(self.p_left_older(faces[left][None], faces[right][None])[0])


# ----------------------------------------------------------------------------------------------------------
# Pair files
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RowResult:
    """Outcome of one pair row: the probability, or the problem (``error``) that stopped it."""

    row: int
    left: str
    right: str
    p_left_older: float | None = None
    error: str | None = None


def compare_pair_file(comparer: FaceComparer, pairs_csv: str | Path, root: str | Path | None = None, rows: list | None = None) -> Iterator[RowResult]:
    """Rows of a pair CSV -> one :class:`RowResult` each, in order; bad rows carry their error.

    Args:
        comparer: the comparer.
        pairs_csv: ``left,right[,label]`` file (see :func:`faceage.data.pairs.read_pair_csv`).
        root: folder relative image paths are resolved against (default: the CSV's folder).
        rows: the file's rows when already read (``read_pair_csv(pairs_csv, resolve=False, strict=False)``).
    """
    from faceage.data.pair_csv import read_pair_csv, resolve_pair_path

    folder = Path(root) if root is not None else Path(pairs_csv).parent
    if rows is None:
        rows = read_pair_csv(pairs_csv, resolve=False, strict=False)
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        full = {(r.row, side): resolve_pair_path(getattr(r, side), folder) for r in chunk if r.error is None for side in ("left", "right")}
        if comparer.pair_model is None:
            yield from _score_chunk_from_cache(comparer, chunk, full)
            continue
        faces = comparer.prepare_many(list(full.values()))
        ok: list[tuple] = []
        results: dict[int, RowResult] = {}
        for r in chunk:
            result = RowResult(r.row, r.left, r.right, error=r.error)
            if r.error is None:
                for side in ("left", "right"):
                    face = faces[full[(r.row, side)]]
                    if isinstance(face, ImageLoadError):
                        result.error = f"{getattr(r, side)}: {face.problem}"
                        break
                else:
                    ok.append((r.row, faces[full[(r.row, 'left')]], faces[full[(r.row, 'right')]]))
            results[r.row] = result
        if ok:
            probs = comparer.p_left_older(np.stack([o[1] for o in ok]), np.stack([o[2] for o in ok]))
            for (row, _, _), p in zip(ok, probs):
                results[row].p_left_older = float(p)
        yield from (results[r.row] for r in chunk)


def _score_chunk_from_cache(comparer: FaceComparer, chunk: list, full: dict) -> Iterator[RowResult]:
    """Age-model rows: each distinct face once (:meth:`FaceComparer.age_outputs`), then the pairs from the cache."""
    outputs = comparer.age_outputs(list(full.values()))
    results: list[RowResult] = []
    ok: list[RowResult] = []
    for r in chunk:
        result = RowResult(r.row, r.left, r.right, error=r.error)
        if r.error is None:
            for side in ("left", "right"):
                out = outputs[full[(r.row, side)]]
                if isinstance(out, ImageLoadError):
                    result.error = f"{getattr(r, side)}: {out.problem}"
                    break
            else:
                ok.append(result)
        results.append(result)
    if ok:
        keys = outputs[full[(ok[0].row, "left")]].keys()
        stack = {side: {k: np.stack([outputs[full[(o.row, side)]][k] for o in ok]) for k in keys} for side in ("left", "right")}
        for result, p in zip(ok, comparer.p_from_age_outputs(stack["left"], stack["right"])):
            result.p_left_older = float(p)
    yield from results
