"""Small helpers over z3 terms: free constants and evaluation on a concrete state."""

from __future__ import annotations

from collections.abc import Mapping

import z3


def free_constants(expr: z3.ExprRef) -> list[z3.ExprRef]:
    """The uninterpreted constants (state fields) an expression mentions, in first-seen order."""
    seen: set[int] = set()
    found: dict[str, z3.ExprRef] = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.get_id() in seen:
            continue
        seen.add(e.get_id())
        if z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.setdefault(e.decl().name(), e)
        else:
            stack.extend(e.children())
    return list(found.values())


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

