"""Sets over a finite universe and records of named fields: groups of ordinary fields.

A set field is one bool field per element of its universe (`msgs[type=Commit]`), a record
one field per named part (`tm.state`), so packing, the engines, printing and traces see
nothing but fields. Everything here builds z3 terms and effects (`{Field: value}`
mappings) for the builder to check like any other.

- `Universe`: the elements a set ranges over, in a fixed order: labels (`["r1", "r2"]`),
  or records, elements with named coordinates: `records(type=["Prepared"], rm=RMS) |
  records(type=["Commit", "Abort"])` is TLA+'s `[type: {"Prepared"}, rm: RM] \\cup [type:
  {"Commit", "Abort"}]`, each element labelled `type=Prepared,rm=r1`.
- An element is named by its label (`"r1"`), its position in the universe (an int), a
  term over the state (an integer term compared with the positions), or, in a universe
  of records, by its coordinates (`type="Prepared", rm=i`), each a label, an int (the
  value on an int axis, the position on a label axis) or an integer term.
- `SetValue`: a set as terms, one boolean per element: a set field's current value, a
  constant (`universe.set_of(...)`) or what `|`, `&` and `-` make of them. Membership
  (`contains`, `contains_all`), `size()` (a cardinality term), `is_empty()`,
  `is_nonempty()`, `is_full()`, `subset_of()` and `equals()` are terms; all are
  deterministic functions of the state.
- `SetField` (`ModelBuilder.set_field`): a set in the state. Effects: `add(x)`,
  `remove(x)`, `assign(value)`. Adding an element named by a term requires that the term
  names an element: the builder proves, under the action's guard, that it does.
- `Record` (`ModelBuilder.record`): fields `name.part`; `rec.part` or `rec["part"]` is the
  Field, `rec.assign(part=value, ...)` an effect, `rec.equals(part=value, ...)` a term.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import z3

from .domains import BOOL, Domain, EnumDomain, IntDomain
from .errors import ModelError
from .fields import Family, Field, value_term

Condition = z3.BoolRef | bool  # True: the element is named concretely


@dataclass(frozen=True)
class Element:
    """One element of a universe: its label, its position, and its coordinates (a record's
    parts: name -> (label, code), the code being what an integer term is compared with)."""

    label: str
    position: int
    coords: tuple[tuple[str, tuple[str, int]], ...] = ()

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.coords)


class Universe:
    """The finite, ordered set of elements a set field ranges over."""

    def __init__(self, labels: Iterable[str] = (), *, name: str = "universe",
                 _elements: Sequence[Element] | None = None) -> None:
        self.name = name
        if _elements is None:
            labels = [labels] if isinstance(labels, str) else list(labels)
            for lab in labels:
                if not isinstance(lab, str) or not lab:
                    raise ModelError(f"{name}: element {lab!r} is not a label (a non-empty str)")
            _elements = [Element(lab, i) for i, lab in enumerate(labels)]
        self.elements = tuple(_elements)
        self.labels = tuple(e.label for e in self.elements)
        if len(set(self.labels)) != len(self.labels):
            dup = sorted({x for x in self.labels if self.labels.count(x) > 1})
            raise ModelError(f"{name}: elements {dup} appear more than once: labels must be unique")
        self._by_label = {e.label: e for e in self.elements}

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __or__(self, other: Universe | Iterable[str]) -> Universe:
        """The union: this universe's elements, then the other's that are not among them."""
        other = as_universe(other, self.name)
        extra = [e for e in other.elements if e.label not in self._by_label]
        joined = [*self.elements, *extra]
        return Universe(name=self.name, _elements=[Element(e.label, i, e.coords) for i, e in enumerate(joined)])

    def match(self, x: Any = None, coords: Mapping[str, Any] | None = None,
              where: str = "") -> list[tuple[int, Condition]]:
        """The elements `x` (or the coordinates `coords`) may name, each with the condition
        under which it does: True when named concretely. A concrete name that is no
        element is a ModelError."""
        where = where or self.name
        if coords:
            if x is not None:
                raise ModelError(f"{where}: name an element by a value or by coordinates, not both")
            return self._match_coords(dict(coords), where)
        if isinstance(x, Mapping):
            return self._match_coords(dict(x), where)
        if isinstance(x, str):
            if x not in self._by_label:
                raise ModelError(f"{where}: {x!r} is not an element; elements: {_listed(self.labels)}")
            return [(self._by_label[x].position, True)]
        if isinstance(x, z3.ExprRef):
            if not z3.is_int(x):
                raise ModelError(f"{where}: an element term must be an integer (a position), not {x}")
            return [(e.position, x == e.position) for e in self.elements]
        if isinstance(x, int) and not isinstance(x, bool):
            if not 0 <= x < len(self.elements):
                raise ModelError(f"{where}: position {x} is outside 0..{len(self.elements) - 1}")
            return [(x, True)]
        raise ModelError(f"{where}: {x!r} does not name an element: give a label, a position, an integer "
                         "term or coordinates")

    def _match_coords(self, query: dict[str, Any], where: str) -> list[tuple[int, Condition]]:
        keys = frozenset(query)
        shaped = [e for e in self.elements if e.keys == keys]
        if not shaped:
            shapes = sorted({", ".join(k for k, _ in e.coords) or "(a plain label)" for e in self.elements})
            raise ModelError(f"{where}: no element has exactly the coordinates {', '.join(sorted(keys))}; "
                             f"elements have: {'; '.join(shapes)}")
        out: list[tuple[int, Condition]] = []
        for e in shaped:
            cond: Condition = True
            for k, (label, code) in e.coords:
                q = query[k]
                if isinstance(q, z3.ExprRef):
                    if not z3.is_int(q):
                        raise ModelError(f"{where}: coordinate {k} must be an integer term, not {q}")
                    cond = q == code if cond is True else z3.And(cond, q == code)
                elif isinstance(q, str):
                    cond = cond if q == label else False
                elif isinstance(q, int) and not isinstance(q, bool):
                    cond = cond if q == code else False
                else:
                    raise ModelError(f"{where}: coordinate {k}={q!r} is not a label, an int or an integer term")
                if cond is False:
                    break
            if cond is not False:
                out.append((e.position, cond))
        if not out:
            asked = ",".join(f"{k}={v}" for k, v in query.items())
            raise ModelError(f"{where}: no element is {asked}; elements: {_listed(self.labels)}")
        return out

    def set_of(self, elements: Iterable[Any] = ()) -> SetValue:
        """The constant set of `elements` (labels, positions or coordinate mappings)."""
        return SetValue(self, self._flags(elements, f"{self.name}.set_of"))

    def _flags(self, elements: Iterable[Any], where: str) -> tuple[z3.BoolRef, ...]:
        if isinstance(elements, (str, Mapping)):
            elements = [elements]
        chosen: set[int] = set()
        for x in elements:
            for pos, cond in self.match(x, where=where):
                if cond is not True:
                    raise ModelError(f"{where}: {x} is a term; a constant set names its elements concretely")
                chosen.add(pos)
        return tuple(z3.BoolVal(i in chosen) for i in range(len(self.elements)))


def records(**axes: Sequence[str] | Sequence[int] | Domain) -> Universe:
    """The records with one value on each axis (their cartesian product, the first axis
    varying slowest): an axis is a sequence of labels, of ints, or an enum or int domain.
    An element's label is `axis=value,...`. Join products with `|`."""
    if not axes:
        raise ModelError("records(): give at least one axis, e.g. records(type=['Commit'])")
    named: list[list[tuple[str, tuple[str, int]]]] = []
    for axis, values in axes.items():
        named.append([(axis, v) for v in _axis(axis, values)])
    elements = [Element(",".join(f"{k}={lab}" for k, (lab, _) in combo), i, tuple(combo))
                for i, combo in enumerate(itertools.product(*named))]
    return Universe(name="records", _elements=elements)


