"""Symmetry reduction: proved before it is used, one state per orbit, the full space's
figures and verdicts, and real traces."""

from __future__ import annotations

import json
from itertools import permutations
from math import comb
from pathlib import Path

import numpy as np
import pytest
import z3

from checker.budget import Budget
from checker.cli import main
from checker.compile import compile_model
from checker.explicit import ExplicitSearch, SearchResult
from checker.spec import read
from checker.symmetry import Reduction, reduction
from checker.trace import holds, rebuild
from examples import counter
from invariants import Bound, Invariant, Kind
from model.lang import IntDomain, Model, ModelBuilder
from model.lang.symmetry import SymmetryError

from .shipped import ROOT, SPECS, shipped_model
from .test_specs import EXHAUSTIVE, _light


def _search(model: Model, bounds: list[Bound], red: Reduction | None = None, **kw: object) -> SearchResult:
    return ExplicitSearch(compile_model(model), bounds, Budget(), reduction=red, **kw).run()  # type: ignore[arg-type]


def _bound(model: Model, name: str, term: z3.BoolRef, kind: Kind = Kind.ALWAYS) -> Bound:
    return Bound(Invariant(name, kind, name, "-", (), lambda m: term), term)


def _pair(guard0: object = None, init1: int = 0) -> Model:
    """Two processes that each count to 2; process 0's guard may be made different."""
    b = ModelBuilder("pair", kernel_docs=False)
    pc = b.family("pc", ["p0", "p1"], IntDomain(0, 2), [0, init1])
    b.part("pair", pc)
    b.symmetric("process", "proc", {0: ("p0",), 1: ("p1",)})
    for i in range(2):
        guard = pc[i].var < 2
        if i == 0 and guard0 is not None:
            guard = z3.And(guard, guard0(pc))  # type: ignore[operator]
        b.add("step", f"p{i}", guard, {pc[i]: pc[i].var + 1}, proc=i)
    return b.build()


def test_the_counter_has_one_state_per_multiset_of_pcs_and_counts_the_full_space() -> None:
    n, k = 4, 3
    model = counter.build(n, k)
    red = reduction(model, {})
    assert red.order == 24
    result = _search(model, [], red)
    assert result.complete
    assert result.orbits == comb(n + 2, 2) * k  # a multiset of n pcs over {0, 1, 2}, and the counter
    assert result.distinct == 3**n * k == _search(model, []).distinct


def test_canonical_forms_are_one_per_orbit_and_orbit_sizes_add_up() -> None:
    model = counter.build(3, 2)
    red = reduction(model, {})
    full = _search(model, [])
    states = full.store.states[:full.distinct]
    canonical = red.canonical(states)
    assert (red.canonical(canonical) == canonical).all()
    for p in permutations(range(3)):  # every image of a state has the same canonical form
        image = red.permute(states, (p,))
        assert (red.canonical(image) == canonical).all()
        assert sorted(map(tuple, image.tolist())) == sorted(map(tuple, states.tolist()))  # the space is closed
    orbits = np.unique(canonical, axis=0)
    assert red.orbit_sizes(orbits).sum() == len(states)
    for state in states[:50]:  # the element found maps a state to its canonical form
        target = tuple(int(w) for w in red.canonical(state[None])[0])
        p = red.element_to(tuple(int(w) for w in state), target)
        assert p is not None and tuple(int(w) for w in red.permute(state[None], p)[0]) == target
        if target != tuple(int(w) for w in state):  # a state that is not canonical is no one's form
            assert red.element_to(target, tuple(int(w) for w in state)) is None


def test_the_group_composes_and_inverts_like_permutations() -> None:
    group = reduction(counter.build(3, 2), {}).group
    elements = [(p,) for p in permutations(range(3))]
    assert group.order == len(elements) == 6
    for a in elements:
        assert group.compose(a, group.inverse(a)) == group.identity
        for b in elements:
            fields = [group.field_map(b)[group.field_map(a)[f]] for f in range(len(group.field_map(a)))]
            assert fields == group.field_map(group.compose(a, b))


def test_twelve_processes_are_sorted_not_enumerated() -> None:
    model = counter.build(12, 2)
    red = reduction(model, {})
    assert red.order == 479001600
    result = _search(model, [], red)
    assert result.orbits == comb(12 + 2, 2) * 2 and result.distinct == 3**12 * 2


def test_a_guard_that_treats_one_member_differently_is_refused_with_a_state() -> None:
    model = _pair(lambda pc: pc[1].var == 0)
    with pytest.raises(SymmetryError, match=r"step\(proc=0\), permuted, and that of step\(proc=1\) differ"):
        reduction(model, {})


