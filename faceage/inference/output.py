"""Result rows to CSV, JSON Lines or Parquet, streamed as they are done, that never lose or duplicate a row.

    >>> columns = [Column("file"), Column("age", "float", "{:.2f}".format)]
    >>> with RowWriter("ages.csv", columns, resume=True, key="file") as out:   # "-": stdout
    ...     todo = [f for f in files if out.key_of(f) not in out.done]
    ...     for f in todo:
    ...         out.write([{"file": f, "age": 31.2}])                         # one input's rows: one unit

* **Format**: ``csv``, ``jsonl`` or ``parquet``; by default from the file's extension (``.csv``, ``.jsonl`` /
  ``.ndjson``, ``.parquet`` / ``.pq``), else CSV (and CSV on stdout).
* **Streaming, kill-safe** (CSV, JSONL): each unit (the rows of one input) is encoded first and written with one
  ``write`` call on an unbuffered descriptor, so a process killed at any moment (``kill -9``) leaves whole units
  only, at most followed by a partial last line; the file is ``fsync``-ed at most every 10 seconds
  (:data:`FSYNC_SECONDS`) and at the end, which bounds what a power loss can take. Memory stays constant.
* **Resume** (``resume=True``): the existing file is read, a trailing partial line is cut off, its key column
  values are in :attr:`RowWriter.done` (and how often each: :attr:`RowWriter.done_counts`; a key of several
  columns gives tuples) and new rows are appended, so inputs already there can be skipped.
* **One writer** (a file, not stdout): while a run writes the file it holds an advisory lock (``fcntl.flock`` on
  ``.NAME.lock`` beside it, removed at the end); another run that opens the same file, with or without ``resume``,
  is refused with one line instead of interleaving or truncating its rows. The lock goes with the process, so a
  killed run never leaves the file locked.
* **Parquet** (needs ``pyarrow``): rows are written in row groups of :data:`PARQUET_ROW_GROUP` to a temporary file
  beside the target, renamed onto it at the end; a killed run leaves the previous file (or none), never a broken
  one. ``resume`` copies the previous file's rows first. Parquet cannot go to stdout.
* **Text cells** (columns of kind ``text``, such as file names) are always valid, visible UTF-8: bytes that are
  not UTF-8 (which Python hands over as surrogate escapes, e.g. ``'\\udcff'``) become ``\\xff``, control characters
  (newline, tab, ...) become ``\\x0a``-style escapes (so every row is one line), other lone surrogates
  ``\\udXXX``. A name that really contains such a backslash sequence reads the same: the escape is for humans.
* **Spreadsheet formulas** (CSV only): a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return
  gets a leading ``'`` (the OWASP rule against CSV injection), so ``=HYPERLINK(...)`` stays text in Excel /
  LibreOffice. Numeric columns are written as numbers and never changed (ages and probabilities are never negative).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
FSYNC_SECONDS = 10.0  # kill -9 loses nothing without fsync (the page cache outlives the process); this bounds a power
# loss. Not more often: one fsync took ~0.2 s on this 2-core machine, which once a second would slow a run by ~20%
PARQUET_ROW_GROUP = 4096
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # OWASP "CSV injection"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class OutputError(Exception):
    """The output cannot be written or resumed; ``str(e)`` is one line naming the file and the problem."""


class OutputLock:
    """An exclusive advisory lock on ``.NAME.lock`` beside ``path``, or :class:`OutputError` naming the run that
    holds it. The lock file holds the owner's pid and is removed on :meth:`release`; where there is no ``fcntl``
    (Windows) nothing is locked."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise OutputError(f"{path}: cannot write the output ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                raise OutputError(f"{path}: another faceage run{f' (pid {owner})' if owner.isdigit() else ''} is writing "
                                  "this file; wait for it to end or choose another --output") from None
            try:  # the previous holder may have removed the file between our open and lock: lock the new one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.unlink(self.path)  # while still locked: a waiting run then locks a fresh file
            except OSError:
                pass
            os.close(fd)


@dataclass(frozen=True)
class Column:
    """An output column: ``kind`` is ``text``, ``int``, ``float`` (Parquet types, JSON numbers) or ``json`` (a nested
    value: itself in JSONL, compact JSON text in CSV and Parquet); ``fmt`` turns a non-``None`` value into its CSV cell
    (default ``str``); ``None`` is an empty cell / JSON ``null``."""

    name: str
    kind: str = "text"
    fmt: Callable[[Any], str] | None = None