def _axis(axis: str, values: Any) -> list[tuple[str, int]]:
    """(label, code) for each value of one axis of records."""
    if isinstance(values, EnumDomain):
        return [(m, i) for i, m in enumerate(values.members)]
    if isinstance(values, IntDomain):
        return [(values.label(v), v) for v in values.values()]
    if isinstance(values, Domain) or isinstance(values, str) or not isinstance(values, Iterable):
        raise ModelError(f"records(): axis {axis!r} must be a sequence of labels or ints, or an enum or int "
                         f"domain, not {values!r}")
    values = list(values)
    if not values:
        raise ModelError(f"records(): axis {axis!r} has no values")
    if all(isinstance(v, str) for v in values):
        return [(v, i) for i, v in enumerate(values)]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return [(str(v), v) for v in values]
    raise ModelError(f"records(): axis {axis!r} mixes labels and ints, or holds other values: {values!r}")


def as_universe(universe: Universe | Iterable[str] | EnumDomain, name: str) -> Universe:
    """A universe from labels, an enum domain (its members) or a universe."""
    if isinstance(universe, Universe):
        return universe
    if isinstance(universe, EnumDomain):
        return Universe(universe.members, name=name)
    if isinstance(universe, (str, Domain)) or not isinstance(universe, Iterable):
        raise ModelError(f"{name}: the universe must be labels, an enum domain or records(...), not {universe!r}")
    return Universe(universe, name=name)


