"""Ctrl-C and SIGTERM: one way to stop a run, whatever it is doing.

The handlers raise KeyboardInterrupt or Terminated in the main thread, as Python's own
does for SIGINT, and remember which signal asked the run to stop. So a library that
wraps the exception on its way up (ctypes turns an exception raised during an argument
conversion into ArgumentError) cannot turn an interrupt into an internal error: the
command line asks `requested()` first. An exception raised inside a destructor would be
printed and lost, so there the signal is sent again a moment later instead; and the
destructors of objects the signal left half-built fail quietly. `held()`
holds both off around work that must not stop half-way (renaming an export into place).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from .errors import Terminated

RESEND = 0.01  # seconds before a signal that fell in a destructor is sent again
_requested: int | None = None


def install() -> None:
    """Handle SIGTERM, and SIGINT unless it is ignored (a job a shell started in the
    background stays deaf to Ctrl-C, as the shell means it to)."""
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)


def requested() -> int | None:
    """The signal that asked this run to stop, if one did."""
    return _requested


def reset() -> None:
    global _requested
    _requested = None


def _stop(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = signum
    # objects whose construction the signal cut short fail in their destructors while the
    # run unwinds; that is expected now, and not for the terminal
    sys.unraisablehook = _quiet
    if _in_destructor(frame):
        timer = threading.Timer(RESEND, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def _quiet(unraisable: object) -> None:
    pass


def _in_destructor(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then reach their handlers.

    Held at the Python level, not with a signal mask: the kernel may hand a signal to any
    thread (NumPy's and z3's included), and only the main thread's mask would be set;
    Python runs every handler in the main thread, so swapping the handlers holds them all."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    old = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)
