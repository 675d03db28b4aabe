"""A deadline that long work checks between its units: cooperative, never asynchronous.

Building a model (one action, one z3 domain proof at a time), compiling it (one action at
a time) and the engines (one block of states at a time) call `checkpoint()` between units
of work; past the deadline it raises `DeadlinePassed`. Nothing is interrupted in the
middle of a unit, so nothing is left half-built: a model that exists is a whole one.
Without a deadline (`until(None)`, the default) a checkpoint costs one lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_AT: ContextVar[float | None] = ContextVar("deadline", default=None)


class DeadlinePassed(Exception):
    """The deadline set by `until()` has passed."""


def checkpoint() -> None:
    """Raise DeadlinePassed when the deadline has passed."""
    at = _AT.get()
    if at is not None and time.perf_counter() > at:
        raise DeadlinePassed


def remaining() -> float | None:
    """Seconds left before the deadline (None: no deadline)."""
    at = _AT.get()
    return None if at is None else at - time.perf_counter()


@contextmanager
def until(at: float | None) -> Iterator[None]:
    """Work inside the block has until `at` (time.perf_counter()); None: no deadline."""
    token = _AT.set(at)
    try:
        yield
    finally:
        _AT.reset(token)
