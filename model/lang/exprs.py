"""Small helpers over z3 terms: free constants and evaluation on a concrete state."""

from __future__ import annotations

from collections.abc import Mapping

import z3

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

