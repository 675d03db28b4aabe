"""Running code from a file outside the tree: a patch extension, a model file.

Whatever that code raises, `SystemExit` included, is the user's mistake, reported as a
`UserCodeError` at the innermost line of the file that was running, so it can never end
the program with an exit code of its own (a verdict). A budget running out, z3's
`unknown` and the machine's memory are not mistakes of the file and pass through.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

from .deadline import DeadlinePassed
from .errors import ModelError, SolverUnknown

T = TypeVar("T")


class UserCodeError(ModelError):
    """A mistake in code from a file: `where` is `path:line` (or the path), `what` the
    error as the file's author would read it."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


def run_from(path: str, run: Callable[[], T]) -> T:
    """`run()`, code of the file at `path`; any mistake in it is a UserCodeError."""
    try:
        return run()
    except (DeadlinePassed, SolverUnknown, MemoryError):
        raise  # not the file's mistake: the run's budget, z3's answer, the machine
    except (Exception, SystemExit) as e:  # the file's own code: any mistake in it is the user's input
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        what = str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"
        raise UserCodeError(f"{path}:{lines[-1]}" if lines else path, what) from None
