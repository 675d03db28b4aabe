"""No-progress cycles: weak fairness, stuttering, lassos on the explored graph, specs."""

from __future__ import annotations

import numpy as np
import pytest

from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch
from checker.progress import StateGraph, _lasso, find_lassos
from checker.spec import SpecError, parse
from checker.trace import rebuild_lasso

TD = """
components = ["mmio"]
[sizes]
vcpus = 1
pages_per_huge = 2
[mmio]
vms = ["tdx"]
memslots = "R-"
mmio_caching = false
{extra}
[guards]
tdx-requires-mmio-caching = "off"
"""


def graph(n: int, edges: list[tuple[int, int, int]]) -> StateGraph:
    """n states in one level; edges are (source, target, action id)."""
    src, dst, act = np.array(edges, np.int64).reshape(-1, 3).T
    return StateGraph(np.array([0]), np.zeros((n, 1), np.uint64), src, dst, act)


def test_a_fair_cycle_is_found_and_an_unfair_one_is_not() -> None:
    actor = np.array([0, 1])  # action 0 by actor 0, action 1 by actor 1
    # 0 -> 1 -> 0 by actor 0 while waiting; actor 1 can leave from both states to 2
    edges = [(0, 1, 0), (1, 0, 0), (0, 2, 1), (1, 2, 1)]
    waits = np.array([True, True, False])
    assert _lasso(graph(3, edges), waits, actor, 2) is None  # actor 1 always enabled, never steps
    # actor 1 disabled in state 1: the cycle is fair
    found = _lasso(graph(3, edges[:3]), waits, actor, 2)
    assert found is not None and found[0] == 0 and found[1] == [0, 0]


def test_a_strongly_fair_answer_enabled_on_the_cycle_must_be_taken() -> None:
    """Action 2 (the module's success answer, strong) leaves the waiting states from
    state 0; the BUSY loop 0 -> 1 -> 0 is weakly fair (actor 0 steps) but passes it by."""
    actor = np.array([0, 0, 0])
    edges = [(0, 1, 0), (1, 0, 1), (0, 2, 2)]
    waits = np.array([True, True, False])
    assert _lasso(graph(3, edges), waits, actor, 1) == (0, [0, 1])  # weak fairness only
    assert _lasso(graph(3, edges), waits, actor, 1, {2: {0}}) is None


def test_a_component_loses_the_states_that_enable_a_strong_action_it_never_takes() -> None:
    """0 <-> 1 <-> 2, and from 2 the strong action 3 leaves: the cycle 0 -> 1 -> 0 never
    passes where it is enabled, so it is strongly fair; a cycle through 2 would not be."""
    actor = np.array([0, 0, 0, 0])
    edges = [(0, 1, 0), (1, 0, 0), (1, 2, 1), (2, 1, 2), (2, 3, 3)]
    waits = np.array([True, True, True, False])
    assert _lasso(graph(4, edges), waits, actor, 1, {3: {2}}) == (0, [0, 0])
    # the strong action taken inside the component: fair, and the cycle takes it
    looped = [*edges[:4], (2, 2, 3)]
    found = _lasso(graph(4, looped), waits, actor, 1, {3: {2}})
    assert found is not None and 3 in found[1]


def test_a_waiting_state_with_no_step_at_all_is_a_cycle_of_length_zero() -> None:
    found = _lasso(graph(2, [(0, 1, 0)]), np.array([False, True]), np.array([0]), 1)
    assert found == (1, [])


def test_waiting_that_ends_is_no_cycle() -> None:
    assert _lasso(graph(2, [(0, 1, 0), (1, 0, 0)]), np.array([True, False]), np.array([0]), 1) is None


def run(text: str):  # type: ignore[no-untyped-def]
    spec = parse(text, "<test>", "t")
    model = spec.build()
    compiled = compile_model(model)
    bounds = spec.bound_invariants(model)
    result = ExplicitSearch(compiled, bounds, Budget()).run()
    return compiled, result, find_lassos(compiled, result, bounds)


def test_the_td_without_mmio_caching_keeps_faulting() -> None:
    compiled, _, lassos = run(TD.format(extra=""))
    (lasso,) = lassos
    assert lasso.who == "tdx0.vcpu0" and (len(lasso.prefix), len(lasso.cycle)) == (4, 3)
    trace = rebuild_lasso(compiled, lasso)
    assert [a.name for a in trace.actions[4:]] == [
        "x86_emulate_instruction", "handle_ept_violation", "kvm_faultin_pfn"]


def test_a_memslot_userspace_will_create_makes_the_loop_unfair() -> None:
    _, _, lassos = run(TD.format(extra="memslot_creations = [1]"))
    assert lassos == []


def test_with_mmio_caching_every_access_completes() -> None:
    _, result, lassos = run(TD.format(extra="").replace("mmio_caching = false", ""))
    assert result.complete and lassos == []


def test_a_cycle_expectation_must_name_a_progress_property() -> None:
    text = TD.format(extra="") + '[expect]\nresult = "cycle"\ninvariant = "mmio_emulation_fresh"\n'
    with pytest.raises(SpecError, match=r"expect\.invariant.*not a PROGRESS property"):
        parse(text, "<test>", "t")
    with pytest.raises(SpecError, match=r"expect\.result"):
        parse(TD.format(extra="") + '[expect]\nresult = "livelock"\n', "<test>", "t")


def test_a_lasso_is_exported_with_its_cycle_closed(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from checker.cli import main

    from .shipped import ROOT

    spec = ROOT / "specs" / "tdx-without-mmio-caching__no-tdx-requires-mmio-caching.toml"
    assert main(["--spec", str(spec), "--export", str(tmp_path), "--format", "text,json,dot"]) == 0
    out = capsys.readouterr().out
    assert "-- steps 5-7 repeat forever;" in out and "-- back to the state after step 4 --" in out
    name = spec.stem
    assert '"first_step": 5' in (tmp_path / f"{name}.json").read_text()
    dot = (tmp_path / f"{name}.dot").read_text()
    assert '"s6" -> "s4"' in dot and '"s7"' not in dot
    assert "-- steps 5-7 repeat forever;" in (tmp_path / f"{name}.txt").read_text()
