"""The compiled NumPy code means what the z3 terms mean, for every shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.compile import CompileError, compile_model, compile_predicate
from model.lang import BOOL, IntDomain, ModelBuilder, Step, kernel

from .shipped import NAMES, shipped_model

# a large world has the actions, guards and invariants of its PR-sized version (the
# sizes change how many instances, not which code): the large one is not drawn from
SMALLER = {"tdx-default": "tdx-progress-default", "tdx-small-default": "tdx-progress-default",
           "tdx-hugepage-default": "tdx-hugepage-small-default",
           # the same model, checking one property of the other's
           "accept-split-of-the-shared-root__no-accept-split-mirror-root.accept-loop":
               "accept-split-of-the-shared-root__no-accept-split-mirror-root",
           # the same actions and invariants, with guard range-union off
           "overlapping-invalidations-lose-a-range__no-range-union.punch-hole-thread": "tdx-punch-hole-thread"}
MODELS = [n for n in NAMES if n not in SMALLER]


def test_a_large_world_left_out_has_the_actions_of_its_small_version() -> None:
    for large, small in SMALLER.items():
        a, b = shipped_model(large)[0], shipped_model(small)[0]
        assert {x.name for x in a.actions} <= {x.name for x in b.actions}  # v6.16's pins: the B-specs
        assert {x.name for x in shipped_model(large)[1]} <= {x.name for x in shipped_model(small)[1]}


def _z3_model(model, values):  # type: ignore[no-untyped-def]
    """A z3 model fixing every field to its value, for fast evaluation of many terms."""
    solver = z3.Solver()
    solver.add(*[f.var == f.domain.z3_value(v) for f, v in zip(model.schema.fields, values, strict=True)])
    assert solver.check() == z3.sat
    return solver.model()


def _as_int(value: z3.ExprRef) -> int:
    if z3.is_true(value):
        return 1
    if z3.is_false(value):
        return 0
    return value.as_long()


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_guards_effects_and_predicates_agree_with_z3(name: str, data: st.DataObject) -> None:
    model, bounds = shipped_model(name)
    compiled = _compiled(name)
    fields = model.schema.fields
    states = [
        tuple(data.draw(st.integers(f.domain.lo, f.domain.lo + f.domain.size - 1), label=f.name) for f in fields)
        for _ in range(4)
    ]
    block = np.array([model.schema.pack(s) for s in states], dtype=np.uint64)
    enabled = {(aid, int(i)): succ[k] for aid, idx, succ in compiled.expand(block) for k, i in enumerate(idx)}
    predicates = [(b, compile_predicate(model, b.name, b.term)(block)) for b in bounds]
    for row, values in enumerate(states):
        zm = _z3_model(model, values)
        # Where a model fact fails, the build-time proof does not promise that effects stay
        # in their domains, so only guards and predicates are compared there.
        facts_hold = all(z3.is_true(zm.eval(f.term, model_completion=True)) for f in model.facts)
        for action in model.actions:
            guard = z3.is_true(zm.eval(action.guard, model_completion=True))
            assert guard == ((action.id, row) in enabled), f"guard of {action.key} in state {row}"
            if not guard or not facts_hold:
                continue
            after = list(values)
            for f, term in action.effect:
                after[f.index] = _as_int(zm.eval(term, model_completion=True))
            got = model.schema.unpack(enabled[(action.id, row)])
            assert got == tuple(after), f"effect of {action.key} in state {row}"
        for bound, result in predicates:
            want = z3.is_true(zm.eval(bound.term, model_completion=True))
            assert bool(result[row]) == want, f"{bound.name} in state {row}"


_CACHE: dict[str, object] = {}


def _compiled(name: str):  # type: ignore[no-untyped-def]
    if name not in _CACHE:
        _CACHE[name] = compile_model(shipped_model(name)[0])
    return _CACHE[name]


def test_unsupported_constructs_are_rejected_with_the_place_they_appear() -> None:
    b = ModelBuilder("bv")
    x = b.field("x", IntDomain(0, 3), 0)
    flag = b.field("flag", BOOL, False)

    @kernel("uses_a_bitvector")
    def odd() -> Step:
        """uses_a_bitvector: a guard through a bit-vector conversion."""
        return Step("odd", z3.BV2Int(z3.Int2BV(x.var, 4)) > 1, {flag: True})

    b.action(odd, "T")
    model = b.build()
    with pytest.raises(CompileError, match=r"guard of action odd\(\): cannot compile z3 construct"):
        compile_model(model)


def test_division_by_a_field_is_rejected() -> None:
    b = ModelBuilder("div")
    x = b.field("x", IntDomain(1, 3), 1)
    y = b.field("y", IntDomain(0, 3), 0)

    @kernel("noop")
    def noop() -> Step:
        """noop: nothing."""
        return Step("noop", True, {})

    b.action(noop, "T")
    with pytest.raises(CompileError, match="not a positive constant"):
        compile_predicate(b.build(), "p", y.var / x.var == 0)
