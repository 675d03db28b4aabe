"""--coverage: per action the states enabling it and the new states it produced, per field
the values reached, checked against independent one-state-at-a-time searches."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import z3

import checker.explicit as engine
from checker import coverage
from checker.cli import load_spec, main
from checker.compile import SCALAR, _Emitter, compile_model
from checker.explicit import Budget, ExplicitSearch, SearchResult
from examples import diehard
from model.lang import IntDomain, Model, ModelBuilder, Step, models

from .shipped import ROOT

DEPTH = 6  # attributes-default within 6 steps: a few thousand states


@dataclass
class Reference:
    """What a plain search finds: the stored states in BFS order with the action each is
    credited to, and per action id the expanded states whose guard holds."""

    levels: list[list[tuple[int, ...]]]  # per level, the states (values per field), in the engine's order
    credited: list[int]  # per action id, states credited to it
    enabling: list[int]  # per action id, expanded states where its guard holds
    by_name: dict[str, int]  # per action name, expanded states where some instance's guard holds
    expanded: int


Guard = Callable[[tuple[int, ...]], bool]
Effect = Callable[[tuple[int, ...]], tuple[int, ...]]


def z3_actions(model: Model) -> list[tuple[Guard, Effect]]:
    """Each action's guard and effect evaluated by z3 on a state's values (slow, for tiny models)."""
    fields = model.schema.fields

    def at(values: tuple[int, ...]) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        return [(f.var, f.domain.z3_value(v)) for f, v in zip(fields, values, strict=True)]

    def value(term: z3.ExprRef, values: tuple[int, ...]) -> int:
        t = z3.simplify(z3.substitute(term, *at(values)))
        return 1 if z3.is_true(t) else 0 if z3.is_false(t) else t.as_long()

    out = []
    for a in model.actions:
        def guard(values: tuple[int, ...], a=a) -> bool:  # type: ignore[no-untyped-def]
            return bool(value(a.guard, values))

        def effect(values: tuple[int, ...], a=a) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
            new = list(values)
            for f, term in a.effect:
                new[f.index] = value(term, values)
            return tuple(new)

        out.append((guard, effect))
    return out


def python_actions(model: Model) -> list[tuple[Guard, Effect]]:
    """Each action's guard and effect as plain Python over a state's values (no packing,
    no NumPy), for models too large to evaluate with z3 state by state."""
    fields = dict(model.schema.by_name)
    emit = _Emitter(fields, "reference", SCALAR)

    def ref(f):  # type: ignore[no-untyped-def]
        return f"(v[{f.index}] != 0)" if f.domain.is_bool() else f"v[{f.index}]"

    out = []
    for a in model.actions:
        guard = emit.expr(a.guard, ref)
        writes = {f.index: emit.expr(t, ref) for f, t in a.effect}
        new = ", ".join(f"int({writes[i]})" if i in writes else f"v[{i}]" for i in range(len(model.schema.fields)))
        namespace: dict[str, object] = {}
        exec(f"def guard(v):\n    return bool({guard})\ndef effect(v):\n    return ({new},)\n", namespace)
        out.append((namespace["guard"], namespace["effect"]))  # type: ignore[arg-type]
    return out


def key(model: Model, values: tuple[int, ...]) -> bytes:
    """The engine's order of a level: its packed words compared as bytes, lowest first."""
    return b"".join(w.to_bytes(8, "little") for w in model.schema.pack(values))


