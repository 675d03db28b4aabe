"""Small helpers over z3 terms: free constants, evaluation on a concrete state, and the
choice helpers a model writes with: `first` (TLA+'s CHOOSE over a finite, ordered set of
candidates, made deterministic: the first that qualifies), `max_of` and `min_of`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import z3

from .errors import ModelError

_FREE: dict[int, tuple[z3.ExprRef, tuple[z3.ExprRef, ...]]] = {}  # ast id -> (the term, its constants)
_FREE_KEPT = 500_000  # terms remembered before the memo starts again


def free_constants(expr: z3.ExprRef) -> list[z3.ExprRef]:
    """The uninterpreted constants (state fields) an expression mentions.

    Guards and effects share most of their sub-terms, and building and compiling a model
    asks this of each of them, so the answer for every sub-term is remembered (with the
    term itself, which keeps its id from being reused)."""
    if len(_FREE) > _FREE_KEPT:
        _FREE.clear()
    stack: list[tuple[z3.ExprRef, bool]] = [(expr, False)]
    while stack:
        e, done = stack.pop()
        key = e.get_id()
        if key in _FREE:
            continue
        if z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            _FREE[key] = (e, (e,))
            continue
        children = e.children()
        if not done:
            stack.append((e, True))
            stack.extend((c, False) for c in children if c.get_id() not in _FREE)
            continue
        found: dict[str, z3.ExprRef] = {}
        for c in children:
            for const in _FREE[c.get_id()][1]:
                found.setdefault(const.decl().name(), const)
        _FREE[key] = (e, tuple(found.values()))
    return list(_FREE[expr.get_id()][1])


def evaluate(expr: z3.ExprRef, assignment: Mapping[str, z3.ExprRef]) -> int | bool:
    """The value z3 gives `expr` when each named constant takes the given z3 value."""
    pairs = [(c, assignment[c.decl().name()]) for c in free_constants(expr)]
    value = z3.simplify(z3.substitute(expr, *pairs) if pairs else expr)
    if z3.is_true(value):
        return True
    if z3.is_false(value):
        return False
    if z3.is_int_value(value):
        return value.as_long()
    raise ValueError(f"z3 did not reduce {expr} to a value (got {value})")



C = TypeVar("C")


@dataclass(frozen=True)
class Pick:
    """What `first()` found: `exists` holds where some candidate qualifies, and `value` is
    then the first one that does."""

    exists: z3.BoolRef
    value: z3.ExprRef


def first(candidates: Iterable[C], holds: Callable[[C], z3.BoolRef | bool], otherwise: Any = None) -> Pick:
    """The first of `candidates` (ints or z3 terms, in the order given) for which `holds`
    is true, as a term: `If(holds(c0), c0, If(holds(c1), c1, ...))`. Deterministic: the
    same state always picks the same candidate. Where none qualifies the value is
    `otherwise` (default: the last candidate), so guard on `exists`."""
    cands = list(candidates)
    if not cands:
        raise ModelError("first(): no candidates to choose from")
    conds = [_bool_term(holds(c)) for c in cands]
    value = _int_term(cands[-1] if otherwise is None else otherwise, "first()")
    for c, cond in zip(reversed(cands), reversed(conds), strict=True):
        if z3.is_true(cond):
            value = _int_term(c, "first()")
        elif not z3.is_false(cond):
            value = z3.If(cond, _int_term(c, "first()"), value)
    kept = [c for c in conds if not z3.is_false(c)]
    exists = z3.BoolVal(True) if any(z3.is_true(c) for c in kept) else z3.Or(*kept) if kept else z3.BoolVal(False)
    return Pick(exists, value)


def max_of(values: Sequence[Any]) -> z3.ArithRef:
    """The largest of `values` (ints or integer terms), as an If-chain."""
    return _fold(values, "max_of()", lambda a, b: b > a, max)


def min_of(values: Sequence[Any]) -> z3.ArithRef:
    """The smallest of `values` (ints or integer terms), as an If-chain."""
    return _fold(values, "min_of()", lambda a, b: b < a, min)


def _fold(values: Sequence[Any], where: str, better: Callable[[Any, Any], Any],
          constant: Callable[[list[int]], int]) -> z3.ArithRef:
    terms = [_int_term(v, where) for v in values]
    if not terms:
        raise ModelError(f"{where}: no values")
    if all(z3.is_int_value(t) for t in terms):  # constants: the answer itself
        return z3.IntVal(constant([t.as_long() for t in terms]))
    best = terms[0]
    for t in terms[1:]:
        best = z3.If(better(best, t), t, best)
    return best


def _int_term(value: Any, where: str) -> z3.ArithRef:
    if isinstance(value, z3.ExprRef):
        if not z3.is_int(value):
            raise ModelError(f"{where}: {value} is not an integer term")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{where}: {value!r} is not an int or an integer term")
    return z3.IntVal(value)


def _bool_term(value: z3.BoolRef | bool) -> z3.BoolRef:
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if not z3.is_bool(value):
        raise ModelError(f"first(): the predicate gave {value}, not a boolean")
    return value
