"""Budgets: a depth bound, a number of distinct states, and a time limit for the whole run.

The time limit counts from the start of the program: reading and building the model,
compiling it, the search, the no-progress check, the neighbourhood of a trace and the
export all spend it. Every one of them checks the deadline between units of its work
(`model.lang.checkpoint()`: an action built or compiled, a z3 proof, a block of states,
a format rendered), so a run stops within one unit of the deadline and never in the
middle of one. The search stops with what it has (its figures stay exact); any other
phase raises BudgetExceeded, naming the phase.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from model.lang import DeadlinePassed, until

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
    """The run's time limit as the deadline its phases check; `phase()` names what the
    run is doing, so that the budget running out says where."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.current = "starting"
        self._stack = ExitStack()

    def __enter__(self) -> Deadline:
        at = None if self.budget.time_limit is None else self.budget.started + self.budget.time_limit
        self._stack.enter_context(until(at))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._stack.close()
        if isinstance(exc, DeadlinePassed):
            raise BudgetExceeded("time-limit", self.current) from None

    def phase(self, name: str) -> None:
        self.current = name
        self.budget.check(name)
