"""The Die Hard jugs puzzle, after TLA+ Examples' DieHard.tla: measure 4 gallons with a
3-gallon and a 5-gallon jug. The invariant `big /= 4` fails, and the shortest behaviour
that breaks it has 6 steps."""

from __future__ import annotations

import z3

from invariants import Invariant, Kind
from model.lang import IntDomain, Model, ModelBuilder, Step, models


class DieHard:
    def __init__(self, b: ModelBuilder) -> None:
        self.small = b.field("small", IntDomain(0, 3), 0)
        self.big = b.field("big", IntDomain(0, 5), 0)

    @models("FillSmallJug")
    def fill_small(self) -> Step:
        """FillSmallJug."""
        return Step("FillSmallJug", True, {self.small: 3})

    @models("FillBigJug")
    def fill_big(self) -> Step:
        """FillBigJug."""
        return Step("FillBigJug", True, {self.big: 5})

    @models("EmptySmallJug")
    def empty_small(self) -> Step:
        """EmptySmallJug."""
        return Step("EmptySmallJug", True, {self.small: 0})

    @models("EmptyBigJug")
    def empty_big(self) -> Step:
        """EmptyBigJug."""
        return Step("EmptyBigJug", True, {self.big: 0})

    @models("SmallToBig")
    def small_to_big(self) -> Step:
        """SmallToBig: pour the small jug into the big one until one is empty or full."""
        s, b = self.small.var, self.big.var
        fits = s + b <= 5
        return Step("SmallToBig", True, {self.big: z3.If(fits, s + b, 5), self.small: z3.If(fits, 0, s - (5 - b))})

    @models("BigToSmall")
    def big_to_small(self) -> Step:
        """BigToSmall: pour the big jug into the small one until one is empty or full."""
        s, b = self.small.var, self.big.var
        fits = s + b <= 3
        return Step("BigToSmall", True, {self.small: z3.If(fits, s + b, 3), self.big: z3.If(fits, 0, b - (3 - s))})


def build() -> Model:
    b = ModelBuilder("DieHard")
    d = DieHard(b)
    b.part("diehard", d)
    for action in (d.fill_small, d.fill_big, d.empty_small, d.empty_big, d.small_to_big, d.big_to_small):
        b.action(action, "hero")
    return b.build("TLA+ Examples DieHard")


NOT_SOLVED = Invariant(
    "NotSolved", Kind.ALWAYS, "the big jug never holds exactly 4 gallons",
    "TLA+ Examples, DieHard/DieHard.tla", ("diehard",), lambda m: m.field("big").var != 4,
)
