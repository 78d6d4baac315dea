"""Small file helpers shared across the package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temp path beside ``path`` to write to; on leaving the block it is renamed onto ``path`` (on an error
    it is removed and ``path`` is untouched).

    Readers (another DDP rank, a resumed run, a cache check) then see either no file or the whole file, never a
    half-written one; the temp name carries the process id so concurrent writers do not clobber each other's temp file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)  # an error (or a kill signal turned exception) leaves the old file, no temp
        raise
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` through :func:`atomic_target`."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding=encoding)
