"""The explicit engine on models with published or computable results."""

from __future__ import annotations

import numpy as np
import pytest

from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch
from checker.scalar import textbook_bfs
from checker.trace import ReplayError, rebuild, replay
from examples import diehard, twophase
from invariants import Invariant, Kind
from model.lang import IntDomain, ModelBuilder, Step, models

from .shipped import NAMES, shipped_model


def search(model, invariants=(), **budget):  # type: ignore[no-untyped-def]
    compiled = compile_model(model)
    bound = [i.bind(model) for i in invariants]
    return compiled, ExplicitSearch(compiled, bound, Budget(**budget)).run()


def test_twophase_matches_tlc() -> None:
    """TLC on TLA+ Examples' TwoPhase.cfg: 288 distinct, 1146 generated, depth 11
    (TLC counts the initial state as depth 1; the engine counts steps)."""
    _, r = search(twophase.build(3), [twophase.TC_CONSISTENT])
    assert (r.distinct, r.generated, r.depth + 1) == (288, 1146, 11)
    assert r.complete and r.stop == "fixpoint" and not r.violations


def test_diehard_shortest_solution_has_six_steps() -> None:
    model = diehard.build()
    compiled, r = search(model, [diehard.NOT_SOLVED])
    assert r.stop == "violation" and not r.complete
    (hit,) = r.violations
    assert hit.bound.name == "NotSolved" and hit.depth == 6
    trace = rebuild(compiled, r, hit.depth, hit.index)
    assert len(trace.actions) == 6
    assert trace.values(6)["big"] == 4
    assert trace.actions[0].text in ("FillBigJug", "FillSmallJug")


def test_all_violations_goes_on_past_the_first_and_never_stops_for_none() -> None:
    model = diehard.build()
    compiled = compile_model(model)
    r = ExplicitSearch(compiled, [], Budget(), all_violations=True).run()
    assert r.complete and r.stop == "fixpoint" and r.depth > 0  # no invariant: nothing to wait for
    r = ExplicitSearch(compiled, [diehard.NOT_SOLVED.bind(model)], Budget(), all_violations=True).run()
    assert r.stop == "violation" and [h.depth for h in r.violations] == [6]  # stops once all are found


def test_depth_bound_stops_the_search_and_says_it_is_incomplete() -> None:
    _, r = search(twophase.build(3), depth=4)
    assert r.depth == 4 and not r.complete and r.stop == "depth"
    _, full = search(twophase.build(3), depth=10)
    assert full.complete and full.stop == "fixpoint", "a bound equal to the diameter still reaches the fixpoint"


def test_max_states_budget_stops_the_search() -> None:
    _, r = search(twophase.build(3), max_states=50)
    assert r.stop == "max-states" and not r.complete and r.distinct >= 50


def test_deadlocks_are_found_when_asked() -> None:
    model = diehard.build()
    compiled = compile_model(model)
    r = ExplicitSearch(compiled, [], Budget(), check_deadlock=True).run()
    assert r.deadlock is None and r.complete  # every jug move is always enabled
    counters = _counters(2, 2, 3)
    r = ExplicitSearch(compile_model(counters), [], Budget(), check_deadlock=True).run()
    assert r.stop == "deadlock" and r.deadlock == (4, 0)  # both counters at their top
    r = ExplicitSearch(compile_model(counters), [], Budget()).run()
    assert r.complete and r.deadlock is None  # not asked: not reported


def _counters(n: int, top: int, width: int):  # type: ignore[no-untyped-def]
    """n independent counters 0..top, stored in `width`-bit domains (forcing wide states)."""
    b = ModelBuilder("counters")
    xs = [b.field(f"x{i}", IntDomain(0, (1 << width) - 1), 0) for i in range(n)]

    @models("increment")
    def increment(counter: int) -> Step:
        """increment one counter below its top."""
        x = xs[counter]
        return Step(f"inc x{counter}", x.var < top, {x: x.var + 1})

    for i in range(n):
        b.action(increment, "T", counter=i)
    return b.build()


def test_wide_states_are_searched_exactly() -> None:
    model = _counters(6, 2, 20)  # 120 bits: two words per state
    assert model.schema.words == 2
    _, r = search(model)
    assert (r.distinct, r.depth, r.complete) == (3 ** 6, 12, True)


def test_wide_states_agree_with_the_textbook_reference() -> None:
    model = _counters(4, 2, 20)
    _, r = search(model)
    ref = textbook_bfs(model)
    assert (r.distinct, r.generated, r.depth) == (ref.distinct, ref.generated, ref.depth) == (81, 1 + 4 * 54, 8)


def test_small_blocks_give_the_same_figures() -> None:
    """Splitting levels into blocks must not change distinct, generated or traces."""
    import checker.explicit as engine

    model = twophase.build(3)
    _, whole = search(model)
    saved = engine.BLOCK
    engine.BLOCK = 7
    try:
        _, split = search(model)
    finally:
        engine.BLOCK = saved
    assert (whole.distinct, whole.generated, whole.depth) == (split.distinct, split.generated, split.depth)
    for a, b in zip(whole.levels, split.levels, strict=True):
        assert np.array_equal(a.states, b.states)
        assert np.array_equal(a.parent, b.parent) and np.array_equal(a.action, b.action)


def test_witnesses_are_reported_reached_or_not() -> None:
    model = twophase.build(2)
    rm = twophase.RM_STATE
    committed = Invariant("committed", Kind.SOMETIMES, "r1 commits", "-", (),
                          lambda m: m.field("rmState[r1]").var == rm.committed)
    early = Invariant("early", Kind.SOMETIMES, "r1 commits while the TM is still in init", "-", (),
                      lambda m: (m.field("rmState[r1]").var == rm.committed)
                      & (m.field("tmState").var == twophase.TM_STATE.init))
    _, r = search(model, [committed, early])
    assert r.complete
    assert r.witnesses["committed"] is not None and r.witnesses["committed"].depth == 6
    assert r.witnesses["early"] is None


def test_replay_names_the_first_step_that_does_not_apply() -> None:
    model = diehard.build()
    compiled = compile_model(model)
    by = {a.text: a for a in model.actions}
    trace = replay(compiled, [by["FillBigJug"], by["BigToSmall"]])
    assert trace.values(2) == {"small": 3, "big": 2}
    tp = twophase.build(2)
    tpc = compile_model(tp)
    commit = tp.by_key["tm_commit()"]
    with pytest.raises(ReplayError, match=r"step 1: tm_commit\(\) is not enabled"):
        replay(tpc, [commit])


@pytest.mark.parametrize("name", NAMES)
def test_explicit_engine_and_textbook_reference_agree_on_every_shipped_model(name: str) -> None:
    """Two independent searches (vectorised levels vs. one state at a time, NumPy vs. plain
    Python code generated from the same z3 terms) must find the same state space."""
    model, _ = shipped_model(name)
    if "tdx" in model.parts:  # 10^8 states: compare the first levels
        _, r = search(model, depth=9)
        ref = textbook_bfs(model, max_depth=9)
        assert not r.complete and not ref.complete
        assert (r.distinct, r.depth) == (ref.distinct, ref.depth)
        return
    _, r = search(model)
    ref = textbook_bfs(model)
    assert r.complete and ref.complete
    assert (r.distinct, r.generated, r.depth) == (ref.distinct, ref.generated, ref.depth)
