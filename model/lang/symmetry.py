"""Symmetric index sets: members the model treats alike, and the proof that it does.

A component declares an index set symmetric (`ModelBuilder.symmetric`): its members (the
vCPUs), the names that stand for each member in field names and actors (`vcpu0`,
`vCPU0`), and the action parameter whose value names a member (`vcpu=0`). A permutation
of the members then acts on the whole model, by name:

- a field maps to the field whose name has every member's name replaced by its image's
  (`fault.step[vcpu0]` -> `fault.step[vcpu1]`, `td.tlb.vcpu0[g2]` -> `td.tlb.vcpu1[g2]`);
- an action instance maps to the instance with the parameter mapped
  (`tlb_fill(vcpu=0, gfn=2)` -> `tlb_fill(vcpu=1, gfn=2)`).

Nothing of this is trusted. `prove()` shows with z3 that each generator of the group
(the transpositions of neighbouring members, which generate every permutation) maps the
initial state to itself, every field onto a field with the same domain, every action's
guard and effect onto its image's, and every predicate the search checks onto itself;
the first that does not is named with a state where it fails. A field whose *value*
names a member (an owner, say) is not permuted, so a model with one fails the proof
rather than being reduced wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from math import factorial, prod
from typing import TYPE_CHECKING

import z3

from .actions import Action, key_of
from .deadline import checkpoint
from .errors import ModelError
from .solver import Context, witness_text

if TYPE_CHECKING:  # the builder imports this module
    from .builder import Model

Permutation = tuple[tuple[int, ...], ...]  # one permutation of each index set's members


@dataclass(frozen=True)
class IndexSet:
    """An index set declared symmetric: `names[m]` are the names member m goes by in field
    names and actors; `values[m]` is the value of the action parameter `param` that names it."""

    name: str
    param: str
    values: tuple[int, ...]
    names: tuple[tuple[str, ...], ...]


class SymmetryError(ModelError):
    """The model is not symmetric under a declared index set (or declares none)."""


class Group:
    """Every permutation of the declared index sets' members (the product of their
    symmetric groups), acting on fields and actions by name. An element is a tuple of
    permutations, one per set; `p[i][m]` is the member that member m of set i goes to.
    Elements are never enumerated (twelve processes have 479 M of them): the proof needs
    only the generators, the reduction sorts members (`blocks`)."""

    def __init__(self, model: Model, sets: Sequence[IndexSet]) -> None:
        self.model = model
        self.sets = tuple(sets)
        if not self.sets:
            raise SymmetryError(f"model {model.name!r} declares no symmetric index set")
        tokens = sorted({n for s in self.sets for member in s.names for n in member}, key=lambda t: (-len(t), t))
        self._pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, tokens)) + r")(?![A-Za-z0-9_])")
        self._member = {n: (i, m) for i, s in enumerate(self.sets) for m, names in enumerate(s.names) for n in names}
        self._fields: dict[Permutation, list[int]] = {}
        self._actions: dict[Permutation, list[int]] = {}

    @property
    def label(self) -> str:
        return ", ".join(f"{s.name} ({len(s.values)})" for s in self.sets)

    @property
    def short(self) -> str:
        """The sets and their sizes as one word: `vCPU:2`."""
        return ",".join(f"{s.name}:{len(s.values)}" for s in self.sets)

    @property
    def order(self) -> int:
        return prod(factorial(len(s.values)) for s in self.sets)

    @property
    def identity(self) -> Permutation:
        return tuple(tuple(range(len(s.values))) for s in self.sets)

    def swap(self, i: int, a: int, b: int) -> Permutation:
        """The element exchanging members a and b of set i, the rest fixed."""
        p = [list(q) for q in self.identity]
        p[i][a], p[i][b] = b, a
        return tuple(tuple(q) for q in p)

    def generators(self) -> list[Permutation]:
        """The transpositions of neighbouring members of each set: together they generate
        every element, so what holds for each of them holds for all."""
        return [self.swap(i, m, m + 1) for i, s in enumerate(self.sets) for m in range(len(s.values) - 1)]

    @staticmethod
    def compose(first: Permutation, then: Permutation) -> Permutation:
        """The element that acts as `first` followed by `then`."""
        return tuple(tuple(pb[pa[m]] for m in range(len(pa))) for pa, pb in zip(first, then, strict=True))

    @staticmethod
    def inverse(p: Permutation) -> Permutation:
        out = []
        for pa in p:
            q = [0] * len(pa)
            for m, image in enumerate(pa):
                q[image] = m
            out.append(tuple(q))
        return tuple(out)

    def describe(self, p: Permutation) -> str:
        """The element in member names (`vcpu0 <-> vcpu1`)."""
        parts = []
        for s, ps in zip(self.sets, p, strict=True):
            moved = [m for m in range(len(ps)) if ps[m] != m]
            if len(moved) == 2 and ps[moved[0]] == moved[1]:
                parts.append(f"{s.names[moved[0]][0]} <-> {s.names[moved[1]][0]}")
            else:
                parts += [f"{s.names[m][0]} -> {s.names[ps[m]][0]}" for m in moved]
        return ", ".join(parts) or "identity"

    def field_map(self, p: Permutation) -> list[int]:
        """[field index] -> the index of the field it maps to under p."""
        if p not in self._fields:
            self._fields[p] = self._field_map(p)
        return self._fields[p]

    def action_map(self, p: Permutation) -> list[int]:
        """[action id] -> the id of the action it maps to under p."""
        if p not in self._actions:
            self._actions[p] = self._action_map(p)
        return self._actions[p]

    def blocks(self, i: int) -> list[list[int]]:
        """Set i's members' own fields: `blocks[m][j]` is the field of member m that the
        j-th field of member 0 maps to. Every field naming a member is in exactly one
        member's block, so a state's orbit is every rearrangement of the blocks."""
        fields = self.model.schema.fields
        named: dict[int, tuple[int, int]] = {}
        for f in fields:
            members = {self._member[t] for t in self._pattern.findall(f.name)}
            if len(members) > 1:
                raise SymmetryError(f"symmetry over {self.label}: field {f.name} names two members; the reduction "
                                    "sorts members by their own fields, so a field may name one member only")
            if members:
                named[f.index] = members.pop()
        first = [f for f, (si, m) in sorted(named.items()) if si == i and m == 0]
        out = [first] + [[self.field_map(self.swap(i, 0, m))[f] for f in first]
                         for m in range(1, len(self.sets[i].values))]
        if sum(map(len, out)) != sum(1 for si, _ in named.values() if si == i):
            raise SymmetryError(f"symmetry over {self.label}: the members of {self.sets[i].name} do not have "
                                "the same fields")
        return out

    @cached_property
    def _by_key(self) -> dict[str, Action]:
        return {a.key: a for a in self.model.actions}

    def _rename(self, p: Permutation, text: str) -> str:
        def image(mo: re.Match[str]) -> str:
            i, m = self._member[mo.group(1)]
            s = self.sets[i]
            return s.names[p[i][m]][s.names[m].index(mo.group(1))]

        return self._pattern.sub(image, text)

    def _field_map(self, p: Permutation) -> list[int]:
        by_name = self.model.schema.by_name
        out = []
        for f in self.model.schema.fields:
            name = self._rename(p, f.name)
            g = by_name.get(name)
            if g is None:
                raise SymmetryError(f"symmetry over {self.label}: field {f.name} would map to {name}, which the "
                                    f"model does not have")
            out.append(g.index)
        if len(set(out)) != len(out):
            raise SymmetryError(f"symmetry over {self.label}: two fields map to one")
        return out

    def _action_map(self, p: Permutation) -> list[int]:
        out = []
        for a in self.model.actions:
            params = dict(a.params)
            for s, ps in zip(self.sets, p, strict=True):
                if s.param in params and params[s.param] in s.values:
                    params[s.param] = s.values[ps[s.values.index(params[s.param])]]
            key = key_of(a.name, tuple(params.items()))
            image = self._by_key.get(key)
            if image is None:
                raise SymmetryError(f"symmetry over {self.label}: action {a.key} would map to {key}, which the "
                                    f"model does not have")
            out.append(image.id)
        return out


def prove(group: Group, predicates: Mapping[str, z3.BoolRef]) -> None:
    """Prove that every generator of `group` is a symmetry of the model and leaves every
    predicate in `predicates` (name -> term) unchanged; raise SymmetryError naming the
    first thing it does not map onto its image, with a state where they differ."""
    model = group.model
    fields = model.schema.fields
    context = Context([f.domain.constraint(f.var) for f in fields])
    for k in group.generators():
        where = f"symmetry over {group.label} ({group.describe(k)})"
        image = group.field_map(k)
        for f in fields:
            g = fields[image[f.index]]
            if g is not f and (f.domain.lo, f.domain.size, f.domain.is_bool()) != \
                    (g.domain.lo, g.domain.size, g.domain.is_bool()):
                raise SymmetryError(f"{where}: {f.name} maps to {g.name}, whose domain differs")
            if f.init != g.init:
                raise SymmetryError(f"{where}: the initial state is not symmetric: {f.name} starts "
                                    f"{f.label(f.init)}, {g.name} starts {g.label(g.init)}")
        pairs = [(f.var, fields[image[f.index]].var) for f in fields if image[f.index] != f.index]
        preimage = {image[i]: i for i in range(len(fields))}

        def sub(t: z3.ExprRef, pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = pairs) -> z3.ExprRef:
            return z3.substitute(t, *pairs) if pairs else t

        for a in model.actions:
            checkpoint()
            b = model.actions[group.action_map(k)[a.id]]
            _same(context, where, f"the guard of {a.key}, permuted, and that of {b.key}", sub(a.guard), b.guard)
            mine = {f.index: t for f, t in a.effect}
            theirs = {f.index: t for f, t in b.effect}
            targets = sorted({image[i] for i in mine} | set(theirs))
            lhs, rhs = [], []
            for gi in targets:
                fi = preimage[gi]
                want = theirs.get(gi, fields[gi].var)
                got = sub(mine.get(fi, fields[fi].var))
                if not want.eq(got):
                    lhs.append(want)
                    rhs.append(got)
            if lhs:
                equal = z3.And(*[x == y for x, y in zip(lhs, rhs, strict=True)])
                witness = context.satisfiable([b.guard, z3.Not(equal)])
                if witness is not None:
                    raise SymmetryError(f"{where}: {a.key}, permuted, does not do what {b.key} does (e.g. where "
                                        f"{witness_text(witness, [*lhs, *rhs, b.guard], most=8)})")
        for name, term in predicates.items():
            checkpoint()
            _same(context, where, f"{name}, permuted, and {name}", sub(term), term)


def _same(context: Context, where: str, what: str, x: z3.BoolRef, y: z3.BoolRef) -> None:
    if x.eq(y):
        return
    witness = context.satisfiable([z3.Xor(x, y)])
    if witness is not None:
        raise SymmetryError(f"{where}: {what} differ (e.g. where {witness_text(witness, [x, y], most=8)})")

