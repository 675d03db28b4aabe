"""The one place that asks z3 for satisfiability.

Every query gets a timeout and a fixed seed, so answers are reproducible; `unknown` is
raised as SolverUnknown and never read as "holds" or "fails".
"""

from __future__ import annotations

from collections.abc import Iterable

import z3

from .deadline import checkpoint
from .errors import SolverUnknown

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


def valid(formula: z3.BoolRef, assumptions: Iterable[z3.BoolRef] = (),
          timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
    """Whether `formula` holds under every assignment satisfying `assumptions`."""
    return satisfiable([*assumptions, z3.Not(formula)], timeout_ms) is None
