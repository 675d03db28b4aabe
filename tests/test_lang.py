"""The modelling core: domains, packing, and every model-definition mistake caught at build."""

from __future__ import annotations

import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

from model.lang import (
    BOOL,
    EnumDomain,
    IntDomain,
    ModelBuilder,
    ModelError,
    Schema,
    Step,
    UnknownName,
    kernel,
)

COLOR = EnumDomain("color", ["RED", "GREEN", "BLUE"])


class Toy:
    """A two-field model whose actions tests vary one mistake at a time."""

    def __init__(self, b: ModelBuilder) -> None:
        self.x = b.field("x", IntDomain(0, 3), 0)
        self.c = b.field("c", COLOR, "RED")

    @kernel("toy_inc")
    def inc(self) -> Step:
        """toy_inc: x++ while below 3."""
        return Step("inc", self.x.var < 3, {self.x: self.x.var + 1})

    @kernel("toy_unguarded_inc")
    def unguarded_inc(self) -> Step:
        """toy_unguarded_inc: x++ with no bound."""
        return Step("inc", True, {self.x: self.x.var + 1})

    @kernel("toy_paint")
    def paint(self, color: str) -> Step:
        """toy_paint: set c."""
        return Step("paint", True, {self.c: color})

    @kernel("toy_big")
    def big(self) -> Step:
        """toy_big: write a constant outside x's domain."""
        return Step("big", True, {self.x: 7})

    @kernel("toy_bool_into_int")
    def bool_into_int(self) -> Step:
        """toy_bool_into_int: write a boolean term into an int field."""
        return Step("bad", True, {self.x: self.c.var == COLOR.RED})

    @kernel("toy_stranger")
    def stranger(self) -> Step:
        """toy_stranger: mention a z3 constant that is not a field."""
        return Step("bad", z3.Int("y") > 0, {self.x: 1})

    def undocumented(self) -> Step:
        return Step("bad", True, {self.x: 1})

    @kernel("some_other_function")
    def misdocumented(self) -> Step:
        """Says nothing about which function it models."""
        return Step("bad", True, {self.x: 1})


def toy(*actions: str, guards_off: tuple[str, ...] = (), **params: object):  # type: ignore[no-untyped-def]
    b = ModelBuilder("toy", guards_off)
    t = Toy(b)
    for name in actions:
        b.action(getattr(t, name), "T", **params)
    return b, t


def test_a_good_model_builds_and_packs_its_initial_state() -> None:
    b, _ = toy("inc")
    m = b.build()
    assert m.schema.unpack(m.init) == (0, 0)
    assert [a.key for a in m.actions] == ["inc()"]
    assert m.actions[0].kernel == "toy_inc"


def test_duplicate_field_names_are_rejected() -> None:
    b = ModelBuilder("dup")
    b.field("x", BOOL, False)
    with pytest.raises(ModelError, match="declared twice"):
        b.field("x", BOOL, False)


def test_duplicate_action_instances_are_rejected() -> None:
    b, t = toy("inc")
    with pytest.raises(ModelError, match="added twice"):
        b.action(t.inc, "T")


def test_duplicate_guards_are_rejected() -> None:
    b = ModelBuilder("g")
    b.guard("freeze", "summary", "ref")
    with pytest.raises(ModelError, match="declared twice"):
        b.guard("freeze", "summary", "ref")


def test_switching_off_an_undeclared_guard_is_rejected_with_the_known_ones() -> None:
    b, _ = toy("inc", guards_off=("no-such-guard",))
    b.guard("real-guard", "summary", "ref")
    with pytest.raises(UnknownName, match="real-guard") as info:
        b.build()
    assert info.value.kind == "guard"


def test_effect_on_a_field_of_another_model_is_rejected() -> None:
    other = ModelBuilder("other")
    foreign = other.field("x", IntDomain(0, 3), 0)
    b = ModelBuilder("mine")
    b.field("x", IntDomain(0, 3), 0)

    @kernel("f")
    def write_foreign() -> Step:
        """f writes a field that belongs to another model."""
        return Step("bad", True, {foreign: 1})

    with pytest.raises(ModelError, match="unknown field 'x'"):
        b.action(write_foreign, "T")


