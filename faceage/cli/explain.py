"""``faceage explain``: a Grad-CAM heatmap of the age output, overlaid on the face(s) of a photo -> PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceage.cli._common import add_detector_option
from faceage.data.images import ImageLoadError
from faceage.inference.explain import Explainer, ExplainError, explain_faces, overlay_heatmap, tile


def main(argv: list[str] | None = None) -> int:
    """``faceage explain``. Exit status 0 written, 1 no face found, 2 bad arguments / model / image."""
    p = argparse.ArgumentParser(prog="faceage explain", description="Grad-CAM heatmap of the age output, overlaid on the face(s).")
    p.add_argument("image", help="photo (or an aligned face chip with --no-detect)")
    p.add_argument("--model", default=None, help="model dir / .ckpt (default: the bundled model)")
    p.add_argument("--output", default="heatmap.png", help="PNG to write: the overlaid face chips side by side")
    p.add_argument("--no-detect", action="store_true", help="treat the image as one aligned face chip")
    add_detector_option(p)
    p.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity")
    args = p.parse_args(argv)
    try:
        from faceage.inference.predictor import Predictor

        predictor = Predictor(args.model, engine="torch", detect=not args.no_detect, detector=args.detector)  # Grad-CAM needs gradients
        explainer = Explainer(predictor)
        faces = explain_faces(args.image, explainer, None if args.no_detect else predictor.detector)
    except (ExplainError, ImageLoadError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not faces:
        print(f"error: {args.image}: no face found (try --no-detect for a pre-cropped face)", file=sys.stderr)
        return 1
    out = tile([overlay_heatmap(chip, heat, args.alpha) for _, chip, heat in faces])
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        out.save(args.output)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ages = ", ".join(f"{r.age:.1f}" for r in predictor.predict(args.image))
    print(f"wrote {args.output} ({len(faces)} face{'s' if len(faces) != 1 else ''}; predicted age {ages})")
    return 0

