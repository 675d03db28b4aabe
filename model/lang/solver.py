"""The one place that asks z3 for satisfiability.

Every query gets a timeout and a fixed seed, so answers are reproducible; `unknown` is
raised as SolverUnknown and never read as "holds" or "fails".
"""

from __future__ import annotations

from collections.abc import Iterable

import z3

from .deadline import checkpoint
from .errors import SolverUnknown
from .exprs import free_constants

DEFAULT_TIMEOUT_MS = 20_000
SEED = 0


def satisfiable(
    formulas: Iterable[z3.BoolRef], timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> z3.ModelRef | None:
    """A z3 model of the conjunction of `formulas`, or None when it is unsatisfiable."""
    checkpoint()
    solver = z3.SolverFor("QF_LIA")
    solver.set("timeout", timeout_ms)
    solver.set("random_seed", SEED)
    solver.add(*formulas)
    answer = solver.check()
    if answer == z3.sat:
        return solver.model()
    if answer == z3.unsat:
        return None
    raise SolverUnknown(f"z3 answered unknown ({solver.reason_unknown()})")


class Context:
    """Queries that share a large background (domains, facts): the background is asserted
    once and each query is checked inside push/pop. Only "unsatisfiable" is taken from
    it; anything else is asked again of a fresh solver by `satisfiable`, so a witness (and
    every message built from one) is exactly what a single query would give."""

    def __init__(self, background: Iterable[z3.BoolRef], timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.background = list(background)
        self.timeout_ms = timeout_ms
        self._solver = z3.SolverFor("QF_LIA")
        self._solver.set("timeout", timeout_ms)
        self._solver.set("random_seed", SEED)
        self._solver.add(*self.background)

    def satisfiable(self, formulas: Iterable[z3.BoolRef]) -> z3.ModelRef | None:
        checkpoint()
        formulas = list(formulas)
        self._solver.push()
        try:
            self._solver.add(*formulas)
            if self._solver.check() == z3.unsat:
                return None
        finally:
            self._solver.pop()
        return satisfiable([*self.background, *formulas], self.timeout_ms)


def valid(formula: z3.BoolRef, assumptions: Iterable[z3.BoolRef] = (),
          timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
    """Whether `formula` holds under every assignment satisfying `assumptions`."""
    return satisfiable([*assumptions, z3.Not(formula)], timeout_ms) is None


def witness_text(model: z3.ModelRef, terms: Iterable[z3.ExprRef], most: int | None = None) -> str:
    """The fields `terms` read, with their values in the witness `model` (`most` of them,
    then "...")."""
    consts = {c.decl().name(): c for t in terms for c in free_constants(t)}
    shown = [f"{n} = {model.eval(c, model_completion=True)}" for n, c in sorted(consts.items())]
    if most is not None and len(shown) > most:
        shown = [*shown[:most], "..."]
    return ", ".join(shown)
