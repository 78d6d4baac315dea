"""``faceage predict``: ages of the faces in images, videos or folders -> CSV / JSONL / Parquet, annotated copies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceage.cli._common import EXIT_CODES, add_engine_options, add_run_options, load_or_report, stream_files


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceage predict", description="Estimate the age of every face in images or folders.",
                                epilog=EXIT_CODES)
    p.add_argument("paths", nargs="+", help="image or video files (.mp4 .avi .mov .mkv .webm), or folders")
    p.add_argument("--model", default=None, help="model dir / .ckpt (default: the bundled model)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="videos: every N-th frame (rows get frame, time_s, track; one row per track with frame empty "
                        "holds its median age)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: 'local' (default) starts a local Ray, 'auto' / ray://HOST:10001 / HOST:6379 "
                        "joins a cluster (images only; every node must see the files)")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto (default): ONNX Runtime when the model directory has model.onnx (no torch import), else torch")
    add_run_options(p)
    p.add_argument("--annotate", default=None, metavar="DIR", help="write copies with boxes and ages drawn into DIR")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one pre-cropped aligned face")
    p.add_argument("--thorough", action="store_true",
                   help="smaller faces everywhere, slower: BlazeFace also searches four corner tiles of every photo (by "
                        "default only where the whole photo gave no face); with --detector hog, HOG upsampled by 2 and "
                        "weak hits confirmed by dlib's CNN (faces from ~40 px)")
    add_engine_options(p)
    p.add_argument("--fractional-ages", action="store_true",
                   help="report the expected age unrounded, also for a model that reports whole years (round_ages)")
    p.add_argument("--level", type=float, default=None,
                   help="coverage of the age interval (a calibrated model: a level it was calibrated at; default: its first)")
    p.add_argument("--distribution", action="store_true",
                   help="also write each face's age distribution ({start, p}) and P(age >= 18/21/25); on by default for jsonl/parquet")
    return p


CSV_COLUMNS = ["file", "face", "age", "age_low", "age_high", "gender", "gender_p", "race", "race_p", "left", "top", "right", "bottom"]


def main(argv: list[str]) -> int:
    """Exit status: 0 the run completed (some files may have failed), 1 some failed with ``--strict``, 2 bad
    arguments / model / output / no input images."""
    parser = _predict_parser()
    args = parser.parse_args(argv)
    for option in ("batch_size", "workers", "threads", "every"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.resume and args.output in (None, "-"):
        parser.error("--resume needs --output FILE")
    from faceage.data.video import is_video_file
    from faceage.inference.output import (
        DISTRIBUTION_COLUMNS,
        PREDICT_COLUMNS,
        OutputError,
        RowWriter,
        escape_text,
        output_format,
        prediction_rows,
    )
    from faceage.inference.predictor import Predictor, expand_inputs
    from faceage.inference.progress import say

    files = expand_inputs(args.paths, videos=True)
    videos = [f for f in files if is_video_file(f)]
    if videos and args.ray:
        parser.error("--ray takes images only; run videos without --ray")
    if not files:
        print(f"error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    predictor = load_or_report(Predictor, args.model, engine=args.engine, detect=not args.no_detect, detector=args.detector,
                               batch_size=args.batch_size, workers=args.workers, threads=args.threads,
                               round_ages=False if args.fractional_ages else None, device=args.device, level=args.level,
                               thorough=args.thorough)
    if predictor is None:
        return 2
    annotate_dir = Path(args.annotate) if args.annotate else None
    try:
        with_distribution = args.distribution or output_format(args.output, args.format) != "csv"
        columns = PREDICT_COLUMNS + (DISTRIBUTION_COLUMNS if with_distribution else ())
        if videos:
            from faceage.inference.video import video_columns

            columns = video_columns(with_distribution)
        out = RowWriter(args.output, columns, fmt=args.format, resume=args.resume, key="file")
        if annotate_dir:
            annotate_dir.mkdir(parents=True, exist_ok=True)
    except (OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    used_names: set[str] = set()

    def annotate_target(source: str) -> Path:
        # DIR/<stem>.jpg, made unique when inputs share a stem (a.jpg and a.png, or the same name in subfolders)
        stem = Path(source).stem or "image"
        name, n = f"{stem}.jpg", 1
        while name.lower() in used_names:
            name, n = f"{stem}_{n}.jpg", n + 1
        used_names.add(name.lower())
        return annotate_dir / name

    def after(result) -> None:
        if annotate_dir:
            from faceage.data.images import ImageLoadError, load_image
            from faceage.inference.annotate import annotate

            try:
                annotate(load_image(result.path), result.faces).save(annotate_target(result.path), "JPEG", quality=92)
            except (ImageLoadError, OSError) as e:
                say(f"warning: {escape_text(result.path)}: annotated image not written ({e})")

    rows_of = lambda result: prediction_rows(result, distribution=with_distribution)  # noqa: E731
    run = None
    if args.ray:
        from faceage.inference.distributed import ray_predict_files

        def run(todo):
            return ray_predict_files(todo, args.ray, {
                "model": args.model, "engine": predictor.engine_name, "detect": not args.no_detect, "detector": args.detector,
                "batch_size": args.batch_size, "round_ages": False if args.fractional_ages else None, "device": args.device,
                "level": args.level, **({"threads": args.threads} if args.threads else {})})

    def video_unit(path):
        from faceage.inference.video import predict_video, video_rows

        video = predict_video(predictor, path, args.every)
        if video.error:
            return video.error, [], 0
        if not args.quiet:
            from faceage.inference.predictor import format_age

            for t in video.tracks:
                say(f"track: {escape_text(path)} #{t.track}: age {format_age(t.age)} (median of {t.frames} frames, "
                    f"{t.first_frame}-{t.last_frame})")
        return None, video_rows(video, distribution=with_distribution), sum(len(fr.faces) for fr in video.frames)

    counts = stream_files(args, predictor, files, out, rows_of, "predict", after, run=run,
                          special=(is_video_file, video_unit))
    if counts is None:
        return 2
    n_ok, n_failed, n_faces, n_skipped = counts
    if not args.quiet:
        where = f"; {out.format.upper()}: {args.output}" if not out.stdout else ""
        where += f"; annotated images: {annotate_dir}" if annotate_dir else ""
        skipped = f", {n_skipped} skipped (already in {args.output})" if args.resume else ""
        print(f"summary: {n_ok} ok, {n_failed} failed, {n_faces} faces{skipped}{where}", file=sys.stderr)
    return 1 if args.strict and n_failed else 0