def test_an_initial_state_that_is_not_symmetric_is_refused() -> None:
    with pytest.raises(SymmetryError, match=r"initial state is not symmetric: pc\[p0\] starts 0, pc\[p1\] starts 1"):
        reduction(_pair(init1=1), {})


def test_a_property_about_one_member_is_refused() -> None:
    model = _pair()
    pc0 = model.field("pc[p0]")
    with pytest.raises(SymmetryError, match="p0_small, permuted, and p0_small differ"):
        reduction(model, {"p0_small": pc0.var < 2})
    reduction(model, {"both_small": z3.And(pc0.var < 2, model.field("pc[p1]").var < 2)})


def test_a_model_without_a_declared_set_has_no_reduction_to_prove() -> None:
    b = ModelBuilder("one", kernel_docs=False)
    x = b.field("x", IntDomain(0, 1), 0)
    b.add("flip", "t", x.var == 0, {x: 1})
    with pytest.raises(SymmetryError, match="declares no symmetric index set"):
        reduction(b.build(), {})


def test_every_path_through_canonical_forms_replays_as_real_steps() -> None:
    """Each stored state's path rebuilds as steps of the model (rebuild replays it and
    checks every step against the permuted stored state); some real paths end elsewhere
    than the canonical form stored, so the un-permuting is exercised."""
    model = counter.build(3, 2)
    compiled = compile_model(model)
    reduced = _search(model, [], reduction(model, {}))
    moved = 0
    for depth, level in enumerate(reduced.levels):
        for index in range(len(level.states)):
            trace = rebuild(compiled, reduced, depth, index)
            assert len(trace.actions) == depth
            moved += trace.states[-1] != model.schema.unpack(reduced.state(depth, index))
    assert moved > 0


def test_a_counterexample_has_the_shortest_length_and_breaks_the_invariant_for_real() -> None:
    model = counter.build(3, 4)
    pcs = [model.field(f"pc[p{i}]") for i in range(3)]
    two_done = z3.Or(*[z3.And(pcs[a].var == 2, pcs[b].var == 0, pcs[c].var == 2)
                       for a, b, c in [(0, 1, 2), (1, 0, 2), (0, 2, 1)]])
    bound = _bound(model, "not_two_done", z3.Not(two_done))
    red = reduction(model, {"not_two_done": bound.term})
    full, reduced = _search(model, [bound]), _search(model, [bound], red)
    assert [h.depth for h in reduced.violations] == [h.depth for h in full.violations] == [4]
    hit = reduced.violations[0]
    trace = rebuild(compile_model(model), reduced, hit.depth, hit.index)
    assert len(trace.actions) == 4 and not holds(model, bound.term, trace.states[-1])


def test_witnesses_and_deadlocks_keep_their_depths() -> None:
    model = _pair()
    both = z3.And(model.field("pc[p0]").var == 2, model.field("pc[p1]").var == 2)
    bound = _bound(model, "both_done", both, Kind.SOMETIMES)
    red = reduction(model, {"both_done": both})
    full = _search(model, [bound], check_deadlock=True)
    reduced = _search(model, [bound], red, check_deadlock=True)
    assert reduced.witnesses["both_done"].depth == full.witnesses["both_done"].depth == 4
    assert reduced.deadlock is not None and full.deadlock is not None
    assert reduced.deadlock[0] == full.deadlock[0] == 4
    assert (reduced.distinct, reduced.orbits, full.distinct) == (9, 6, 9)


def test_a_tdx_world_reduced_counts_its_full_space() -> None:
    model, bounds = shipped_model("tdx-small-default")
    safety = [b for b in bounds if b.kind is not Kind.PROGRESS]
    red = reduction(model, {b.name: b.term for b in safety})
    assert red.group.label == "vCPU (2)"
    result = ExplicitSearch(compile_model(model), safety, Budget(), workers=2, reduction=red).run()
    assert result.complete and not result.violations
    assert result.distinct == 1415350 and result.orbits == 719374  # the spec pins 1415350 unreduced


def test_the_command_line_reports_orbits_and_the_full_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--spec", "attributes-default", "--symmetry"]) == 0
    out = capsys.readouterr().out
    assert "states=125831 distinct=83888 depth=29 complete=yes orbits=43126 symmetry=vCPU:2" in out
    assert "expected: pass (exhaustive): met" in out


def test_coverage_searches_the_full_space_even_when_symmetry_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--spec", "attributes-default", "--symmetry", "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "symmetry: not used: --coverage counts every state of the full space" in out
    assert "states=243549 distinct=83888 depth=29 complete=yes\n" in out


