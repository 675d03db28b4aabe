"""The Die Hard jugs puzzle, after TLA+ Examples' DieHard.tla: measure 4 gallons with a
3-gallon and a 5-gallon jug. The invariant `big /= 4` fails, and the shortest behaviour
that breaks it has 6 steps."""

from __future__ import annotations

from invariants import Invariant, Kind
from model.lang import IntDomain, Model, ModelBuilder, min_of


def build() -> Model:
    b = ModelBuilder("DieHard", kernel_docs=False)
    small, big = b.field("small", IntDomain(0, 3), 0), b.field("big", IntDomain(0, 5), 0)
    b.part("diehard", (small, big))
    s, g = small.var, big.var
    into_big, into_small = min_of([g + s, 5]), min_of([g + s, 3])  # what the jug holds after pouring
    for name, text, effect in [
        ("fill_small", "FillSmallJug", {small: 3}),
        ("fill_big", "FillBigJug", {big: 5}),
        ("empty_small", "EmptySmallJug", {small: 0}),
        ("empty_big", "EmptyBigJug", {big: 0}),
        ("small_to_big", "SmallToBig", {big: into_big, small: s - (into_big - g)}),
        ("big_to_small", "BigToSmall", {small: into_small, big: g - (into_small - s)}),
    ]:
        b.add(name, "hero", True, effect, text)
    return b.build("TLA+ Examples DieHard")


NOT_SOLVED = Invariant(
    "NotSolved", Kind.ALWAYS, "the big jug never holds exactly 4 gallons",
    "TLA+ Examples, DieHard/DieHard.tla", ("diehard",), lambda m: m.field("big").var != 4,
)
PROPERTIES = (NOT_SOLVED,)
EXPECT = {"result": "violation", "invariant": "NotSolved", "within": 6}
