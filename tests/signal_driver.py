"""Runs the checker as `python -m checker` does, with a signal sent to itself at a named
point of an export (tests/test_signals.py); the checker's own code is not changed.

    python tests/signal_driver.py POINT SIGNAL CHECKER-ARGS...

POINT is `search` (as the search starts), `render` (before the second format is
rendered), `write` (before the second file is written) or `commit` (while the files are
renamed into place, where signals are held off until the renames are done).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from checker import cli, export, files
from checker.__main__ import entry


def send_at(owner: Any, name: str, sig: int, nth: int = 1) -> None:
    real: Callable[..., Any] = getattr(owner, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def main() -> None:
    point, name, *args = sys.argv[1:]
    sig = getattr(signal, name)
    where = {"search": (cli.ExplicitSearch, "run", 1), "render": (export, "render", 2),
             "write": (files, "_write", 2), "commit": (files, "_commit", 1)}
    owner, function, nth = where[point]
    send_at(owner, function, sig, nth)
    sys.argv = ["checker", *args]
    entry()


if __name__ == "__main__":
    main()