def test_the_spec_key_must_be_a_boolean(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.toml"
    spec.write_text('components = ["attributes"]\nsymmetry = "yes"\n[expect]\nresult = "pass"\n')
    assert main(["--spec", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "symmetry" in err and "true | false" in err


def test_a_spec_asking_for_symmetry_gets_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.toml"
    spec.write_text("symmetry = true\n" + (ROOT / "specs" / "attributes-default.toml").read_text())
    assert main(["--spec", str(spec)]) == 0
    assert "orbits=43126" in capsys.readouterr().out


def _every_spec() -> list[object]:
    """The shipped specs with more than one vCPU (with one, nothing is symmetric)."""
    out = []
    for path in SPECS:
        if read(path).sizes.vcpus < 2:
            continue
        # the huge-page default's own check (gate) runs reduced against its pinned figures;
        # searching it both ways here takes five minutes: on request (-m slow)
        marks = [pytest.mark.slow] if path.stem in EXHAUSTIVE else [] if _light(path) else [pytest.mark.gate]
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


@pytest.mark.parametrize("path", _every_spec())
def test_every_spec_has_the_same_verdicts_and_shortest_counterexamples_with_symmetry(path: Path) -> None:
    """Every shipped spec, under its own profile, searched whole and reduced: the same
    verdict (the invariants violated first, at the same depth), the same witnesses' and
    deadlock's depths, and the same figures (progress is always checked on the full graph)."""
    spec = read(path)
    model = spec.build()
    bounds = [b for b in spec.bound_invariants(model, None) if b.kind is not Kind.PROGRESS]
    compiled = compile_model(model)
    assert model.symmetric, f"{path.stem} has {spec.sizes.vcpus} vCPUs and declares none interchangeable"
    runs = []
    for red in (None, reduction(model, {b.name: b.term for b in bounds})):
        budget = Budget()
        budget.depth = spec.depth
        r = ExplicitSearch(compiled, bounds, budget, spec.check_deadlock, workers=2, reduction=red).run()
        runs.append((sorted((h.bound.name, h.depth) for h in r.violations),
                     {n: None if h is None else h.depth for n, h in r.witnesses.items()},
                     None if r.deadlock is None else r.deadlock[0], r.distinct, r.depth, r.complete))
        if red is not None:  # a world of two vCPUs has states that only differ by which is which
            assert r.orbits is not None and r.orbits < r.distinct
            for h in r.violations:  # each counterexample replays as real steps
                trace = rebuild(compiled, r, h.depth, h.index)
                assert not holds(model, h.bound.term, trace.states[-1])
    assert runs[0] == runs[-1]


def test_against_another_profile_prints_the_same_with_symmetry(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for extra in ([], ["--symmetry"]):
        assert main(["--spec", "attributes-default", "--against", "v6.16", *extra]) in (0, 1)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "attributes-default" in outputs[0]


def test_a_model_that_is_not_symmetric_exits_2_naming_the_action(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "pair.py"
    model.write_text(
        "import z3\n"
        "from model.lang import IntDomain, ModelBuilder\n\n\n"
        "def build():\n"
        "    b = ModelBuilder('pair', kernel_docs=False)\n"
        "    pc = b.family('pc', ['p0', 'p1'], IntDomain(0, 2), 0)\n"
        "    b.symmetric('process', 'proc', {0: ('p0',), 1: ('p1',)})\n"
        "    b.add('step', 'p0', z3.And(pc[0].var < 2, pc[1].var == 0), {pc[0]: pc[0].var + 1}, proc=0)\n"
        "    b.add('step', 'p1', pc[1].var < 2, {pc[1]: pc[1].var + 1}, proc=1)\n"
        "    return b.build()\n")
    assert main(["--model", str(model)]) == 0
    capsys.readouterr()
    assert main(["--model", str(model), "--symmetry"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: model: symmetry over process (2) (p0 <-> p1): the guard of step(proc=0)")


def test_a_reduced_counterexample_exports_replays_and_says_how_to_reproduce_it(tmp_path,  # type: ignore[no-untyped-def]
                                                                              capsys: pytest.CaptureFixture[str]
                                                                              ) -> None:
    spec = "fault-vs-conversion-stale-attr__no-seq-check"
    assert main(["--spec", spec, "--symmetry", "--export", str(tmp_path), "--format", "json"]) == 0
    capsys.readouterr()
    document = tmp_path / f"{spec}.json"
    assert "--symmetry" in json.loads(document.read_text())["command"]
    assert main(["replay", str(document)]) == 1  # the violation still reproduces
    assert "reproduces: " in capsys.readouterr().out


def test_the_pinning_component_declares_its_vcpus_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "pinning.toml"
    path.write_text('profile = "pinned-spte-rfc"\ncomponents = ["pinning"]\n[sizes]\nvcpus = 3\n')
    model = read(path).build()
    red = reduction(model, {})
    assert red.group.label == "vCPU (3)" and red.order == 6
