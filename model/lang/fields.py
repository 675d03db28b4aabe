"""State fields and indexed families of fields.

A field is one variable of the state: a name, a finite domain, an initial value and the
z3 constant that stands for its current value in guards, effects and invariants.
A family is a group of fields indexed by a small set (`mem_attr_array[g0]`, `[g1]`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

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
    """Fields `name[label]` for each label of an index set; `family[i]` is the i-th field."""

    def __init__(self, name: str, labels: Sequence[str], fields: Sequence[Field]) -> None:
        self.name = name
        self.labels = tuple(labels)
        self._fields = tuple(fields)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self._fields[i]
        if isinstance(i, bool) or not isinstance(i, int):
            raise ModelError(f"family {self.name!r} is indexed by position (an int), not {i!r}")
        if not 0 <= i < len(self._fields):
            raise ModelError(
                f"family {self.name!r} has {len(self._fields)} members; index {i} is out of range"
            )
        return self._fields[i]

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields)
