"""``faceage prepare``: detect and align the faces of a photo folder once; cache the aligned chips for training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceage.cli._common import add_detector_option, set_interrupt_note


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage prepare", description="Detect and align faces once; cache the aligned chips.")
    p.add_argument("root", help="folder of raw photos")
    p.add_argument("output", help="folder for aligned chips (file names kept, so labels in names still parse)")
    add_detector_option(p)
    p.add_argument("--chip-size", type=int, default=200)
    p.add_argument("--padding", type=float, default=None, help="alignment padding (default: UTKFace-like)")
    p.add_argument("--largest", action="store_true", help="keep the largest face when several are found")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not Path(args.root).exists():
        print(f"error: {args.root}: folder not found", file=sys.stderr)
        return 2
    from faceage.data.detect import UTKFACE_PADDING
    from faceage.data.prepare import prepare_images
    from faceage.inference.predictor import expand_inputs
    from faceage.inference.progress import progress_bar, progress_wanted

    bar = None
    counts = {"done": 0, "total": 0}
    set_interrupt_note(lambda: f"{counts['done']:,} of {counts['total']:,} images done (chips in {args.output}); "
                               "run the same command again to go on (the chips made are kept)")

    def progress(done: int, total: int) -> None:
        nonlocal bar
        counts.update(done=done, total=total)
        if bar is None:  # created on the first image: the cached chips count as done already
            bar = progress_bar(total, "image", progress_wanted(args.progress, args.quiet), "prepare")
        bar.update(done - bar.n)

    try:
        report = prepare_images(
            expand_inputs([args.root]), args.output, detector=args.detector, chip_size=args.chip_size,
            padding=UTKFACE_PADDING if args.padding is None else args.padding, workers=args.workers, largest=args.largest,
            root=args.root, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    return 0
