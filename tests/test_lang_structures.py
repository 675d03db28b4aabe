"""The modelling language's structures and helpers: families by label, reads and writes at
an index the state chooses, sets and records, first / max_of / min_of, and the two ways
of adding actions (a kernel model's documented methods, any other model's add())."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import pytest
import z3

from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch
from checker.scalar import textbook_bfs
from model.lang import (
    BOOL,
    EnumDomain,
    Extension,
    IntDomain,
    Model,
    ModelBuilder,
    ModelError,
    Step,
    evaluate,
    first,
    max_of,
    min_of,
    models,
    records,
)

RM = ["r1", "r2", "r3"]


def value(term: z3.ExprRef, **fields: Any) -> int | bool:
    """`term` evaluated with each named field set to a value (ints, or bools)."""
    return evaluate(term, {k: z3.BoolVal(v) if isinstance(v, bool) else z3.IntVal(v) for k, v in fields.items()})


def builder() -> ModelBuilder:
    return ModelBuilder("t", kernel_docs=False)


# -- families by label, and at an index the state chooses ---------------------------------------------------


def test_family_members_by_label_and_by_position() -> None:
    b = builder()
    fam = b.family("rmState", RM, IntDomain(0, 3), 0)
    assert fam["r2"] is fam[1] and fam["r2"].name == "rmState[r2]"
    assert fam.position("r3") == 2
    with pytest.raises(ModelError, match=r"family 'rmState' has no member 'r9'; its labels: r1, r2, r3"):
        fam["r9"]
    with pytest.raises(ModelError, match="out of range"):
        fam[3]


def _pointer_model(guarded: bool, default: int | None = None) -> Model:
    b = builder()
    ptr = b.field("ptr", IntDomain(0, 3), 0)
    slot = b.family("slot", ["a", "b", "c"], IntDomain(0, 2), 0)
    ok = ptr.var < 3 if guarded else True
    b.add("put", "T", ok, {**slot.write(ptr.var, 2), ptr: z3.If(ptr.var < 3, ptr.var + 1, 3)})
    b.add("peek", "T", slot.read(ptr.var, default) == 2 if default is not None else z3.And(ok, slot.read(ptr.var) == 2),
          {ptr: 0})
    return b.build()


def test_write_at_a_state_chosen_index_is_per_candidate_and_proved_in_range() -> None:
    m = _pointer_model(guarded=True)
    put = m.by_key["put()"]
    assert [f.name for f, _ in put.effect][:3] == ["slot[a]", "slot[b]", "slot[c]"]
    term = dict((f.name, t) for f, t in put.effect)["slot[b]"]
    assert value(term, ptr=1, **{"slot[b]": 0}) == 2 and value(term, ptr=2, **{"slot[b]": 0}) == 0
    peek = m.by_key["peek()"].guard
    assert value(peek, ptr=2, **{"slot[a]": 0, "slot[b]": 0, "slot[c]": 2}) is True
    with pytest.raises(ModelError, match=r"action put\(\) .* writes slot\[ptr\], which must lie in 0\.\.2 "
                                         r"\(it can fail where ptr = 3\): strengthen its guard"):
        _pointer_model(guarded=False)


def test_a_read_with_a_default_needs_no_proof_and_reads_the_default_out_of_range() -> None:
    b = builder()
    ptr = b.field("ptr", IntDomain(0, 3), 0)
    slot = b.family("slot", ["a", "b"], IntDomain(0, 2), 1)
    term = slot.read(ptr.var, default=0)
    assert [value(term, ptr=p, **{"slot[a]": 1, "slot[b]": 2}) for p in range(4)] == [1, 2, 0, 0]
    b.add("peek", "T", term == 1, {ptr: 0})
    b.build()  # no guard keeps ptr below 2: the default covers it
    with pytest.raises(ModelError, match="needs an integer value"):
        slot.write(ptr.var, z3.BoolVal(True))


# -- sets ---------------------------------------------------------------------------------------------------


def test_a_set_is_one_bool_field_per_element_and_its_terms_mean_what_they_say() -> None:
    b = builder()
    ptr = b.field("ptr", IntDomain(0, 3), 0)
    s = b.set_field("s", RM, init=["r2"])
    assert [f.name for f in s.members] == ["s[r1]", "s[r2]", "s[r3]"]
    assert [f.init for f in s.members] == [0, 1, 0]
    state = {"s[r1]": True, "s[r2]": False, "s[r3]": True}
    assert value(s.contains("r1"), **state) is True and value(s.contains(1), **state) is False
    assert [value(s.contains(ptr.var), ptr=p, **state) for p in range(4)] == [True, False, True, False]
    assert value(s.size(), **state) == 2
    assert value(s.is_empty(), **state) is False and value(s.is_nonempty(), **state) is True
    assert value(s.is_full(), **state) is False
    assert value(s.subset_of(["r1", "r3"]), **state) is True and value(s.subset_of(["r1"]), **state) is False
    assert value(s.contains_all(["r1", "r3"]), **state) is True
    assert value(s.equals(["r3", "r1"]), **state) is True
    assert value((s | ["r2"]).size(), **state) == 3 and value((s & ["r2", "r3"]).size(), **state) == 1
    assert value((s - ["r1"]).contains("r1"), **state) is False
    with pytest.raises(ModelError, match=r"'r9' is not an element; elements: r1, r2, r3"):
        s.contains("r9")
    with pytest.raises(ModelError, match="initial value of set 'u'"):
        b.set_field("u", RM, init=["x"])


def test_set_effects_add_remove_assign() -> None:
    b = builder()
    ptr = b.field("ptr", IntDomain(0, 3), 0)
    s = b.set_field("s", RM)
    assert s.add("r2") == {s.field("r2"): True}
    assert s.remove(0) == {s.field("r1"): False}
    assert set(s.assign(["r3"])) == set(s.members)  # every member may change
    assert list(s.assign(s | ["r1"])) == [s.field("r1")]  # the others are written as they are: left out
    removed = s.remove(ptr.var)  # a term naming no element removes nothing
    assert [value(t, ptr=3, **{f.name: True}) for f, t in removed.items()] == [True, True, True]
    b.add("add_at", "T", True, s.add(ptr.var))
    with pytest.raises(ModelError, match=r"action add_at\(\) .* adds to s an element named by a term, which must "
                                         r"name an element of s \(it can fail where ptr = 3\)"):
        b.build()


def test_a_set_of_records_is_named_by_coordinates() -> None:
    b = builder()
    i = b.field("i", IntDomain(0, 2), 0)
    msgs = b.set_field("msgs", records(type=["Prepared"], rm=RM) | records(type=["Commit", "Abort"]))
    assert msgs.universe.labels == ("type=Prepared,rm=r1", "type=Prepared,rm=r2", "type=Prepared,rm=r3",
                                    "type=Commit", "type=Abort")
    assert msgs.field(type="Prepared", rm="r2") is msgs.field(type="Prepared", rm=1) is msgs.members[1]
    assert msgs.field(type="Commit") is msgs.members[3]
    state = {f.name: n in (2, 4) for n, f in enumerate(msgs.members)}
    assert [value(msgs.contains(type="Prepared", rm=i.var), i=n, **state) for n in range(3)] == [False, False, True]
    assert value(msgs.contains({"type": "Abort"}), **state) is True
    effect = msgs.add(type="Prepared", rm=i.var)  # i's domain keeps it an element: proved without a guard
    b.add("send", "T", True, effect)
    b.build()
    with pytest.raises(ModelError, match="no element has exactly the coordinates rm; elements have: type; type, rm"):
        msgs.contains(rm="r1")
    with pytest.raises(ModelError, match="no element is type=Prepared; elements: type=Prepared,rm=r1, "):
        msgs.contains(type="Prepared")
    with pytest.raises(ModelError, match="no element is type=Prepare,rm=r1"):
        msgs.contains(type="Prepare", rm="r1")
    kinds = records(kind=EnumDomain("kind", ["m", "c"]), n=IntDomain(1, 2))
    assert kinds.labels == ("kind=m,n=1", "kind=m,n=2", "kind=c,n=1", "kind=c,n=2")
    with pytest.raises(ModelError, match="axis 'n' mixes"):
        records(n=[1, "a"])


# -- records ------------------------------------------------------------------------------------------------


def test_a_record_is_named_fields() -> None:
    b = builder()
    tm = b.record("tm", {"state": ["init", "done"], "count": IntDomain(1, 3), "busy": BOOL}, init={"count": 2})
    assert [f.name for f in tm.fields] == ["tm.state", "tm.count", "tm.busy"]
    assert [f.init for f in tm.fields] == [0, 2, 0]  # missing parts start at their first value
    assert tm.count is tm["count"] and tm.parts == ("state", "count", "busy")
    assert tm.assign(state="done", busy=True) == {tm.state: "done", tm.busy: True}
    assert value(tm.equals(state="done", count=3), **{"tm.state": 1, "tm.count": 3}) is True
    with pytest.raises(ModelError, match=r"record 'tm' has no field 'cnt'; its fields: state, count, busy"):
        tm["cnt"]
    with pytest.raises(AttributeError, match="has no field 'cnt'"):
        tm.cnt  # noqa: B018
    with pytest.raises(ModelError, match="not its fields"):
        b.record("bad", {"a": BOOL}, init={"b": True})


# -- first, max_of, min_of ----------------------------------------------------------------------------------


def test_first_is_the_first_candidate_that_holds_and_says_whether_one_does() -> None:
    b = builder()
    s = b.set_field("s", ["a", "b", "c", "d"])
    pick = first(range(4), lambda n: s.contains(n))
    for bits in itertools.product([False, True], repeat=4):
        state = {f.name: v for f, v in zip(s.members, bits, strict=True)}
        assert value(pick.exists, **state) is any(bits)
        if any(bits):
            assert value(pick.value, **state) == bits.index(True)
        else:
            assert value(pick.value, **state) == 3  # the last candidate, as documented
    assert value(first([5, 7], lambda n: n > 6).value) == 7  # constant predicates fold
    assert value(first([5, 7], lambda n: False, otherwise=0).value) == 0
    with pytest.raises(ModelError, match="no candidates"):
        first([], lambda n: True)


def test_max_of_and_min_of() -> None:
    x, y = z3.Int("x"), z3.Int("y")
    for a, c in itertools.product(range(-2, 3), repeat=2):
        assert value(max_of([x, y, 1]), x=a, y=c) == max(a, c, 1)
        assert value(min_of([x, y, 1]), x=a, y=c) == min(a, c, 1)
    assert max_of([3, 9, 4]).as_long() == 9 and min_of([3, 9, 4]).as_long() == 3
    with pytest.raises(ModelError, match="no values"):
        max_of([])


# -- one model using all of it: both engines, and a search written out by hand --------------------------


def pool() -> Model:
    """Three slots filled in order at `ptr`; `mark` adds the last value put to `seen`; `drop`
    removes the first element of `seen`; `settle` and `reset` act on its size."""
    b = builder()
    ptr = b.field("ptr", IntDomain(0, 3), 0)
    slot = b.family("slot", ["s0", "s1", "s2"], IntDomain(0, 2), 0)
    seen = b.set_field("seen", ["a", "b", "c"])
    stats = b.record("stats", {"hi": IntDomain(0, 2), "mode": ["idle", "busy"]})
    for v in range(3):
        b.add("put", "P", ptr.var < 3, {**slot.write(ptr.var, v), ptr: ptr.var + 1, stats.mode: "busy"}, v=v)
    b.add("mark", "P", ptr.var > 0, {**seen.add(slot.read(ptr.var - 1)),
                                     **stats.assign(hi=max_of([f.var for f in slot]))})
    pick = first(range(3), lambda i: seen.contains(i))
    b.add("drop", "Q", pick.exists, seen.remove(pick.value))
    b.add("settle", "Q", z3.And(seen.size() >= 2, stats.equals(mode="busy")), stats.assign(mode="idle"))
    b.add("reset", "Q", seen.is_full(), {ptr: 0, **seen.assign([]), **{f: 0 for f in slot},
                                         **stats.assign(hi=0, mode="idle")})
    return b.build()


def pool_by_hand() -> tuple[int, int, int]:
    """The same transition system as plain Python: distinct, generated, depth."""
    def successors(s: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        ptr, slots, seen, hi, mode = s
        out = []
        if ptr < 3:
            for v in range(3):
                out.append((ptr + 1, (*slots[:ptr], v, *slots[ptr + 1:]), seen, hi, "busy"))
        if ptr > 0:
            out.append((ptr, slots, seen | {slots[ptr - 1]}, max(slots), mode))
        if seen:
            out.append((ptr, slots, seen - {min(seen)}, hi, mode))
        if len(seen) >= 2 and mode == "busy":
            out.append((ptr, slots, seen, hi, "idle"))
        if len(seen) == 3:
            out.append((0, (0, 0, 0), frozenset(), 0, "idle"))
        return out

    init = (0, (0, 0, 0), frozenset(), 0, "idle")
    depth, queue, generated = {init: 0}, deque([init]), 1
    while queue:
        s = queue.popleft()
        for t in successors(s):
            generated += 1
            if t not in depth:
                depth[t] = depth[s] + 1
                queue.append(t)
    return len(depth), generated, max(depth.values())


def test_both_engines_agree_with_a_search_by_hand_on_a_model_using_every_helper() -> None:
    model = pool()
    r = ExplicitSearch(compile_model(model), [], Budget()).run()  # the vector dialect
    ref = textbook_bfs(model)  # the scalar dialect
    assert r.complete and ref.complete
    assert (r.distinct, r.generated, r.depth) == (ref.distinct, ref.generated, ref.depth) == pool_by_hand()


# -- adding actions: the kernel's way, and the short way ----------------------------------------------------


def test_a_model_not_about_the_kernel_adds_actions_without_ceremony() -> None:
    b = builder()
    x = b.field("x", IntDomain(0, 3), 0)

    def bump(by: int) -> Step:  # neither @kernel nor a docstring
        return Step(f"bump {by}", x.var + by <= 3, {x: x.var + by})

    b.action(bump, "T", by=1)
    added = b.add("reset", "U", x.var == 3, {x: 0})
    m = b.build()
    assert [a.key for a in m.actions] == ["bump(by=1)", "reset()"]
    assert m.actions[0].kernel == "bump" and added.text == "reset()" and added.kernel == "reset"
    assert "test_lang_structures.py:" in added.origin  # where the model's file added it, for messages
    with pytest.raises(ModelError, match=r"action reset\(\) is added twice"):
        b.add("reset", "U", True, {x: 0})
    with pytest.raises(ModelError, match="must be an identifier"):
        b.add("re set", "U", True, {x: 0})


def test_a_kernel_model_still_refuses_an_undocumented_action() -> None:
    b = ModelBuilder("kernel")  # the default, which model.mmu.build uses
    x = b.field("x", BOOL, False)
    with pytest.raises(ModelError, match="add\\(\\) is for models built with kernel_docs=False"):
        b.add("poke", "T", True, {x: True})

    @models("poke_it")
    def poke() -> Step:
        """Says nothing of the function."""
        return Step("poke", True, {x: True})

    with pytest.raises(ModelError, match="docstring must name the kernel function 'poke_it'"):
        b.action(poke, "T")


def test_the_mmu_model_refuses_an_action_that_names_no_kernel_function() -> None:
    from model.mmu import Sizes, build

    class Shortcut(Extension):
        name = "shortcut"
        summary = "adds a step the short way"

        def define(self, b: ModelBuilder) -> None:
            b.add("poke", "ioctl", True, {})

    with pytest.raises(ModelError, match="must say which kernel function they model"):
        build(["attributes"], Sizes(1, 1, 2), {}, extensions=[Shortcut])


# -- the third textbook model -------------------------------------------------------------------------------


def test_missionaries_and_cannibals_match_a_search_over_python_sets() -> None:
    """examples/missionaries.py against the puzzle solved directly: the same states,
    successors and depth, and the shortest solution (11 crossings) found by both engines."""
    from examples import missionaries as mc

    missionaries, cannibals = set(mc.MISSIONARIES), set(mc.CANNIBALS)

    def safe(s: frozenset[str]) -> bool:
        return s <= cannibals or len(s & cannibals) <= len(s & missionaries)

    init = ("E", frozenset(missionaries | cannibals), frozenset())
    depth, queue, generated, solution = {init: 0}, deque([init]), 1, None
    while queue:
        s = queue.popleft()
        boat, east, west = s
        here, there = (east, west) if boat == "E" else (west, east)
        for crew in (frozenset(c) for n in (1, 2) for c in itertools.combinations(sorted(here), n)):
            left, reached = here - crew, there | crew
            if safe(left) and safe(reached):
                t = ("W", left, reached) if boat == "E" else ("E", reached, left)
                generated += 1
                if t not in depth:
                    depth[t] = depth[s] + 1
                    queue.append(t)
                    solution = solution or (depth[t] if not t[1] else None)
    by_hand = (len(depth), generated, max(depth.values()))
    assert by_hand == (64, 253, 12) and solution == 11

    model = mc.build()
    compiled = compile_model(model)
    r = ExplicitSearch(compiled, [], Budget()).run()
    ref = textbook_bfs(model)
    assert (r.distinct, r.generated, r.depth) == (ref.distinct, ref.generated, ref.depth) == by_hand
    hit = ExplicitSearch(compiled, [mc.SOLUTION.bind(model)], Budget()).run()
    assert [h.depth for h in hit.violations] == [solution]