def reference(model: Model, actions: Sequence[tuple[Guard, Effect]], depth: int | None = None,
              stop: Callable[[tuple[int, ...]], bool] | None = None) -> Reference:
    """Breadth-first, one state at a time: each level sorted like the engine's, each new
    state credited to its first (parent, action) in that order; every state of a level is
    expanded unless `stop` holds for one of them (a violation) or the depth bound is past."""
    init = model.schema.unpack(model.init)
    levels = [[init]]
    seen = {init}
    credited = [0] * len(model.actions)
    enabling = [0] * len(model.actions)
    by_name = dict.fromkeys((a.name for a in model.actions), 0)
    expanded = 0
    while levels[-1] and not (stop is not None and any(stop(s) for s in levels[-1])):
        following: dict[tuple[int, ...], int] = {}
        for state in levels[-1]:
            expanded += 1
            names = set()
            for aid, (guard, effect) in enumerate(actions):
                if guard(state):
                    enabling[aid] += 1
                    names.add(model.actions[aid].name)
                    nxt = effect(state)
                    if nxt not in seen and nxt not in following:
                        following[nxt] = aid
            for name in names:
                by_name[name] += 1
        if depth is not None and len(levels) > depth:
            break  # the bound level is expanded, its successors not kept
        for aid in following.values():
            credited[aid] += 1
        seen.update(following)
        levels.append(sorted(following, key=lambda s: key(model, s)))
    if not levels[-1]:
        levels.pop()
    return Reference(levels, credited, enabling, by_name, expanded)


def search(model: Model, depth: int | None = None, invariants: Sequence = (), coverage_on: bool = True
           ) -> SearchResult:
    bounds = [i.bind(model) for i in invariants]
    return ExplicitSearch(compile_model(model), bounds, Budget(depth=depth), coverage=coverage_on).run()


def attributes_model() -> Model:
    return load_spec("attributes-default").build()


@cache
def attributes_reference() -> Reference:
    model = attributes_model()
    return reference(model, python_actions(model), depth=DEPTH)


def assert_matches(model: Model, cov: coverage.Coverage, ref: Reference) -> None:
    assert [a.enabling for a in cov.actions] == ref.enabling
    assert [a.new for a in cov.actions] == ref.credited
    assert cov.expanded == ref.expanded
    states = [s for level in ref.levels for s in level]
    assert cov.stored == len(states)
    for f, fc in zip(model.schema.fields, cov.fields, strict=True):
        assert fc.values == tuple(sorted({s[f.index] for s in states})), f.name
    for n in cov.names:  # a state enabling two instances of a name counts once
        assert n.enabling == ref.by_name[n.name], n.name
        assert n.enablings == sum(ref.enabling[a.id] for a in model.actions if a.name == n.name)


# -- exact figures against the reference ------------------------------------------------------------------


def test_attributes_default_matches_a_plain_search_at_a_depth_bound() -> None:
    model = attributes_model()
    result = search(model, depth=DEPTH)
    assert result.stop == "depth" and not result.complete
    cov = coverage.compute(result, model, "attributes-default")
    ref = attributes_reference()
    assert_matches(model, cov, ref)
    assert cov.expanded == cov.stored, "with coverage the bound level is expanded too"
    assert sum(a.new for a in cov.actions) == result.distinct - 1
    assert 0 < len(cov.never_enabled_keys) < len(model.actions)


def test_diehard_matches_z3_state_by_state() -> None:
    model = diehard.build()
    result = search(model)
    assert result.complete
    cov = coverage.compute(result, model)
    assert_matches(model, cov, reference(model, z3_actions(model)))
    # every enabled state yields its successor, self-loops (filling a full jug) included
    assert sum(a.enabling for a in cov.actions) == result.generated - 1
    assert sum(a.new for a in cov.actions) == result.distinct - 1 == 15
    assert cov.never_enabled == [] and cov.never_left_initial == []
    assert [f.labels for f in cov.fields] == [("0", "1", "2", "3"), ("0", "1", "2", "3", "4", "5")]


def test_a_search_stopped_by_a_violation_leaves_its_last_level_unexpanded() -> None:
    model = diehard.build()
    result = search(model, invariants=[diehard.NOT_SOLVED])
    assert result.stop == "violation"
    cov = coverage.compute(result, model)
    ref = reference(model, z3_actions(model), stop=lambda s: s[model.field("big").index] == 4)
    assert_matches(model, cov, ref)
    assert cov.expanded == cov.stored - len(result.levels[-1].states) < cov.stored
    text = "\n".join(cov.text_lines())
    assert f"coverage: {cov.expanded} of {cov.stored} stored states expanded\n" in text + "\n"
    assert "the search was not complete (it stopped at a violation): coverage covers" in text