class SetValue:
    """A set over `universe` as terms: `terms[i]` says whether element i is in it."""

    def __init__(self, universe: Universe, terms: Sequence[z3.BoolRef]) -> None:
        self.universe = universe
        self.terms = tuple(terms)

    def contains(self, x: Any = None, **coords: Any) -> z3.BoolRef:
        """Whether the element named by `x` or `coords` is in the set: False for a term that
        names no element."""
        return _any(_both(cond, self.terms[pos]) for pos, cond in self.universe.match(x, coords, self._where()))

    def size(self) -> z3.ArithRef:
        """The number of elements (a sum of 0/1 terms)."""
        parts = [t for t in self.terms if not z3.is_false(t)]
        ones = sum(1 for t in parts if z3.is_true(t))
        rest = [z3.If(t, 1, 0) for t in parts if not z3.is_true(t)]
        return z3.Sum(z3.IntVal(ones), *rest) if rest else z3.IntVal(ones)

    def is_empty(self) -> z3.BoolRef:
        return _not(_any(self.terms))

    def is_nonempty(self) -> z3.BoolRef:
        return _any(self.terms)

    def is_full(self) -> z3.BoolRef:
        return _all(self.terms)

    def subset_of(self, other: SetValue | Iterable[Any]) -> z3.BoolRef:
        """Every element of this set is in `other` (a set, or elements named concretely)."""
        o = self._other(other)
        return _all(_or(_not(a), b) for a, b in zip(self.terms, o.terms, strict=True))

    def contains_all(self, other: SetValue | Iterable[Any]) -> z3.BoolRef:
        """Every element of `other` (a set, or elements named concretely) is in this set."""
        return self._other(other).subset_of(self)

    def equals(self, other: SetValue | Iterable[Any]) -> z3.BoolRef:
        o = self._other(other)
        return _all(_same(a, b) for a, b in zip(self.terms, o.terms, strict=True))

    def __or__(self, other: SetValue | Iterable[Any]) -> SetValue:
        o = self._other(other)
        return SetValue(self.universe, [_or(a, b) for a, b in zip(self.terms, o.terms, strict=True)])

    def __and__(self, other: SetValue | Iterable[Any]) -> SetValue:
        o = self._other(other)
        return SetValue(self.universe, [_both(a, b) for a, b in zip(self.terms, o.terms, strict=True)])

    def __sub__(self, other: SetValue | Iterable[Any]) -> SetValue:
        o = self._other(other)
        return SetValue(self.universe, [_both(a, _not(b)) for a, b in zip(self.terms, o.terms, strict=True)])

    def _other(self, other: SetValue | Iterable[Any]) -> SetValue:
        if isinstance(other, SetValue):
            if other.universe.labels != self.universe.labels:
                raise ModelError(f"{self._where()}: the sets range over different universes")
            return other
        return SetValue(self.universe, self.universe._flags(other, self._where()))

    def _where(self) -> str:
        return f"set over {self.universe.name}"


