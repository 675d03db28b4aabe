"""Bit-level predicates over fields whose values stand for 64-bit words.

Some kernel checks are bit arithmetic (`(spte & shadow_mmio_mask) == value`). They are
written once as z3 bit-vector functions; `case_split` evaluates such a function for
every combination of the concrete words the fields can stand for (z3 simplifies each
case to true or false) and returns the quantifier-free disjunction of the cases that
hold, over the fields' own (enum) values, which every engine can compile.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import z3

from .errors import ModelError

WORD = 64

Cases = Sequence[tuple[z3.BoolRef, int]]  # (when, the 64-bit word it stands for)


def word(value: int) -> z3.BitVecRef:
    return z3.BitVecVal(value, WORD)


def case_split(fn: Callable[..., z3.BoolRef], *args: Cases) -> z3.BoolRef:
    """`fn(w1, w2, ...)` where each argument is one of its cases' words."""
    holds: list[z3.BoolRef] = []
    for combo in itertools.product(*args):
        verdict = z3.simplify(fn(*(word(w) for _, w in combo)))
        if not (z3.is_true(verdict) or z3.is_false(verdict)):
            raise ModelError(f"bit-level predicate {fn.__name__} is not decided by constant words: {verdict}")
        if z3.is_true(verdict):
            conds = [c for c, _ in combo if not z3.is_true(c)]
            holds.append(z3.And(conds) if len(conds) > 1 else conds[0] if conds else z3.BoolVal(True))
    if not holds:
        return z3.BoolVal(False)
    return holds[0] if len(holds) == 1 else z3.Or(holds)


def decide(fn: Callable[..., z3.BoolRef], *words: int) -> bool:
    """`fn` on constant words, decided by z3."""
    verdict = z3.simplify(fn(*(word(w) for w in words)))
    if not (z3.is_true(verdict) or z3.is_false(verdict)):
        raise ModelError(f"bit-level predicate {fn.__name__} is not decided by constant words: {verdict}")
    return z3.is_true(verdict)