def _with_a_dead_action() -> Model:
    """Two counters 0..2, and an action whose guard cannot hold: x0 never exceeds 2."""
    b = ModelBuilder("dead")
    x = b.field("x", IntDomain(0, 3), 0)
    y = b.field("y", IntDomain(0, 3), 0)
    z = b.field("z", IntDomain(0, 1), 0)

    class Counters:
        @models("inc")
        def inc(self, which: str) -> Step:
            """inc: count one up to 2."""
            f = x if which == "x" else y
            return Step(f"inc {which}", f.var < 2, {f: f.var + 1})

        @models("reset")
        def reset(self, which: str) -> Step:
            """reset: back to 0 once at 2; for y only at 3, which it never reaches."""
            f, top = (x, 2) if which == "x" else (y, 3)
            return Step(f"reset {which}", f.var == top, {f: 0})

        @models("overflow")
        def overflow(self) -> Step:
            """overflow: x above 2, never: inc stops at 2."""
            return Step("overflow", x.var > 2, {z: 1})

    c = Counters()
    b.part("counters", c)
    for which in ("x", "y"):
        b.action(c.inc, "T", which=which)
    for which in ("x", "y"):
        b.action(c.reset, "T", which=which)
    b.action(c.overflow, "T")
    return b.build()


def test_an_action_that_is_never_enabled_is_reported() -> None:
    model = _with_a_dead_action()
    result = search(model)
    cov = coverage.compute(result, model)
    assert_matches(model, cov, reference(model, z3_actions(model)))
    assert cov.never_enabled == ["overflow"]
    assert cov.never_enabled_keys == ["reset(which=y)", "overflow()"]
    assert [(n.name, n.instances, n.instances_enabled) for n in cov.names] == [
        ("inc", 2, 2), ("reset", 2, 1), ("overflow", 1, 0)]
    assert [f.name for f in cov.never_left_initial] == ["z"]
    assert cov.fields[1].values == (0, 1, 2)  # y: 3 is never reached
    text = "\n".join(cov.text_lines())
    assert "never enabled (1 of 3 actions): overflow; usually a modelling mistake" in text
    assert "action instances never enabled: 2 of 5" in text
    assert "  z = 0" in text.split("fields that never left their initial value")[1]
    doc = cov.as_json()
    assert doc["never_enabled"] == {"names": ["overflow"], "keys": ["reset(which=y)", "overflow()"]}
    assert doc["never_left_initial"] == ["z"]


def test_every_action_enabled_is_said_plainly() -> None:
    model = diehard.build()
    text = coverage.compute(search(model), model).text_lines()
    assert "never enabled: none; each of the 6 actions was enabled" in text
    assert "coverage: 16 of 16 stored states expanded (the search was complete)" in text


# -- determinism, and the search without coverage unchanged -----------------------------------------------


