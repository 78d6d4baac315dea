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

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        detector: dlib detector, ``hog`` or ``cnn``.
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
        detector: str = "hog",
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

            from faceage.models.pairs import load_pair_model

            from faceage.inference.engines import check_device

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


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from faceage.cli import add_run_options

    p = argparse.ArgumentParser(
        prog="faceage compare", description="Which of two faces is older (P(left older)).",
        epilog="exit status: 0 the run completed, also when some rows failed (each gets an 'error: row N: ...' line on "
               "stderr); 1 with --strict when any row failed, or two images of which one cannot be read; 2 a failed "
               "run (bad arguments, model, pair file or output, no pairs).")
    p.add_argument("images", nargs="*", help="two images: LEFT RIGHT")
    p.add_argument("--pairs", default=None, help="CSV of pairs 'left,right[,label]' (relative paths: relative to the CSV)")
    add_run_options(p, what="rows")
    p.add_argument("--root", default=None, help="folder the pair CSV's relative paths are relative to (default: the CSV's folder)")
    p.add_argument("--model", default=None, help="pair model or age model dir / .ckpt (default: the bundled age model, age-difference comparator)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="engine for age models; auto (default): ONNX Runtime when the model directory has model.onnx, else torch")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    p.add_argument("--age-scale", type=float, default=2.0, help="years per logit unit for age models without a distribution")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: one per core with detection, one per two cores with --no-detect)")
    p.add_argument("--threads", type=int, default=None, help="engine intra-op threads")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: torch on the GPU, or onnxruntime's CUDA provider (onnxruntime-gpu); one error line when there is none")
    return p


def _compare_two(comparer: FaceComparer, left: str, right: str) -> int:
    try:
        p = comparer.compare_files(left, right)
    except ImageLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if p > 0.5:
        print(f"{left} is older than {right} (probability {p:.3f})")
    elif p < 0.5:
        print(f"{right} is older than {left} (probability {1 - p:.3f})")
    else:
        print(f"cannot tell which of {left} and {right} is older (probability 0.500)")
    print(f"p_left_older={p:.4f} ({comparer.kind})")
    return 0


def _compare_file(comparer: FaceComparer, args: argparse.Namespace) -> int:
    from faceage.data.pair_csv import read_pair_csv
    from faceage.inference.output import Column, OutputError, RowWriter, escape_text
    from faceage.inference.progress import progress_bar, progress_wanted, say

    try:
        rows = read_pair_csv(args.pairs, resolve=False, strict=False)
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: {args.pairs}: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no pairs in {args.pairs}", file=sys.stderr)
        return 2
    columns = [Column("left"), Column("right"), Column("p_left_older", "float", "{:.4f}".format)]
    try:
        out = RowWriter(args.output, columns, fmt=args.format, resume=args.resume, key=("left", "right"))
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_skipped = 0
    if args.resume:  # a pair already written is skipped as often as it is there (a pair file may repeat a pair)
        left_over, todo = out.done_counts.copy(), []
        for r in rows:
            key = out.key_of(r.left, r.right)
            if r.error is None and left_over[key] > 0:
                left_over[key] -= 1
                n_skipped += 1
            else:
                todo.append(r)
        rows = todo
    n_ok = n_failed = 0
    bar = progress_bar(len(rows), "pair", progress_wanted(args.progress, args.quiet), "compare")
    try:
        for result in compare_pair_file(comparer, args.pairs, args.root, rows=rows):
            bar.update(1)
            if result.error is not None:
                n_failed += 1
                say(f"error: row {result.row}: {escape_text(result.error)}")
                continue
            n_ok += 1
            out.write([{"left": result.left, "right": result.right, "p_left_older": result.p_left_older}])
        out.close()  # the last rows, fsync (Parquet: footer + rename): its errors are output errors too
    except OSError as e:
        bar.close()
        print(f"error: {args.output or 'stdout'}: cannot write the output ({e.strerror or e})", file=sys.stderr)
        return 2
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            out.close()  # no-op after a clean close
    if not args.quiet:
        where = f"; {out.format.upper()}: {args.output}" if not out.stdout else ""
        skipped = f", {n_skipped} skipped (already in {args.output})" if args.resume else ""
        print(f"summary: {n_ok} pairs ok, {n_failed} failed{skipped} ({comparer.kind}){where}", file=sys.stderr)
    return 1 if args.strict and n_failed else 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 the run completed (some rows may have failed), 1 a failed row with ``--strict`` (or one of two
    images unreadable), 2 bad arguments, model, pair file or output, or no pairs."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.pairs is None and len(args.images) != 2:
        parser.error("give two images (LEFT RIGHT) or --pairs FILE.csv")
    if args.pairs is not None and args.images:
        parser.error("give either two images or --pairs, not both")
    for option in ("batch_size", "workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.resume and (args.pairs is None or args.output in (None, "-")):
        parser.error("--resume needs --pairs and --output FILE")
    if args.pairs is not None and not Path(args.pairs).is_file():
        print(f"error: {args.pairs}: pair file not found", file=sys.stderr)
        return 2
    from faceage.cli import load_or_report

    comparer = load_or_report(
        FaceComparer, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
        batch_size=args.batch_size, workers=args.workers, threads=args.threads, age_scale=args.age_scale,
        device=args.device,
    )
    if comparer is None:
        return 2
    if args.pairs is None:
        return _compare_two(comparer, *args.images)
    return _compare_file(comparer, args)