def output_format(path: str | os.PathLike | None, explicit: str | None = None) -> str:
    """``explicit`` if given, else from ``path``'s extension (see :data:`EXTENSIONS`), else ``csv``."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise OutputError(f"unknown output format {explicit!r} (choose {', '.join(FORMATS)})")
        return explicit
    if path is None or str(path) == "-":
        return "csv"
    return EXTENSIONS.get(Path(path).suffix.lower(), "csv")


def escape_text(value: Any) -> str:
    """Any text (file names as the OS gave them) -> visible valid UTF-8; see the module notes."""
    text = str(value)
    try:
        raw = text.encode("utf-8", "surrogateescape")  # names with undecodable bytes carry them as U+DC80..U+DCFF
    except UnicodeEncodeError:  # other lone surrogates: show their code points
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        text = raw.decode("utf-8", "backslashreplace")  # the undecodable bytes -> \xNN
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def neutralise_formula(text: str) -> str:
    """``'=1+2'`` -> ``"'=1+2"``: a CSV text cell a spreadsheet would run as a formula gets a leading quote."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class RowWriter:
    """Writes rows of ``columns`` to ``target`` (a path, or ``"-"``/``None`` for stdout) in ``fmt``.

    Args:
        target: output file, or ``"-"`` / ``None`` for stdout.
        columns: the columns, in order.
        fmt: ``csv``, ``jsonl`` or ``parquet``; ``None``: from the extension (:func:`output_format`).
        resume: keep the rows already in ``target`` and append; their ``key`` values are in :attr:`done`.
        key: the column that names an input (needed with ``resume``), or several (``("left", "right")``).

    Raises:
        OutputError: the file cannot be created, is not resumable (other columns, not the format), or parquet
            without pyarrow / to stdout.
    """

    def __init__(self, target: str | os.PathLike | None, columns: Sequence[Column], fmt: str | None = None,
                 resume: bool = False, key: str | Sequence[str] | None = None) -> None:
        self.stdout = target is None or str(target) == "-"
        self.path = None if self.stdout else Path(target)
        self.format = output_format(target, fmt)
        self.columns = list(columns)
        self.names = [c.name for c in self.columns]
        self.key = key
        self.key_columns = () if key is None else (key,) if isinstance(key, str) else tuple(key)
        self.done_counts: Counter = Counter()  # stored key value -> rows with it already in the file
        self._done: frozenset | None = None
        self.rows_written = 0
        self._fd: int | None = None
        self._last_sync = time.monotonic()
        self._parquet = None
        if resume and (self.stdout or key is None):
            raise OutputError("--resume needs --output FILE (rows already there are skipped)")
        if any(k not in self.names for k in self.key_columns):
            raise ValueError(f"key {key!r} is not among the columns {self.names}")
        self._lock: OutputLock | None = None
        if self.format == "parquet" and self.stdout:
            raise OutputError("parquet output needs --output FILE.parquet (not stdout)")
        if not self.stdout:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{self.path}: cannot write the output ({e.strerror or e})") from None
            self._lock = OutputLock(self.path)  # before the file is truncated or read for resume
        try:
            if self.format == "parquet":
                self._open_parquet(resume)
            elif not self.stdout:
                self._open_text(resume)
            elif self.format == "csv":
                self._emit(self._csv_lines([self.names]))
        except BaseException:
            self._release_lock()
            raise

    # ---- cells --------------------------------------------------------------------------------------------------
    def text(self, value: Any) -> str:
        """How a text value is stored in this format (escaped; formula-neutralised in CSV)."""
        text = escape_text(value)
        return neutralise_formula(text) if self.format == "csv" else text

    @property
    def done(self) -> frozenset:
        """The key values of the rows that were in the file when it was opened (``resume``)."""
        if self._done is None:
            self._done = frozenset(self.done_counts)
        return self._done

    def key_of(self, *values: Any) -> str | tuple[str, ...]:
        """The stored form of a key value (one per key column), to test ``writer.key_of(path) in writer.done``."""
        stored = tuple(self.text(v) for v in values)
        return stored[0] if len(stored) == 1 else stored

    def _add_done(self, values: Sequence[Any]) -> None:
        if all(v is not None for v in values):
            self.done_counts[values[0] if len(values) == 1 else tuple(values)] += 1

    def _csv_cell(self, column: Column, value: Any) -> str:
        if value is None:
            return ""
        if column.kind == "json":
            return json.dumps(value, separators=(",", ":"))
        if column.kind == "text":
            return self.text(value)
        return column.fmt(value) if column.fmt else str(value)

    def _json_value(self, column: Column, value: Any) -> Any:
        if value is None:
            return None
        if column.kind == "json":
            return value
        if column.kind == "text":
            return self.text(value)
        return int(value) if column.kind == "int" else float(value)

    def _parquet_value(self, column: Column, value: Any) -> Any:
        if column.kind == "json" and value is not None:
            return json.dumps(value, separators=(",", ":"))
        return self._json_value(column, value)

    @staticmethod
    def _csv_lines(rows: Iterable[Sequence[str]]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue()

    # ---- text formats -------------------------------------------------------------------------------------------
    def _open_text(self, resume: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (0 if resume else os.O_TRUNC)
            self._fd = os.open(self.path, flags, 0o666)
            size = os.fstat(self._fd).st_size
            if resume and size:
                with open(self.path, "rb") as f:
                    data = f.read()
                cut = data.rfind(b"\n") + 1  # a killed run may have left a partial last line: drop it
                if cut < len(data):
                    os.ftruncate(self._fd, cut)
                self._read_done(data[:cut].decode("utf-8", "replace"))
                os.lseek(self._fd, 0, os.SEEK_END)
                if cut:
                    return
        except OSError as e:
            self._close_fd()
            raise OutputError(f"{self.path}: cannot write the output ({e.strerror or e})") from None
        if self.format == "csv":
            self._emit(self._csv_lines([self.names]))

    def _read_done(self, text: str) -> None:
        if self.format == "csv":
            rows = csv.reader(io.StringIO(text))
            header = next(rows, None)
            if header is None:
                return
            if header != self.names:
                self._close_fd()
                raise OutputError(f"{self.path}: cannot resume: its columns are {','.join(header)}, not {','.join(self.names)}")
            index = [self.names.index(k) for k in self.key_columns]
            for row in rows:
                if len(row) == len(self.names):
                    self._add_done([row[i] for i in index])
            return
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                self._close_fd()
                raise OutputError(f"{self.path}: cannot resume: line {n} is not JSON") from None
            if isinstance(row, dict):
                self._add_done([None if row.get(k) is None else str(row[k]) for k in self.key_columns])

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._fd is None:  # stdout: text already escaped, so any encoding of the terminal is fine as UTF-8 bytes
            stream = sys.stdout
            if hasattr(stream, "buffer"):
                stream.flush()
                stream.buffer.write(data)
                stream.buffer.flush()
            else:
                stream.write(text)
                stream.flush()
            return
        view = memoryview(data)
        while view:  # one write() in practice; a regular file only returns short on a full disk (then OSError)
            view = view[os.write(self._fd, view):]
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_SECONDS:
            os.fsync(self._fd)
            self._last_sync = now

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)

    # ---- parquet ------------------------------------------------------------------------------------------------
    def _open_parquet(self, resume: bool) -> None:
        if self.stdout:
            raise OutputError("parquet output needs --output FILE.parquet (not stdout)")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise OutputError("parquet output needs the pyarrow package: pip install pyarrow") from None
        types = {"text": pa.string(), "int": pa.int64(), "float": pa.float64(), "json": pa.string()}
        self._pa = pa
        self._schema = pa.schema([(c.name, types[c.kind]) for c in self.columns])
        self._pending: list[Mapping] = []
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            previous = None
            if resume and self.path.exists():
                try:
                    previous = pq.ParquetFile(self.path)
                except Exception as e:  # noqa: BLE001 - any pyarrow error means "not a parquet file we can extend"
                    raise OutputError(f"{self.path}: cannot resume: not a readable parquet file ({e})") from None
                if previous.schema_arrow.names != self.names:
                    raise OutputError(f"{self.path}: cannot resume: its columns are {','.join(previous.schema_arrow.names)}, not {','.join(self.names)}")
            self._parquet = pq.ParquetWriter(self._tmp, self._schema)
            if previous is not None:
                for batch in previous.iter_batches(batch_size=PARQUET_ROW_GROUP):
                    self._parquet.write_table(pa.Table.from_batches([batch]).cast(self._schema))
                    keys = [batch.column(self.names.index(k)).to_pylist() for k in self.key_columns]
                    for values in zip(*keys):
                        self._add_done([None if v is None else str(v) for v in values])
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write the output ({e.strerror or e})") from None

    def _flush_parquet(self) -> None:
        if self._pending:
            columns = {c.name: [self._parquet_value(c, row.get(c.name)) for row in self._pending] for c in self.columns}
            self._parquet.write_table(self._pa.Table.from_pydict(columns, schema=self._schema))
            self._pending.clear()

    # ---- public -------------------------------------------------------------------------------------------------
    def write(self, rows: Sequence[Mapping]) -> None:
        """One unit (the rows of one input): all of them reach the file together, or none (CSV, JSONL)."""
        if not rows:
            return
        self.rows_written += len(rows)
        if self.format == "parquet":
            self._pending.extend(rows)
            if len(self._pending) >= PARQUET_ROW_GROUP:
                self._flush_parquet()
            return
        if self.format == "csv":
            text = self._csv_lines([[self._csv_cell(c, row.get(c.name)) for c in self.columns] for row in rows])
        else:
            text = "".join(json.dumps({c.name: self._json_value(c, row.get(c.name)) for c in self.columns}, ensure_ascii=False) + "\n" for row in rows)
        self._emit(text)

    def close(self) -> None:
        """Flushes and ``fsync``-s (Parquet: writes the footer and renames the file into place); releases the lock."""
        try:
            if self._parquet is not None:
                self._flush_parquet()
                writer, self._parquet = self._parquet, None
                writer.close()
                os.replace(self._tmp, self.path)
            self._close_fd()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# faceage predict's rows
# ----------------------------------------------------------------------------------------------------------


def _age(value: float) -> str:
    from faceage.inference.predictor import format_age

    return format_age(value)


def _p(value: float) -> str:
    return format(value, ".4f")


def _g(value: float) -> str:
    return format(value, "g")


PREDICT_COLUMNS = (
    Column("file"), Column("face", "int"), Column("age", "float", _age), Column("age_low", "float", _g),
    Column("age_high", "float", _g), Column("gender"), Column("gender_p", "float", _p), Column("race"),
    Column("race_p", "float", _p), Column("left", "int"), Column("top", "int"), Column("right", "int"),
    Column("bottom", "int"),
)


# with --distribution (and by default in JSONL / Parquet): the compact age distribution and the usual over-N
# probabilities (from the distribution itself; a calibrated over-N decision is ``faceage verify``)
OVER_AGES = (18, 21, 25)
DISTRIBUTION_COLUMNS = (Column("distribution", "json"),) + tuple(Column(f"p_over_{n}", "float", _p) for n in OVER_AGES)


def prediction_rows(result, distribution: bool = False) -> list[dict]:
    """A :class:`faceage.inference.predictor.FileResult` -> one row (dict over :data:`PREDICT_COLUMNS`, plus
    :data:`DISTRIBUTION_COLUMNS` when ``distribution``) per face."""
    rows = []
    for f in result.faces:
        left, top, right, bottom = f.box
        row = {"file": result.path, "face": f.face, "age": f.age, "age_low": f.age_low, "age_high": f.age_high,
               "gender": f.gender, "gender_p": f.gender_p, "race": f.race, "race_p": f.race_p,
               "left": left, "top": top, "right": right, "bottom": bottom}
        if distribution:
            has = getattr(f, "distribution", None) is not None
            row["distribution"] = f.to_dict(distribution=True).get("distribution") if has else None
            row.update({f"p_over_{n}": f.p_over(n) if has else None for n in OVER_AGES})
        rows.append(row)
    return rows


VERIFY_COLUMNS = (
    Column("file"), Column("face", "int"), Column("age", "float", _age), Column("decision"), Column("p_over", "float", _p),
    Column("rule"), Column("age_low", "float", _g), Column("age_high", "float", _g),
)


def verify_rows(result, decisions) -> list[dict]:
    """A :class:`FileResult` and its faces' :class:`~faceage.inference.calibration.AgeDecision` s -> rows over
    :data:`VERIFY_COLUMNS`."""
    return [{"file": result.path, "face": d.face, "age": d.age, "decision": d.decision, "p_over": d.p_over, "rule": d.rule,
             "age_low": f.age_low, "age_high": f.age_high} for f, d in zip(result.faces, decisions)]
