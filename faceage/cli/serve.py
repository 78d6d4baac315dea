"""``faceage serve``: the Gradio web app (:mod:`faceage.app.server`) for a model, until interrupted."""

from __future__ import annotations

import argparse
import sys

from faceage.app.server import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, build_app, launch
from faceage.app.uploads import DEFAULT_CACHE_AGE_S, DEFAULT_CACHE_MB, UploadCache
from faceage.cli._common import add_detector_option, set_interrupt_note


def main(argv: list[str] | None = None) -> int:
    """``faceage serve``. Exit status 0 after a clean shutdown, 2 for a bad model or arguments."""
    p = argparse.ArgumentParser(prog="faceage serve", description="Web app: ages of the faces in a photo; who of two is older.")
    p.add_argument("--model", default=None, help="model dir / .ckpt (default: the bundled model)")
    p.add_argument("--engine", choices=["torch", "onnx"], default="torch", help="onnx: faster answers; heatmaps then read the PyTorch weights beside the graph")
    add_detector_option(p)
    p.add_argument("--pair-model", default=None,
                   help="pair model for 'Who is older?' (default: the age model's distributions)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest accepted upload")
    p.add_argument("--no-heatmap", action="store_true", help="hide the Grad-CAM option")
    p.add_argument("--cache-mb", type=float, default=DEFAULT_CACHE_MB, help="most megabytes of uploads kept on disk")
    p.add_argument("--cache-age", type=float, default=DEFAULT_CACHE_AGE_S, help="seconds an upload is kept on disk")
    args = p.parse_args(argv)
    if args.max_upload_mb <= 0:
        p.error("--max-upload-mb must be > 0")
    if args.cache_mb <= 0 or args.cache_age <= 0:
        p.error("--cache-mb and --cache-age must be > 0")
    try:
        from faceage.inference.predictor import Predictor

        predictor = Predictor(args.model, engine=args.engine, detector=args.detector)
        explainer = None
        if not args.no_heatmap:
            from faceage.inference.explain import Explainer, ExplainError

            try:
                explainer = Explainer(predictor)
            except ExplainError as e:
                print(f"note: heatmaps off: {e}", file=sys.stderr)
        comparer = None
        if args.pair_model:
            from faceage.inference.compare import FaceComparer

            comparer = FaceComparer(args.pair_model, detector=args.detector)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cache = UploadCache(args.cache_mb, args.cache_age)  # before build_app: Gradio reads its folder when building
    set_interrupt_note(f"the web app on {args.host}:{args.port} stopped and its uploads were deleted")
    try:
        demo = build_app(predictor, explainer, comparer, args.max_upload_mb)
        launch(demo, args.host, args.port, args.max_upload_mb, cache=cache)
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        cache.close()
    return 0

