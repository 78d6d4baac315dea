"""``faceage describe``: what one or more datasets (or the splits of one) hold -> side-by-side table, PNG, JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """``faceage describe DATA [DATA ...] [--split-file F] [--plot PNG] [--json F]``: exit 0, or 2 for unreadable data."""
    p = argparse.ArgumentParser(prog="faceage describe", description="Describe datasets side by side before training on them.")
    p.add_argument("roots", nargs="+", help="dataset folders (or CSV files for --dataset csv)")
    p.add_argument("--dataset", nargs="+", default=["auto"],
                   help="reader name (utkface, afad, cacd, appa_real, fgnet, aaf, csv), one for all roots or one per root; "
                        "auto (default): each root's own, recognised from its layout and file names")
    p.add_argument("--split-file", default=None,
                   help="a saved split.json: describe its splits side by side (one dataset)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the histograms and shares as a PNG")
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    p.add_argument("--no-sizes", action="store_true", help="skip reading image headers for sizes")
    args = p.parse_args(argv)
    from faceage.data.readers import read_dataset
    from faceage.data.readers.guess import guess_reader
    from faceage.evaluation.describe import describe_records, format_side_by_side, plot_descriptions
    from faceage.evaluation.metrics import save_json

    if len(args.dataset) not in (1, len(args.roots)):
        p.error(f"give one --dataset, or one per dataset folder ({len(args.roots)})")
    readers = args.dataset * len(args.roots) if len(args.dataset) == 1 else args.dataset
    descriptions: dict = {}
    for root, reader in zip(args.roots, readers):
        if not Path(root).exists():
            print(f"error: {root}: dataset not found", file=sys.stderr)
            return 2
        try:
            reader = guess_reader(root) if reader == "auto" else reader
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)  # names the folder
            return 2
        try:
            records, report = read_dataset(reader, root, check_images=False)
        except (KeyError, ValueError, OSError) as e:
            print(f"error: {root}: {e}", file=sys.stderr)
            return 2
        print(report.summary())
        name = Path(root).name or str(root)
        if args.split_file:
            from faceage.data.splits import load_split

            try:
                split = load_split(args.split_file, records)
            except (ValueError, OSError) as e:
                print(f"error: {args.split_file}: {e}", file=sys.stderr)
                return 2
            for part, idx in split.items():
                descriptions[f"{name}:{part}"] = describe_records([records[i] for i in idx], sizes=not args.no_sizes)
        else:
            descriptions[name] = describe_records(records, report, sizes=not args.no_sizes)
    print(format_side_by_side(descriptions))
    if args.plot:
        print(f"plot written to {plot_descriptions(descriptions, args.plot)}")
    if args.json:
        save_json(descriptions, args.json)
    return 0
