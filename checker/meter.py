"""The progress display of a long run on a terminal, and the memory figures it shows.

One line on stderr, rewritten in place, once a run passes one second: the spec, the level
being built and how much of its frontier is expanded (with an estimate for the rest of
the level), distinct and generated states, states per second, elapsed time, the memory
in use, and how much of each budget is spent. Nothing is shown when stderr is not a
terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import TextIO

from .budget import Budget
from .explicit import Tick
from .text import printable


def rss_bytes() -> int | None:
    """The memory the process uses now (resident set), where the system says."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The most memory the process has used (resident set)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 10_000 else str(n)


class Meter:
    """The progress line; a context manager that clears it on the way out."""

    def __init__(self, spec: str, budget: Budget, stream: TextIO | None = None, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self.spec = printable(spec)
        self.budget = budget
        self.shown = False
        self._last = 0.0
        self._level: tuple[int, float] = (-1, 0.0)  # the level and when its first block was done

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def tick(self, t: Tick) -> None:
        """After each block of the search."""
        now = time.perf_counter()
        if t.depth != self._level[0]:
            self._level = (t.depth, now)
        if not self._due(now):
            return
        level = f"level {t.depth}"
        if t.frontier and t.expanded < t.frontier:
            done = t.expanded / t.frontier
            spent = now - self._level[1]
            eta = f", ~{clock(spent / done * (1 - done))} left" if done > 0.05 and spent > 1 else ""
            level += f" {done:.0%}{eta}"
        rate = t.distinct / t.seconds if t.seconds else 0.0
        self._show(f"{level}  distinct {count(t.distinct)}  generated {count(t.generated)}  "
                   f"{count(int(rate))}/s", t.distinct)

    def note(self, what: str, states: int = 0) -> None:
        """Outside the search: what the run is doing (exploring a neighbourhood, ...)."""
        if self._due(time.perf_counter()):
            self._show(what, states)

    def _due(self, now: float) -> bool:
        if not self.enabled or self.budget.elapsed() < 1.0 or now - self._last < 0.2:
            return False
        self._last = now
        return True

    def _show(self, what: str, states: int) -> None:
        parts = [self.spec, what, f"elapsed {clock(self.budget.elapsed())}"]
        rss = rss_bytes()
        if rss is not None:
            parts.append(f"mem {size_text(rss)}")
        if self.budget.max_states:
            parts.append(f"max-states {min(states / self.budget.max_states, 1):.0%}")
        if self.budget.time_limit:
            parts.append(f"time-limit {min(self.budget.elapsed() / self.budget.time_limit, 1):.0%}")
        line = "  ".join(parts)
        width = self.width or _columns(self.stream)
        self.stream.write("\r\033[K" + (line if len(line) < width else line[:width - 4] + "..."))
        self.stream.flush()
        self.shown = True


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 80
