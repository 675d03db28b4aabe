"""Print z3 terms the way a kernel reviewer reads them: C-like operators, enum names.

`mirror_spte_2m[g0] == 2` is printed `mirror_spte_2m[g0] == LEAF` because the printer
knows each field's domain.
"""

from __future__ import annotations

from collections.abc import Mapping

import z3

from .fields import Field

_INFIX = {
    z3.Z3_OP_EQ: "==",
    z3.Z3_OP_LE: "<=",
    z3.Z3_OP_LT: "<",
    z3.Z3_OP_GE: ">=",
    z3.Z3_OP_GT: ">",
    z3.Z3_OP_ADD: "+",
    z3.Z3_OP_SUB: "-",
    z3.Z3_OP_MUL: "*",
    z3.Z3_OP_IDIV: "/",
    z3.Z3_OP_MOD: "%",
    z3.Z3_OP_AND: "&&",
    z3.Z3_OP_OR: "||",
    z3.Z3_OP_XOR: "^",
    z3.Z3_OP_IMPLIES: "implies",
}


def show(term: z3.ExprRef, fields: Mapping[str, Field], top: bool = True) -> str:
    """A one-line rendering of `term` using field names and enum member names."""
    if z3.is_true(term):
        return "true"
    if z3.is_false(term):
        return "false"
    if z3.is_int_value(term):
        return str(term.as_long())
    if z3.is_const(term):
        return term.decl().name()
    kind = term.decl().kind()
    args = term.children()
    if kind == z3.Z3_OP_NOT:
        inner = args[0]
        if z3.is_eq(inner):
            a, b = inner.children()
            return _compare(a, b, "!=", fields, top)
        return "!" + show(inner, fields, top=False)
    if kind == z3.Z3_OP_DISTINCT and len(args) == 2:
        return _compare(args[0], args[1], "!=", fields, top)
    if kind in (z3.Z3_OP_EQ, z3.Z3_OP_LE, z3.Z3_OP_LT, z3.Z3_OP_GE, z3.Z3_OP_GT):
        return _compare(args[0], args[1], _INFIX[kind], fields, top)
    if kind in _INFIX:
        text = f" {_INFIX[kind]} ".join(show(a, fields, top=False) for a in args)
        return text if top else f"({text})"
    if kind == z3.Z3_OP_UMINUS:
        return "-" + show(args[0], fields, top=False)
    if kind == z3.Z3_OP_ITE:
        c, a, b = (show(x, fields, top=False) for x in args)
        text = f"{c} ? {a} : {b}"
        return text if top else f"({text})"
    inner = ", ".join(show(a, fields) for a in args)
    return f"{term.decl().name()}({inner})"


def _compare(a: z3.ExprRef, b: z3.ExprRef, op: str, fields: Mapping[str, Field], top: bool) -> str:
    if op in ("==", "!=") and z3.is_int_value(a) and not z3.is_int_value(b):
        a, b = b, a  # z3 may store `x == 2` as `2 == x`; read it field first
    left, right = _operand(a, b, fields), _operand(b, a, fields)
    text = f"{left} {op} {right}"
    return text if top else f"({text})"


def _operand(term: z3.ExprRef, other: z3.ExprRef, fields: Mapping[str, Field]) -> str:
    """A numeral compared with a field prints as that field's value name."""
    if z3.is_int_value(term) and z3.is_const(other):
        f = fields.get(other.decl().name())
        if f is not None:
            return f.label(term.as_long())
    return show(term, fields, top=False)
