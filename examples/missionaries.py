"""Missionaries and cannibals, after TLA+ Examples' MissionariesAndCannibals.tla: three
missionaries and three cannibals cross a river in a boat that carries one or two; on
neither bank may cannibals outnumber the missionaries there. Each bank is a set of people.
The invariant `who_is_on_bank["E"] /= {}` fails: its counterexample is a solution, and
the shortest one takes 11 crossings."""

from __future__ import annotations

from itertools import combinations

import z3

from invariants import Invariant, Kind
from model.lang import EnumDomain, Model, ModelBuilder, SetValue

MISSIONARIES, CANNIBALS = ["m1", "m2", "m3"], ["c1", "c2", "c3"]
BANK = EnumDomain("bank", ["E", "W"])


def build() -> Model:
    b = ModelBuilder("MissionariesAndCannibals", kernel_docs=False)
    people = MISSIONARIES + CANNIBALS
    boat = b.field("bank_of_boat", BANK, "E")
    on = {"E": b.set_field("east", people, init=people), "W": b.set_field("west", people)}
    b.part("river", on)

    def safe(s: SetValue) -> z3.BoolRef:  # no missionary is outnumbered
        return z3.Or(s.subset_of(CANNIBALS), (s & CANNIBALS).size() <= (s & MISSIONARIES).size())

    for here, there in [("E", "W"), ("W", "E")]:
        for crew in [c for n in (1, 2) for c in combinations(people, n)]:
            left, reached = on[here] - crew, on[there] | crew
            ok = z3.And(boat.var == BANK.code(here), on[here].contains_all(crew), safe(left), safe(reached))
            b.add("move", "boat", ok, {boat: there, **on[here].assign(left), **on[there].assign(reached)},
                  f"{' '.join(crew)} cross {here} -> {there}", crew="+".join(crew), bank=here)
    return b.build("TLA+ Examples MissionariesAndCannibals")


SOLUTION = Invariant(
    "Solution", Kind.ALWAYS, "someone is still on the east bank (a counterexample is a solution)",
    "TLA+ Examples, MissionariesAndCannibals/MissionariesAndCannibals.tla", ("river",),
    lambda m: m.parts["river"]["E"].is_nonempty(),
)
PROPERTIES = (SOLUTION,)
EXPECT = {"result": "violation", "invariant": "Solution", "within": 11}
