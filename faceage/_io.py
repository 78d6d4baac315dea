"""Small file helpers shared across the package."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to a temp file beside ``path`` and renames it into place.

    Readers (another DDP rank, a resumed run) then see either no file or the whole file, never a half-written one;
    the temp name carries the process id so concurrent writers do not clobber each other's temp file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding=encoding)
    os.replace(tmp, path)