class SetField(SetValue):
    """A set in the state: one bool field `name[label]` per element of the universe."""

    def __init__(self, name: str, universe: Universe, members: Family) -> None:
        super().__init__(universe, [f.var for f in members])
        self.name = name
        self.members = members

    def field(self, x: Any = None, **coords: Any) -> Field:
        """The bool field of the element named concretely by `x` or `coords`."""
        [(pos, _)] = self._concrete(x, coords, "field")
        return self.members[pos]

    def add(self, x: Any = None, **coords: Any) -> dict[Field, Any]:
        """An effect adding one element. Named by a term, it must name an element wherever
        the action runs: the builder proves that the guard implies it."""
        found = self.universe.match(x, coords, self._where())
        if all(cond is True for _, cond in found):
            return {self.members[pos]: True for pos, _ in found}
        out = {self.members[pos]: _or(self.members[pos].var, cond) for pos, cond in found}
        owner: Any = self.members[0].owner  # the builder that declared the set
        owner.require(_any(cond for _, cond in found), list(out.values()),
                      f"adds to {self.name} an element named by a term, which must name an element of "
                      f"{self.name}")
        return out

    def remove(self, x: Any = None, **coords: Any) -> dict[Field, Any]:
        """An effect removing one element (nothing, where a term names no element)."""
        return {self.members[pos]: False if cond is True else _both(self.members[pos].var, _not(cond))
                for pos, cond in self.universe.match(x, coords, self._where())}

    def assign(self, value: SetValue | Iterable[Any]) -> dict[Field, Any]:
        """An effect making the set `value` (a set, or elements named concretely); only the
        members that may change are written."""
        o = self._other(value)
        return {f: t for f, t in zip(self.members, o.terms, strict=True) if not t.eq(f.var)}

    def _concrete(self, x: Any, coords: Mapping[str, Any], what: str) -> list[tuple[int, Condition]]:
        found = self.universe.match(x, coords, self._where())
        if len(found) != 1 or found[0][1] is not True:
            raise ModelError(f"{self._where()}.{what}(): name one element concretely (a label, a position or "
                             "coordinates without terms)")
        return found

    def _where(self) -> str:
        return f"set {self.name!r}"

    def __repr__(self) -> str:
        return f"SetField({self.name!r}, {len(self.universe)} elements)"


class Record:
    """Fields `name.part`: `rec.part` or `rec["part"]` is the Field."""

    def __init__(self, name: str, fields: Mapping[str, Field]) -> None:
        self.name = name
        self._fields = dict(fields)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self._fields)

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(self._fields.values())

    def __getitem__(self, part: str) -> Field:
        try:
            return self._fields[part]
        except (KeyError, TypeError):
            raise ModelError(f"record {self.name!r} has no field {part!r}; its fields: {', '.join(self._fields)}") \
                from None

    def __getattr__(self, part: str) -> Field:
        fields = self.__dict__.get("_fields")
        if fields is not None and part in fields:
            return fields[part]
        raise AttributeError(f"record {self.__dict__.get('name')!r} has no field {part!r}; its fields: "
                             f"{', '.join(fields or ())}")

    def assign(self, **values: Any) -> dict[Field, Any]:
        """An effect writing the named parts; the others keep their values."""
        return {self[k]: v for k, v in values.items()}

    def equals(self, **values: Any) -> z3.BoolRef:
        """The named parts have these values."""
        return _all(self[k].var == value_term(self[k], v, f"record {self.name}") for k, v in values.items())

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {', '.join(self._fields)})"


