"""Checks z3 makes before a search: an invariant that the domains alone decide checks nothing.

An ALWAYS invariant that holds in every state of the fields' domains (and the model's
facts) cannot fail, and a SOMETIMES witness that no such state satisfies can never be
reached; either is almost always a mistake in the formula, so it is reported up front.
"""

from __future__ import annotations

import z3

from invariants import Bound, Kind
from model.lang import Model, solver


def vacuous(model: Model, bounds: list[Bound]) -> list[str]:
    """One warning per invariant decided by the domains alone."""
    assumptions = model.domain_constraints() + [f.term for f in model.facts]
    fact_names = {f.name for f in model.facts}
    warnings = []
    for b in bounds:
        if b.name in fact_names:
            continue
        if b.kind is Kind.ALWAYS and solver.satisfiable([*assumptions, z3.Not(b.term)]) is None:
            warnings.append(f"invariant {b.name} holds in every state of the domains: it cannot fail")
        if b.kind is Kind.SOMETIMES and solver.satisfiable([*assumptions, b.term]) is None:
            warnings.append(f"witness {b.name} holds in no state of the domains: it cannot be reached")
    return warnings
