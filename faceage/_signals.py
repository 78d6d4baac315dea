"""Stopping on SIGINT (Ctrl-C) and SIGTERM, the same way in every command.

:func:`install` (done by every ``faceage`` command) makes the first of these signals raise :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, also when the shell started the process with SIGINT ignored (a
background job ``cmd &`` of a script); while that first stop is cleaned up (pools shut down, a checkpoint saved,
outputs closed), a second signal is ignored, and a third ends the process at once. Work that must not be cut in two
(a row unit, a training step) runs between :func:`hold` and :func:`release`: a signal that arrives then is raised
when the work is done, or after :data:`HOLD_LIMIT_S` at the latest. Processes forked from the one that installed the
handlers (image workers, DataLoader workers) ignore the signals: their parent stops them.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HOLD_LIMIT_S = 1.5  # held work longer than this is cut anyway: a stop takes effect within about 2 s


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    owner: int | None = None  # pid of the process that installed the handlers
    received: int | None = None  # the first stop signal
    count = 0
    raised = False
    holding = 0
    forcing = False
    timer: threading.Timer | None = None
    note: Callable[[], str] | str | None = None


_state = _State()


def install() -> dict | None:
    """Routes SIGINT and SIGTERM to :class:`Interrupted` (in the main thread; a no-op elsewhere); returns the
    previous handlers for :func:`uninstall`."""
    if threading.current_thread() is not threading.main_thread():
        return None
    reset()
    _state.owner = os.getpid()
    return {signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS}


def uninstall(previous: dict | None) -> None:
    """Puts back the handlers :func:`install` replaced (a command run inside another program, such as a test); after
    a stop they stay, so that further signals cannot cut the exit."""
    if previous is None or _state.received is not None or threading.current_thread() is not threading.main_thread():
        return
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _state.owner = None


def reset() -> None:
    """Forgets a previous stop (a new command in the same process)."""
    _cancel_timer()
    _state.received, _state.count, _state.raised, _state.holding, _state.forcing, _state.note = None, 0, False, 0, False, None


def received() -> int | None:
    """The first stop signal received, or ``None``."""
    return _state.received


def set_note(note: Callable[[], str] | str | None) -> None:
    """What was done and how to go on, for the ``interrupted:`` line (text, or a function giving it at the stop)."""
    _state.note = note


def note() -> str | None:
    """The text of :func:`set_note` (``None`` when nothing was set or the function failed)."""
    value = _state.note
    try:
        return value() if callable(value) else value
    except Exception:  # noqa: BLE001 - a note must never turn a clean stop into a traceback
        return None


def hold() -> None:
    """From here a stop signal waits for :func:`release` (at most :data:`HOLD_LIMIT_S`)."""
    _state.holding += 1


def release() -> int | None:
    """Ends a :func:`hold`; returns the stop signal that arrived and was not raised yet, else ``None``. The caller
    then finishes its unit of work (further signals are ignored meanwhile) and calls :func:`stop`."""
    _state.holding = max(0, _state.holding - 1)
    if _state.holding or _state.received is None or _state.raised:
        return None
    _cancel_timer()
    _state.raised = True  # claimed by the caller: a second signal must not cut its clean-up (a checkpoint save)
    return _state.received


def stop() -> None:
    """Raises :class:`Interrupted` for the signal received (after the work a :func:`release` finished)."""
    if _state.received is not None:
        _state.raised = True
        raise Interrupted(_state.received)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """:func:`hold` for a block; a stop signal that arrived inside is raised when the block ends."""
    hold()
    try:
        yield
    finally:
        pending = release()
    if pending is not None:
        stop()


def kill_workers(pool) -> None:
    """Ends a ``ProcessPoolExecutor``'s workers at once, for a stop: the work already handed to them (which a
    shutdown would wait for) is dropped. Their results are lost, never half-written: workers write files atomically."""
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before Python 3.14
        with contextlib.suppress(OSError):
            worker.kill()


def ignore_in_child() -> None:
    """For worker processes started with spawn or forkserver: SIGINT and SIGTERM are their parent's to handle."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _on_signal(signum: int, frame) -> None:
    if os.getpid() != _state.owner:
        return  # a forked worker: the parent shuts it down
    if _state.forcing:  # the hold limit ran out (our own interrupt_main, not the user's)
        _state.forcing = False
        if not _state.raised:
            stop()
        return
    _state.count += 1
    if _state.received is None:
        _state.received = signum
    if _state.count >= 3:
        os.write(2, b"interrupted again: stopping at once\n")
        os._exit(128 + _state.received)
    if _state.raised:
        return  # the first stop is being cleaned up: let it finish (a checkpoint save, the last rows)
    if _state.holding:
        if _state.timer is None:
            _state.timer = threading.Timer(HOLD_LIMIT_S, _force)
            _state.timer.daemon = True
            _state.timer.start()
        return
    stop()


def _force() -> None:
    _state.timer = None
    if _state.raised or not _state.holding:
        return
    _state.forcing = True
    _thread.interrupt_main(_state.received)  # runs _on_signal in the main thread, which raises


def _cancel_timer() -> None:
    timer, _state.timer = _state.timer, None
    if timer is not None:
        timer.cancel()
