"""Progress on stderr for long commands (``predict``, ``compare``, ``report``): a tqdm bar with the rate and ETA.

tqdm rather than hand-written printing: it handles terminal width, rate smoothing, ETA and ``write`` above the bar.
The bar shows when stderr is a terminal, or always with ``--progress``; ``--quiet`` turns it off. Messages go through
:func:`say` so that they print above a live bar instead of through it.
"""

from __future__ import annotations

import sys


def progress_wanted(progress: bool = False, quiet: bool = False) -> bool:
    """``--quiet`` wins; ``--progress`` forces the bar; else only on an interactive stderr."""
    if quiet:
        return False
    return bool(progress) or sys.stderr.isatty()


def progress_bar(total: int | None, unit: str, enabled: bool, desc: str | None = None):
    """A tqdm bar on stderr (``disable`` when not ``enabled``: then every call on it is a no-op)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1, mininterval=0.5)


def say(message: str) -> None:
    """One line on stderr, printed above a live progress bar when there is one."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
