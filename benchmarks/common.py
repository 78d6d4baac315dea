"""What the benchmark scripts share: where the shared UTKFace data is (and the one message when it is absent), the
options that pick a saved split of it, the machine description, the cache folder, atomic JSON writing and the
``faceage`` command."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "utkface"  # ../shared/data/utkface beside the checkout


def faceage_executable() -> list[str]:
    """The ``faceage`` console script beside this interpreter, else ``python -m faceage.cli`` (same start-up)."""
    script = Path(sys.executable).parent / "faceage"
    return [str(script)] if script.exists() else [sys.executable, "-m", "faceage.cli"]


def default_cache() -> Path:
    """``$FACEAGE_CACHE`` or ``~/.cache/faceage``: where benchmarks keep throwaway runs and computed features."""
    return Path(os.environ.get("FACEAGE_CACHE") or Path.home() / ".cache" / "faceage")


def add_cache_option(parser: argparse.ArgumentParser, sub: str, what: str) -> None:
    """``--cache DIR`` (default ``default_cache() / sub``) for ``what`` the script keeps between steps."""
    parser.add_argument("--cache", type=Path, default=default_cache() / sub,
                        help=f"folder for {what} (default: $FACEAGE_CACHE or ~/.cache/faceage, then {sub})")


def require_data(path: str | os.PathLike, what: str = "shared UTKFace data") -> Path:
    """``path`` as a folder; exits with one line naming it when it is absent."""
    if not Path(path).is_dir():
        raise SystemExit(f"{path}: {what} not found (pass --data DIR)")
    return Path(path)


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
    require_data(args.data)
    from faceage.data.readers import read_dataset
    from faceage.data.splits import load_split

    records, _ = read_dataset("utkface", args.data, check_images=False)
    return records, load_split(args.split_file, records)


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of those ``packages`` that are installed."""
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Platform, CPU counts (all and usable by this process), Python, load average and ``packages``' versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": package_versions(packages),
    }


def write_json(result: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Writes ``result`` (numpy values and paths allowed) as indented JSON, atomically, creating parent folders."""
    from faceage.evaluation.metrics import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(result), indent=indent, allow_nan=False) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)  # readers see the old file or the whole new one, never half of it
    return path
