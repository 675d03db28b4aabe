"""State fields and indexed families of fields.

A field is one variable of the state: a name, a finite domain, an initial value and the
z3 constant that stands for its current value in guards, effects and invariants.
A family is a group of fields indexed by a small set (`mem_attr_array[g0]`, `[g1]`, ...):
`family[i]` or `family["g1"]` is one member; `family.read(i)` and `family.write(i, v)` take
an index that may be a term over the state (see `Family.read`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from .domains import Domain
from .errors import ModelError


@dataclass(eq=False)
class Field:
    """One state variable. Compare fields by identity; `var` is its z3 constant."""

    name: str
    domain: Domain
    init: int
    doc: str
    component: str
    var: z3.ExprRef = field(repr=False)
    owner: object = field(repr=False)  # the builder that declared it
    index: int = -1  # position in the schema, set when the model is built

    def __hash__(self) -> int:
        return id(self)

    def label(self, value: int) -> str:
        return self.domain.label(value)


class Family(Sequence[Field]):
    """Fields `name[label]` for each label of an index set; `family[i]` is the i-th field,
    `family["label"]` the field of that label."""

    def __init__(self, name: str, labels: Sequence[str], fields: Sequence[Field]) -> None:
        self.name = name
        self.labels = tuple(labels)
        self._fields = tuple(fields)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self._fields[i]
        if isinstance(i, str):
            return self._fields[self.position(i)]
        if isinstance(i, bool) or not isinstance(i, int):
            raise ModelError(f"family {self.name!r} is indexed by position (an int) or label (a str), not {i!r}")
        if not 0 <= i < len(self._fields):
            raise ModelError(
                f"family {self.name!r} has {len(self._fields)} members; index {i} is out of range"
            )
        return self._fields[i]

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields)

    def position(self, label: str) -> int:
        """The position of the member `label`."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ModelError(
                f"family {self.name!r} has no member {label!r}; its labels: {', '.join(self.labels)}"
            ) from None

    def read(self, index: Any, default: Any = None) -> z3.ExprRef:
        """The value of the member at `index`: a position, a label, or an integer term over
        the state (compared with the positions 0..n-1), as the term
        `If(index == 0, f0, If(index == 1, f1, ...))`.

        Deterministic and total: with `default`, an index outside 0..n-1 reads `default`;
        without it the index must be in range wherever the term is used in an action (the
        builder proves, under the action's guard, that it is, and rejects the model
        otherwise). In an invariant nothing is proved: there an index out of range reads
        the last member, so give `default`."""
        if not isinstance(index, z3.ExprRef):
            return self[index].var
        self._check_index(index, "read")
        chain = value_term(self._fields[-1], default, f"{self.name}.read") if default is not None else None
        members = list(enumerate(self._fields))
        if chain is None:
            *members, (_, last) = members
            chain = last.var
        for i, f in reversed(members):
            chain = z3.If(index == i, f.var, chain)
        if default is None:
            self._require(index, [chain], f"reads {self.name}[{index}]")
        return chain

    def write(self, index: Any, value: Any) -> dict[Field, Any]:
        """An effect writing `value` to the member at `index` (a position, a label, or an
        integer term over the state): `{family[i]: If(index == i, value, family[i])}` for
        every member i, so exactly the member the index names changes. The builder proves,
        under the action's guard, that the index lies in 0..n-1, and rejects the model
        otherwise: a write never silently goes nowhere."""
        if not isinstance(index, z3.ExprRef):
            return {self[index]: value}
        self._check_index(index, "write")
        out: dict[Field, Any] = {}
        for i, f in enumerate(self._fields):
            out[f] = z3.If(index == i, value_term(f, value, f"{self.name}.write"), f.var)
        self._require(index, list(out.values()), f"writes {self.name}[{index}]")
        return out

    def _check_index(self, index: z3.ExprRef, what: str) -> None:
        if not self._fields:
            raise ModelError(f"family {self.name!r} has no members to {what}")
        if not z3.is_int(index):
            raise ModelError(f"family {self.name!r}: {what}() needs an integer index term, not {index}")

    def _require(self, index: z3.ExprRef, terms: list[z3.ExprRef], what: str) -> None:
        """Ask the builder to prove, for every action whose terms include `terms`, that its
        guard keeps `index` within the positions."""
        in_range = z3.And(index >= 0, index <= len(self._fields) - 1)
        owner: Any = self._fields[0].owner  # the builder that declared the family
        owner.require(in_range, terms, f"{what}, which must lie in 0..{len(self._fields) - 1}")


def value_term(f: Field, value: Any, where: str) -> z3.ExprRef:
    """`value` as a z3 term of `f`'s sort (a Python value is checked against its domain)."""
    if isinstance(value, z3.ExprRef):
        if f.domain.is_bool() != z3.is_bool(value):
            want = "a boolean" if f.domain.is_bool() else "an integer"
            raise ModelError(f"{where}: {f.name} needs {want} value, got {value}")
        return value
    return f.domain.z3_value(f.domain.coerce(value, f"{where}: {f.name}"))