# -- declaring (ModelBuilder.set_field, ModelBuilder.record) -----------------------------------


def declare_set(b: Any, name: str, universe: Universe | Iterable[str] | EnumDomain, init: Iterable[Any],
                doc: str) -> SetField:
    u = as_universe(universe, name)
    if not len(u):
        raise ModelError(f"set {name!r}: the universe is empty")
    start = u._flags(init, f"initial value of set {name!r}")
    fields = [b.field(f"{name}[{lab}]", BOOL, z3.is_true(t), doc) for lab, t in zip(u.labels, start, strict=True)]
    return SetField(name, u, Family(name, u.labels, fields))


def declare_record(b: Any, name: str, parts: Mapping[str, Domain | Sequence[str]],
                   init: Mapping[str, Any] | None, doc: str) -> Record:
    if not parts:
        raise ModelError(f"record {name!r} has no fields: give at least one")
    init = dict(init or {})
    unknown = sorted(set(init) - set(parts))
    if unknown:
        raise ModelError(f"record {name!r}: initial values for {unknown}, which are not its fields "
                         f"({', '.join(parts)})")
    fields: dict[str, Field] = {}
    for part, domain in parts.items():
        if not isinstance(part, str) or not part.isidentifier():
            raise ModelError(f"record {name!r}: field name {part!r} is not an identifier")
        if not isinstance(domain, Domain):
            domain = EnumDomain(f"{name}.{part}", domain)
        first: object = False if domain.is_bool() else _first(domain)
        fields[part] = b.field(f"{name}.{part}", domain, init.get(part, first), doc)
    return Record(name, fields)


def _first(domain: Domain) -> object:
    return domain.members[0] if isinstance(domain, EnumDomain) else domain.lo


# -- terms, with constants folded so that constant sets stay small -----------------------------


def _not(a: z3.BoolRef) -> z3.BoolRef:
    if z3.is_true(a):
        return z3.BoolVal(False)
    if z3.is_false(a):
        return z3.BoolVal(True)
    return z3.Not(a)


def _or(a: z3.BoolRef, b: Condition) -> z3.BoolRef:
    return _any([a, b])


def _both(a: Condition, b: z3.BoolRef) -> z3.BoolRef:
    return _all([a, b])


def _same(a: z3.BoolRef, b: z3.BoolRef) -> z3.BoolRef:
    if z3.is_true(b):
        return a
    if z3.is_false(b):
        return _not(a)
    return b if z3.is_true(a) else _not(b) if z3.is_false(a) else a == b


def _any(terms: Iterable[Condition]) -> z3.BoolRef:
    return _fold(terms, True, z3.Or)


def _all(terms: Iterable[Condition]) -> z3.BoolRef:
    return _fold(terms, False, z3.And)


def _fold(terms: Iterable[Condition], absorbing: bool, join: Callable[..., z3.BoolRef]) -> z3.BoolRef:
    """`join` of `terms` with the constants folded away: `absorbing` decides it at once,
    its negation (the identity) drops out."""
    kept = []
    for t in terms:
        t = z3.BoolVal(t) if isinstance(t, bool) else t
        if (z3.is_true if absorbing else z3.is_false)(t):
            return z3.BoolVal(absorbing)
        if not (z3.is_false if absorbing else z3.is_true)(t):
            kept.append(t)
    return kept[0] if len(kept) == 1 else join(*kept) if kept else z3.BoolVal(not absorbing)


def _listed(labels: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f", ... ({len(labels) - limit} more)" if len(labels) > limit else "")
