"""Counterexamples rebuilt by replaying the model, and checked step by step.

The engine keeps only parent links and action ids. A trace is rebuilt by starting from
the initial state and applying each recorded action with the compiled model; every step
must be enabled and must produce exactly the state the engine stored. The final verdict
(invariant violated, witness reached) is then re-evaluated with z3 itself, so a
disagreement between the compiled code and the z3 meaning is an error, not a report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import z3

from model.lang import Action, Field, Model, evaluate
from model.lang.symmetry import Permutation

from .compile import Compiled
from .explicit import SearchResult
from .progress import Lasso


class ReplayError(Exception):
    """A recorded step no longer applies to the model."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"step {step}: {message}")
        self.step = step


class EngineError(Exception):
    """The engine and the model disagree: a bug in the checker, never a result."""


@dataclass
class Trace:
    model: Model
    actions: list[Action]
    states: list[tuple[int, ...]]  # field values, in schema order; len = len(actions) + 1

    def changes(self, step: int) -> list[tuple[Field, int, int]]:
        """(field, old, new) for each field that step `step` (1-based) changed."""
        before, after = self.states[step - 1], self.states[step]
        return [
            (f, a, b)
            for f, a, b in zip(self.model.schema.fields, before, after, strict=True)
            if a != b
        ]

    def values(self, index: int) -> dict[str, int]:
        return {f.name: v for f, v in zip(self.model.schema.fields, self.states[index], strict=True)}


def successors(compiled: Compiled, words: Sequence[int]) -> list[tuple[Action, tuple[int, ...]]]:
    """Every step enabled in the packed state `words`, in action order, with its target."""
    out = compiled.expand(np.array([words], dtype=np.uint64))
    model = compiled.model
    return sorted(((model.actions[aid], tuple(int(w) for w in succ[0])) for aid, _, succ in out),
                  key=lambda pair: pair[0].id)


def successor(compiled: Compiled, words: Sequence[int], action: Action) -> tuple[int, ...] | None:
    """The state `action` leads to from `words`, or None when its guard is false there."""
    return next((succ for a, succ in successors(compiled, words) if a.id == action.id), None)


def replay(compiled: Compiled, actions: Sequence[Action]) -> Trace:
    """Apply `actions` from the initial state; raise ReplayError at the first that is disabled."""
    model = compiled.model
    words = model.init
    states = [model.schema.unpack(words)]
    for n, action in enumerate(actions, start=1):
        nxt = successor(compiled, words, action)
        if nxt is None:
            raise ReplayError(n, f"{action.key} is not enabled: its guard is false")
        words = nxt
        states.append(model.schema.unpack(words))
    return Trace(model, list(actions), states)


def rebuild(compiled: Compiled, result: SearchResult, depth: int, index: int) -> Trace:
    """The path to (depth, index) in the search, replayed and checked against the search."""
    model = compiled.model
    path = result.path(depth, index)
    if result.reduction is not None:
        return _rebuild_reduced(compiled, result, path)
    actions = [model.actions[aid] for aid, _ in path]
    trace = replay(compiled, actions)
    for level, (_, idx) in enumerate(path, start=1):
        stored = model.schema.unpack(result.state(level, idx))
        if trace.states[level] != stored:
            raise EngineError(f"replay of step {level} ({actions[level - 1].key}) differs from the search")
    return trace


def _rebuild_reduced(compiled: Compiled, result: SearchResult, path: list[tuple[int, int]]) -> Trace:
    """A path through canonical forms (checker/symmetry.py) as the real steps it stands for.

    With r = tau(c) the real state standing for the canonical c (tau = identity at the
    initial state, which every permutation fixes): action a from c reaches s, stored as
    sigma(s); so tau(a) from r reaches tau(s), which is (tau . sigma^-1) of the stored
    state. The real steps are replayed and each must be that permutation of the stored one."""
    model = compiled.model
    reduction = result.reduction
    assert reduction is not None
    group = reduction.group
    tau = group.identity
    canonical = model.init
    actions: list[Action] = []
    stored_as: list[tuple[tuple[int, ...], Permutation]] = []  # each step's stored state and its tau
    for level, (aid, idx) in enumerate(path, start=1):
        reached = successor(compiled, canonical, model.actions[aid])
        stored = result.state(level, idx)
        if reached is None:
            raise EngineError(f"step {level} ({model.actions[aid].key}) is not enabled in the stored state")
        sigma = reduction.element_to(reached, stored)
        if sigma is None:
            raise EngineError(f"step {level} ({model.actions[aid].key}) is not stored as its canonical form")
        actions.append(model.actions[group.action_map(tau)[aid]])
        tau = group.compose(group.inverse(sigma), tau)
        stored_as.append((stored, tau))
        canonical = stored
    trace = replay(compiled, actions)
    for level, (stored, k) in enumerate(stored_as, start=1):
        real = reduction.permute(np.array([stored], dtype=np.uint64), k)[0]
        if trace.states[level] != model.schema.unpack(real):
            raise EngineError(f"replay of step {level} ({actions[level - 1].key}) differs from the search")
    return trace


def z3_assignment(model: Model, values: Sequence[int]) -> dict[str, z3.ExprRef]:
    return {f.name: f.domain.z3_value(v) for f, v in zip(model.schema.fields, values, strict=True)}


def holds(model: Model, term: z3.BoolRef, values: Sequence[int]) -> bool:
    """z3's verdict on `term` in the state with these field values."""
    return bool(evaluate(term, z3_assignment(model, values)))


def failing_part(model: Model, term: z3.BoolRef, values: Sequence[int]) -> list[z3.BoolRef]:
    """The chain of sub-formulas that make `term` false, outermost first.

    Descends through conjunctions (into the first false conjunct), through implications
    whose premise holds (into the conclusion) and through negated disjunctions, so the
    last element is the smallest part of the formula that fails.
    """
    assignment = z3_assignment(model, values)
    chain = [term]
    current = term
    while True:
        nxt = None
        if z3.is_and(current):
            nxt = next((c for c in current.children() if not evaluate(c, assignment)), None)
        elif z3.is_implies(current):
            premise, conclusion = current.children()
            if evaluate(premise, assignment):
                nxt = conclusion
        elif z3.is_not(current) and z3.is_or(current.children()[0]):
            nxt = next((z3.Not(c) for c in current.children()[0].children() if evaluate(c, assignment)), None)
        if nxt is None:
            return chain
        chain.append(nxt)
        current = nxt


def rebuild_lasso(compiled: Compiled, lasso: Lasso) -> Trace:
    """The lasso's prefix and one turn of its cycle, replayed; the turn must close."""
    model = compiled.model
    trace = replay(compiled, [model.actions[a] for a in lasso.prefix + lasso.cycle])
    if trace.states[len(lasso.prefix)] != trace.states[-1]:
        raise EngineError(f"the cycle of {lasso.bound.name} does not return to where it started")
    return trace
