"""The program: `python -m checker` and the `kvm-mmu-checker` script.

Ctrl-C and SIGTERM are handled before the heavy imports (z3, NumPy) start, so an
interrupt at any moment ends the run with one line and its own exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

from . import STARTED, interrupts
from .errors import INTERRUPTED, TERMINATED, Terminated


def entry() -> NoReturn:
    if hasattr(signal, "SIGPIPE"):  # `... | head` ends quietly, as other command-line tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    interrupts.install()
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(TERMINATED)
    code = main(started=STARTED)
    if interrupts.requested() is not None:
        # stopped: everything is printed and no file is half-written; skip the finalizers of
        # what the signal cut short
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