def test_constant_outside_the_domain_is_rejected_at_once() -> None:
    with pytest.raises(ModelError, match=r"outside int 0\.\.3"):
        toy("big")


def test_computed_value_that_can_leave_the_domain_is_rejected_with_a_witness() -> None:
    b, _ = toy("unguarded_inc")
    with pytest.raises(ModelError, match=r"can write x := x \+ 1 outside int 0..3 .*x = 3.*strengthen its guard"):
        b.build()


def test_a_fact_can_justify_a_computed_value() -> None:
    b, t = toy("unguarded_inc")
    b.fact("x_small", "x stays below 3", t.x.var < 3)
    m = b.build()
    assert [f.name for f in m.facts] == ["x_small"]


def test_enum_members_are_checked_by_name() -> None:
    b, _ = toy("paint", color="GREEN")
    assert b.build().actions[0].effect[0][1].as_long() == 1
    with pytest.raises(ModelError, match="not a member of enum color"):
        toy("paint", color="PURPLE")


def test_wrong_sort_is_rejected() -> None:
    with pytest.raises(ModelError, match="needs an integer value"):
        toy("bool_into_int")


def test_terms_over_non_fields_are_rejected() -> None:
    with pytest.raises(ModelError, match="mentions y, which is not a field"):
        toy("stranger")


def test_actions_must_name_the_function_they_model() -> None:
    with pytest.raises(ModelError, match="@kernel"):
        toy("undocumented")
    with pytest.raises(ModelError, match="docstring must name the kernel function 'some_other_function'"):
        toy("misdocumented")


def test_models_without_fields_or_actions_are_rejected() -> None:
    with pytest.raises(ModelError, match="no fields"):
        ModelBuilder("empty").build()
    b = ModelBuilder("still")
    b.field("x", BOOL, False)
    with pytest.raises(ModelError, match="no actions"):
        b.build()


def test_enum_and_int_domains_reject_bad_definitions() -> None:
    with pytest.raises(ModelError, match="more than once"):
        EnumDomain("e", ["A", "A"])
    with pytest.raises(ModelError, match="empty"):
        IntDomain(3, 2)
    assert IntDomain(0, 5, {5: "INVALID_GPA"}).label(5) == "INVALID_GPA"


def test_initial_values_are_checked() -> None:
    b = ModelBuilder("init")
    with pytest.raises(ModelError, match="initial value of field 'x'"):
        b.field("x", IntDomain(1, 2), 0)


DOMAINS = [BOOL, COLOR, IntDomain(-2, 5), IntDomain(0, 0), IntDomain(0, (1 << 40) - 1), EnumDomain("one", ["ONLY"])]


def _values_of(i: int) -> st.SearchStrategy[int]:
    d = DOMAINS[i]
    return st.integers(d.lo, d.lo + d.size - 1)


@given(st.lists(st.sampled_from(range(len(DOMAINS))), min_size=1, max_size=12).flatmap(
    lambda idx: st.tuples(st.just(idx), st.tuples(*[_values_of(i) for i in idx]))
))
def test_pack_then_unpack_is_the_identity(case: tuple[list[int], tuple[int, ...]]) -> None:
    idx, vals = case
    b = ModelBuilder("pack")
    for n, i in enumerate(idx):
        b.field(f"f{n}", DOMAINS[i], DOMAINS[i].lo if not DOMAINS[i].is_bool() else False)
    schema = Schema(b._fields)
    assert schema.unpack(schema.pack(list(vals))) == tuple(vals)


def test_wide_states_use_several_words_and_no_field_straddles_two() -> None:
    b = ModelBuilder("wide")
    for n in range(5):
        b.field(f"f{n}", IntDomain(0, (1 << 30) - 1), 0)
    schema = Schema(b._fields)
    assert schema.words == 3
    assert all(s.shift + s.width <= 64 for s in schema.slots)
    assert schema.unpack(schema.pack([1, 2, 3, 4, (1 << 30) - 1])) == (1, 2, 3, 4, (1 << 30) - 1)
