"""Differential checking: one scenario under two kernel profiles, side by side.

`python -m checker --spec S --against PROFILE` answers a design reviewer's question:
what does this change of kernel (or of series) change? Both models are searched with
every invariant kept going after its first violation (`all_violations`), so each
property gets its own verdict: an ALWAYS invariant violated after N steps (the shortest
counterexample, the search being breadth-first) or holding, a SOMETIMES witness reached
after N steps or not, a PROGRESS property broken by a lasso of N steps or holding. A
property that one profile's model does not have (its fields are not there) "does not
apply". A verdict of a search that stopped early (depth, budget) is only as good as the
search, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from invariants import Bound, Kind

from .budget import Budget
from .compile import Compiled, compile_model
from .explicit import ExplicitSearch, SearchResult
from .progress import Lasso, find_lassos, full_space
from .spec import Spec
from .symmetry import wanted

NOT_APPLICABLE = "does not apply"


@dataclass(frozen=True)
class Verdict:
    """One property's result under one profile: `steps` is the length of the shortest
    counterexample (violation, lasso) or witness, if there is one."""

    outcome: str  # violated | holds | reached | not reached | broken | not violated ... | does not apply
    steps: int | None = None

    def text(self) -> str:
        return self.outcome if self.steps is None else f"{self.outcome} after {self.steps} steps"


@dataclass
class Side:
    """One profile's run: its model, what it found, and each property's verdict."""

    spec: Spec
    compiled: Compiled
    bounds: list[Bound]
    result: SearchResult
    lassos: list[Lasso]
    verdicts: dict[str, Verdict]
    kinds: dict[str, Kind]


def run_side(spec: Spec, guards: Mapping[str, bool], invariants: Sequence[str] | None, budget: Budget,
             check_deadlock: bool = False, symmetry: bool = False) -> Side:
    """Search `spec`'s scenario under its profile, every invariant to its own verdict
    (with `symmetry` or the spec's `symmetry = true`, one state per orbit)."""
    model = spec.build(guards)
    bounds = spec.bound_invariants(model, tuple(invariants) if invariants else None)
    compiled = compile_model(model)
    reduced = wanted(model, bounds, symmetry or spec.symmetry)
    result = ExplicitSearch(compiled, bounds, budget, check_deadlock, all_violations=True, reduction=reduced).run()
    progress = [b for b in bounds if b.kind is Kind.PROGRESS]
    checked = result.complete and spec.check_progress
    graph = result
    if progress and checked:
        graph = full_space(compiled, result, bounds, budget, check_deadlock)
        checked = graph.complete
    lassos = find_lassos(compiled, graph, progress) if progress and checked else []
    verdicts: dict[str, Verdict] = {}
    hits = {h.bound.name: h.depth for h in result.violations}
    broken = {lasso.bound.name: len(lasso.prefix) + len(lasso.cycle) for lasso in lassos}
    bounded = "" if result.complete else f" within {result.depth} steps ({result.stop})"
    for b in bounds:
        if b.kind is Kind.ALWAYS:
            verdicts[b.name] = Verdict("violated", hits[b.name]) if b.name in hits else \
                Verdict("holds" if result.complete else "not violated" + bounded)
        elif b.kind is Kind.SOMETIMES:
            hit = result.witnesses.get(b.name)
            verdicts[b.name] = Verdict("reached", hit.depth) if hit is not None else \
                Verdict("not reached" + bounded)
        else:
            unchecked = "the search is not complete" if not result.complete else "check_progress = false"
            verdicts[b.name] = Verdict("broken", broken[b.name]) if b.name in broken else \
                Verdict("holds" if checked else f"not checked ({unchecked})")
    return Side(spec, compiled, bounds, result, lassos, verdicts, {b.name: b.kind for b in bounds})


def differences(a: Side, b: Side) -> list[tuple[str, Kind, Verdict, Verdict]]:
    """Every property whose verdict (or shortest counterexample length) differs, in the
    order the first profile checks them, then the second's own."""
    names = list(dict.fromkeys([*a.verdicts, *b.verdicts]))
    out = []
    for n in names:
        va = a.verdicts.get(n, Verdict(NOT_APPLICABLE))
        vb = b.verdicts.get(n, Verdict(NOT_APPLICABLE))
        if va != vb:
            out.append((n, a.kinds.get(n) or b.kinds[n], va, vb))
    return out


def table(a: Side, b: Side, rows: list[tuple[str, Kind, Verdict, Verdict]]) -> list[str]:
    """The differing verdicts side by side, under each profile's name."""
    head = ("property", "kind", a.spec.label, b.spec.label)
    body = [(n, k.value, va.text(), vb.text()) for n, k, va, vb in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(3)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
            for r in [head, *body]]
