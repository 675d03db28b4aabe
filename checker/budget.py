"""Budgets: a depth bound, a number of distinct states, and a time limit for the whole run.

The time limit counts from the start of the run, not of the search: reading and building
the model, compiling it, the search, the no-progress check, the neighbourhood of a trace
and the export all spend it. The search polls the budget between blocks and stops with
what it has (its figures stay exact); every other phase runs under an alarm that raises
BudgetExceeded at the deadline, naming the phase it stopped.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

from .errors import BudgetExceeded


@dataclass
class Budget:
    depth: int | None = None  # steps from the initial state; None = until the fixpoint
    max_states: int | None = None  # distinct states stored, by the search or a neighbourhood
    time_limit: float | None = None  # seconds from `started`
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float | None:
        return None if self.time_limit is None else self.time_limit - self.elapsed()

    def out_of_time(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self, phase: str, states: int = 0) -> None:
        """Raise BudgetExceeded when time or the state budget has run out in `phase`."""
        if self.out_of_time():
            raise BudgetExceeded("time-limit", phase)
        if self.max_states is not None and states > self.max_states:
            raise BudgetExceeded("max-states", phase)


def valid_time_limit(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds > 0


class Deadline:
    """SIGALRM at the budget's deadline, raising BudgetExceeded in the current phase.

    `phase()` names what the run is doing, and checks the budget itself; `polled()` holds
    the alarm off around code that checks the budget on its own (the search), so that it
    can stop between blocks with its figures intact. Without a time limit, or where
    SIGALRM does not exist, it does nothing.

    An exception raised from a signal handler lands wherever the interpreter is: inside a
    `__del__` it would be printed and lost, so the alarm rings again a moment later
    instead; inside a library that wraps it (ctypes turns it into ArgumentError), the
    wrapped error is still read as the budget running out, once the alarm has rung.
    """

    RETRY = 0.01  # seconds before the alarm rings again when it fell in a __del__

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.current = "starting"
        self.armed = budget.time_limit is not None and hasattr(signal, "setitimer")
        self.rang = False
        self._previous: object = None

    def __enter__(self) -> Deadline:
        if self.armed:
            self._previous = signal.signal(signal.SIGALRM, self._ring)
            self._arm()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
        if self.rang and isinstance(exc, Exception) and not isinstance(exc, BudgetExceeded):
            raise BudgetExceeded("time-limit", self.current) from exc

    def _ring(self, signum: int, frame: FrameType | None) -> None:
        if frame is not None and frame.f_code.co_name == "__del__":
            signal.setitimer(signal.ITIMER_REAL, self.RETRY)
            return
        self.rang = True
        raise BudgetExceeded("time-limit", self.current)

    def _arm(self) -> None:
        left = self.budget.remaining()
        assert left is not None
        if left <= 0:
            raise BudgetExceeded("time-limit", self.current)
        signal.setitimer(signal.ITIMER_REAL, left)

    def phase(self, name: str) -> None:
        self.current = name
        self.budget.check(name)

    @contextlib.contextmanager
    def polled(self, name: str) -> Iterator[None]:
        self.phase(name)
        if not self.armed:
            yield
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            yield
        finally:
            if not self.budget.out_of_time():
                self._arm()
