"""Checks z3 makes before a search: an invariant that the domains alone decide checks nothing.

An invariant or witness that holds in every state of the fields' domains (and the
model's facts), or in none, says nothing about the model's behaviour: an ALWAYS
invariant could not fail (or fails at once), a SOMETIMES witness is reached trivially
(or never). Either is almost always a mistake in the formula, so it is reported up front.
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
        if b.kind is Kind.PROGRESS:
            if solver.satisfiable([*assumptions, b.term]) is None:
                warnings.append(f"progress property {b.name}: no state of the domains has anyone waiting: "
                                f"it cannot fail")
            continue
        what = "invariant" if b.kind is Kind.ALWAYS else "witness"
        if solver.satisfiable([*assumptions, z3.Not(b.term)]) is None and not b.invariant.constant:
            effect = "it cannot fail" if b.kind is Kind.ALWAYS else "it is reached trivially"
            warnings.append(f"{what} {b.name} holds in every state of the domains: {effect}")
        if solver.satisfiable([*assumptions, b.term]) is None:
            effect = "it fails in every state" if b.kind is Kind.ALWAYS else "it cannot be reached"
            warnings.append(f"{what} {b.name} holds in no state of the domains: {effect}")
    return warnings
