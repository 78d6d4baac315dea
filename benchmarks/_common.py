"""What the benchmark scripts share: where the shared UTKFace data is, and the options that pick a saved split of it."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface"


def split_parser(doc: str | None, split: str | None = "val") -> argparse.ArgumentParser:
    """A parser with ``--data`` and ``--split-file`` (and ``--split``, defaulting to ``split``, unless ``None``)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--split-file", required=True, help="split.json of the runs")
    if split is not None:
        p.add_argument("--split", choices=["train", "val", "test"], default=split)
    return p


def read_split(args: argparse.Namespace) -> tuple[list, dict[str, list[int]]]:
    """UTKFace records of ``args.data`` and the saved split; exits with a clear message when the data is absent."""
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data}: shared UTKFace data not found")
    from faceage.data.readers import read_dataset
    from faceage.data.splits import load_split

    records, _ = read_dataset("utkface", args.data, check_images=False)
    return records, load_split(args.split_file, records)
