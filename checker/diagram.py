"""The race diagram of a trace in plain text: one column per actor, time running down.

This is how races are drawn in KVM commit messages and review mails: the actors head
the columns, underlined with dashes; each step sits in its actor's column, so reading
down gives the order in time. Steps are numbered twice: the trace's step number in the
left margin (what replay and the other exports refer to) and `<column>.<k>` in the
column, the actor's k-th step. Below each step come the fields it changed; a field
indexed by the actor itself is shown without the index (`fault.step`, not
`fault.step[vcpu0]`) since the column already says whose it is.

Lines stay within `WIDTH` columns unless one word is longer than its column.
"""

from __future__ import annotations

import textwrap

from .document import actor_title, actors, own_name
from .trace import Trace

WIDTH = 80
MARGIN = 4  # "NNN " : the global step number
BLOCK = 40  # the narrowest a step's text gets
NBSP = "\xa0"  # textwrap does not break here
BREAK = "\x0b"  # textwrap may break here; it prints as nothing


def wrap(text: str, width: int, first: str = "", rest: str | None = None) -> list[str]:
    """Lines of `text` within `width`; a BREAK in it is a place to break that prints as nothing."""
    lines = textwrap.wrap(
        text, max(width, 8), initial_indent=first, subsequent_indent=rest if rest is not None else first,
        break_long_words=False, break_on_hyphens=False, replace_whitespace=False,
    ) or [first.rstrip()]
    return [line.replace(BREAK, "") for line in lines]


class Diagram:
    """The columns of one trace; render any run of its steps with `lines`."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.columns = actors(trace)
        k = max(len(self.columns), 1)
        # Equal columns while a step fits in its own column (two actors); with more, the
        # columns draw closer so that every step still gets a block of BLOCK characters,
        # which may run on under the columns to its right: one step per row, so nothing
        # collides, and the indentation and `<column>.<k>` still say whose step it is.
        self.spacing = (WIDTH - MARGIN) // k if k == 1 else min((WIDTH - MARGIN) // k,
                                                                  (WIDTH - MARGIN - BLOCK) // (k - 1))
        self.block = max(self.spacing, BLOCK) - 1  # one blank before the next column
        self.number: list[str] = []  # "<column>.<k>" for each step
        seen: dict[str, int] = {}
        for a in trace.actions:
            seen[a.actor] = seen.get(a.actor, 0) + 1
            self.number.append(f"{self.columns.index(a.actor) + 1}.{seen[a.actor]}")

    def header(self) -> list[str]:
        titles = [actor_title(a) for a in self.columns]
        heads = "".join(t.ljust(self.spacing) for t in titles[:-1]) + titles[-1]
        rules = "".join(("-" * len(t)).ljust(self.spacing) for t in titles[:-1]) + "-" * len(titles[-1])
        return [" " * MARGIN + heads, " " * MARGIN + rules]

    def lines(self, first: int = 1, last: int | None = None) -> list[str]:
        """Steps `first`..`last` (1-based, inclusive; default to the end)."""
        stop = len(self.trace.actions) if last is None else last
        out: list[str] = []
        for n in range(first, stop + 1):
            out += self.step(n)
        return out

    def step(self, n: int) -> list[str]:
        action = self.trace.actions[n - 1]
        column = self.columns.index(action.actor)
        lead = f"{self.number[n - 1]} "
        indent = " " * len(lead)
        block = wrap(breakable(action.text, self.block - len(lead)), self.block, lead, indent)
        for f, old, new in self.trace.changes(n):
            # "old -> new" moves to the next line whole when it can; else it breaks before
            # the arrow, never after it
            value = f"{f.label(old)} -> {f.label(new)}"
            if len(indent) + 2 + len(value) <= self.block:
                value = value.replace(" ", NBSP)
            change = f"{own_name(f.name, action.actor)}: " + value.replace(f"->{' '}", f"->{NBSP}")
            block += [line.replace(NBSP, " ") for line in wrap(change, self.block, indent, indent + "  ")]
        # a word too long for the last columns pulls the block left rather than past WIDTH
        offset = MARGIN + column * self.spacing
        offset -= max(0, min(offset - MARGIN, max(map(len, block)) + offset - WIDTH))
        pad = " " * offset
        return [f"{n:>3} " + pad[MARGIN:] + block[0], *(pad + line for line in block[1:])]


def breakable(text: str, width: int) -> str:
    """`text` with a BREAK after each `(` or `,` of a word longer than `width`, so that a
    long call such as `kvm_pre_set_memory_attributes([g1,g2)` can wrap inside it."""
    words = []
    for word in text.split(" "):
        if len(word) > width:
            word = word.replace("(", "(" + BREAK).replace(",", "," + BREAK)
        words.append(word)
    return " ".join(words)


def steps_lines(trace: Trace) -> list[str]:
    """The diagram of the whole trace with its column headers."""
    d = Diagram(trace)
    return [*d.header(), *d.lines()]
