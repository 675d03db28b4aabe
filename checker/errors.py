"""Exit codes, and the errors that stand for them.

The exit code is the checker's answer, so every way a run can end has its own:

| code | meaning |
|---:|---|
| 0 | every expectation met (or, plainly checked, no violation) |
| 1 | an invariant violated, or an expectation not met |
| 2 | bad usage or bad input: the message names the file, the key and what is allowed |
| 3 | stopped by a budget (--max-states, --time-limit) before the run finished |
| 4 | z3 answered unknown |
| 5 | internal error: a bug in the checker (--debug prints the traceback) |
| 6 | system error: out of memory, a full disk, an output that cannot be written |
| 130 | interrupted (SIGINT, Ctrl-C) |
| 143 | terminated (SIGTERM) |

Errors the checker raises on purpose are `CheckerError`s carrying their code; the
command line maps anything else to INTERNAL, so a crash never reads as a verdict.
Every message is passed through `text.printable()` before it is shown: nothing taken
from a file or an argument can drive the terminal.
"""

from __future__ import annotations

OK = 0
VIOLATION = 1
USAGE = 2
BUDGET = 3
UNKNOWN = 4
INTERNAL = 5
SYSTEM = 6
INTERRUPTED = 130
TERMINATED = 143

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "every expectation met (plainly checked: no violation)"),
    (VIOLATION, "an invariant violated, or an expectation not met"),
    (USAGE, "bad usage or bad input (the message names the file, the key and what is allowed)"),
    (BUDGET, "stopped by --max-states or --time-limit before the run finished"),
    (UNKNOWN, "z3 answered unknown"),
    (INTERNAL, "internal error: a bug in the checker (--debug shows the traceback)"),
    (SYSTEM, "system error: out of memory, a full disk, an output that cannot be written"),
    (INTERRUPTED, "interrupted (SIGINT)"),
    (TERMINATED, "terminated (SIGTERM)"),
)


class CheckerError(Exception):
    """An error the checker reports on purpose, with the exit code it stands for."""

    exit_code = USAGE


class InputError(CheckerError):
    """Bad input: names the file, the key, the problem and what is allowed."""

    exit_code = USAGE

    def __init__(self, source: str, key: str, problem: str, allowed: str = "") -> None:
        tail = f"; allowed: {allowed}" if allowed else ""
        super().__init__(f"{source}: {key}: {problem}{tail}")
        self.source, self.key, self.problem, self.allowed = source, key, problem, allowed


class UsageError(CheckerError):
    """A command line that cannot be run as given."""

    exit_code = USAGE


class BudgetExceeded(CheckerError):
    """A budget ran out outside the search, which stops on its own between blocks."""

    exit_code = BUDGET

    def __init__(self, budget: str, phase: str) -> None:
        super().__init__(f"{budget} budget reached while {phase}")
        self.budget, self.phase = budget, phase


class SystemFailure(CheckerError):
    """The machine, not the input or the checker: memory, disk, an unwritable output."""

    exit_code = SYSTEM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that clean-ups run as for Ctrl-C (a
    BaseException, like KeyboardInterrupt: no `except Exception` may swallow it)."""