@pytest.mark.parametrize("block", [61, 1000])
def test_the_same_bytes_whatever_the_block_size(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = attributes_model()
    whole = coverage.to_json(coverage.compute(search(model, depth=DEPTH), model))
    violation = coverage.to_json(coverage.compute(search(diehard.build(), invariants=[diehard.NOT_SOLVED]),
                                                  diehard.build()))
    monkeypatch.setattr(engine, "BLOCK", block)
    assert coverage.to_json(coverage.compute(search(model, depth=DEPTH), model)) == whole
    dh = diehard.build()
    assert coverage.to_json(coverage.compute(search(dh, invariants=[diehard.NOT_SOLVED]), dh)) == violation


def test_coverage_changes_no_figure_of_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BLOCK", 64)  # the bound level spans many blocks
    model = attributes_model()
    on, off = search(model, depth=DEPTH), search(model, depth=DEPTH, coverage_on=False)
    assert off.enabled is None and on.enabled is not None
    assert (on.distinct, on.generated, on.depth, on.stop) == (off.distinct, off.generated, off.depth, off.stop)
    for a, b in zip(on.levels, off.levels, strict=True):
        assert np.array_equal(a.states, b.states) and np.array_equal(a.action, b.action)
    with pytest.raises(ValueError, match="without coverage"):
        coverage.compute(off, model)


# -- the command line -------------------------------------------------------------------------------------


def test_cli_prints_coverage_after_the_usual_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--depth", str(DEPTH)]) == 1
    plain = capsys.readouterr().out
    assert main(["--depth", str(DEPTH), "--coverage"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(plain), "--coverage adds to the usual output and changes none of it"
    model = attributes_model()
    cov = coverage.compute(search(model, depth=DEPTH), model, "attributes-default")
    tail = out[len(plain):]
    assert tail == "\n" + "\n".join(cov.text_lines()) + "\n"
    lines = tail.splitlines()
    assert lines[1] == f"coverage: {cov.stored} of {cov.stored} stored states expanded"
    assert "(it stopped at the depth bound)" in tail
    header = next(i for i, line in enumerate(lines) if line.split() == ["action", "instances", "ever", "enabled",
                                                                         "states", "enabling", "new", "states"])
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 1 + len(cov.names)]}
    assert list(rows) == list(dict.fromkeys(a.name for a in model.actions))
    ref = attributes_reference()
    for name, (instances, ever, _, new) in rows.items():
        ids = [a.id for a in model.actions if a.name == name]
        assert int(instances) == len(ids)
        assert int(ever) == sum(ref.enabling[i] > 0 for i in ids)
        assert int(new) == sum(ref.credited[i] for i in ids)
    never = [n for n, row in rows.items() if row[1] == "0"]
    assert never and f"never enabled ({len(never)} of {len(rows)} actions): {never[0]}, " in tail
    assert "  mem_attr_array[g0 g1 g2 g3]: SHARED PRIVATE (2 of 2)" in lines


def test_cli_writes_the_coverage_file_with_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert main(["--depth", str(DEPTH), "--coverage", "--export", str(out_dir)]) == 1
    out = capsys.readouterr().out
    path = out_dir / "attributes-default.coverage.json"
    assert "no counterexample to export; only the coverage is written" in out
    assert out.endswith(f"wrote {path}\n")
    assert sorted(p.name for p in out_dir.iterdir()) == [path.name]
    doc = json.loads(path.read_text())
    model = attributes_model()
    assert doc["spec"] == "attributes-default" and doc["schema_version"] == 1
    assert [a["key"] for a in doc["actions"]] == [a.key for a in model.actions]
    ref = attributes_reference()
    assert [a["states_enabling"] for a in doc["actions"]] == ref.enabling
    assert [a["new_states"] for a in doc["actions"]] == ref.credited
    assert doc["never_enabled"]["keys"] == [a.key for a in model.actions if ref.enabling[a.id] == 0]
    assert doc["search"] == {"stored": sum(map(len, ref.levels)), "expanded": ref.expanded, "depth": DEPTH,
                             "complete": False, "stop": "depth"}
    assert [f["name"] for f in doc["fields"]] == [f.name for f in model.schema.fields]
    first = path.read_bytes()
    assert main(["--depth", str(DEPTH), "--coverage", "--export", str(out_dir)]) == 1
    assert path.read_bytes() == first


def test_cli_writes_coverage_beside_a_counterexample(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    spec = "specs/hugepage-over-converting-attrs__no-huge-range.toml"
    assert main(["--spec", spec, "--coverage", "--export", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    name = "hugepage-over-converting-attrs__no-huge-range"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.coverage.json", f"{name}.txt"]
    assert "(it stopped at a violation)" in out and "nothing to export" not in out
    doc = json.loads((tmp_path / f"{name}.coverage.json").read_text())
    assert doc["search"]["stop"] == "violation" and doc["search"]["expanded"] < doc["search"]["stored"]


def test_coverage_with_against_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--coverage", "--against", "v6.19", "--export", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: --coverage reports one search and --against runs two")
    assert not (tmp_path / "out").exists()
