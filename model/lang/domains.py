"""Finite domains of state fields: bool, enum with named values, bounded int.

A domain knows its size, how its values are encoded as small non-negative integers
(the code stored in a packed state), the z3 sort used for its fields, and how to print
a value. Enum and int fields are z3 Ints; bool fields are z3 Bools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import z3

from .errors import ModelError


class Domain:
    """A finite set of values. Subclasses fix the encoding."""

    name: str
    size: int
    lo: int  # smallest value; code = value - lo

    def is_bool(self) -> bool:
        return False

    def values(self) -> range:
        return range(self.lo, self.lo + self.size)

    def contains(self, value: int) -> bool:
        return self.lo <= value < self.lo + self.size

    def label(self, value: int) -> str:
        return str(value)

    def z3_const(self, name: str) -> z3.ExprRef:
        return z3.Int(name)

    def z3_value(self, value: int) -> z3.ExprRef:
        return z3.IntVal(value)

    def constraint(self, var: z3.ExprRef) -> z3.BoolRef:
        """The z3 formula saying `var` lies in this domain."""
        return z3.And(var >= self.lo, var <= self.lo + self.size - 1)

    def coerce(self, value: object, where: str) -> int:
        """Turn a Python value given by a model author into this domain's value."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(f"{where}: {value!r} is not a value of {self.describe()}")
        if not self.contains(value):
            raise ModelError(f"{where}: {value} is outside {self.describe()}")
        return value

    def describe(self) -> str:
        raise NotImplementedError


class BoolDomain(Domain):
    """True/False, stored as 1/0."""

    def __init__(self) -> None:
        self.name = "bool"
        self.size = 2
        self.lo = 0

    def is_bool(self) -> bool:
        return True

    def label(self, value: int) -> str:
        return "true" if value else "false"

    def z3_const(self, name: str) -> z3.ExprRef:
        return z3.Bool(name)

    def z3_value(self, value: int) -> z3.ExprRef:
        return z3.BoolVal(bool(value))

    def constraint(self, var: z3.ExprRef) -> z3.BoolRef:
        return z3.BoolVal(True)

    def coerce(self, value: object, where: str) -> int:
        if not isinstance(value, bool):
            raise ModelError(f"{where}: {value!r} is not a bool (use True or False)")
        return int(value)

    def describe(self) -> str:
        return "bool"


BOOL = BoolDomain()


class EnumDomain(Domain):
    """Named values. `dom.NAME` is the z3 numeral of that member."""

    def __init__(self, name: str, members: Iterable[str]) -> None:
        members = tuple(members)
        if not members:
            raise ModelError(f"enum {name!r} has no members: give at least one name")
        if len(set(members)) != len(members):
            dup = sorted({m for m in members if members.count(m) > 1})
            raise ModelError(f"enum {name!r} names {dup} more than once: member names must be unique")
        for m in members:
            if not m.isidentifier():
                raise ModelError(f"enum {name!r}: member {m!r} is not an identifier")
        self.name = name
        self.members = members
        self.size = len(members)
        self.lo = 0
        self._index = {m: i for i, m in enumerate(members)}

    def __getattr__(self, member: str) -> z3.ExprRef:
        index = self.__dict__.get("_index")
        if index is not None and member in index:
            return z3.IntVal(index[member])
        raise AttributeError(f"enum {self.__dict__.get('name')!r} has no member {member!r}")

    def code(self, member: str) -> int:
        """The integer value of a member name."""
        try:
            return self._index[member]
        except KeyError:
            raise ModelError(
                f"enum {self.name!r} has no member {member!r}; members: {', '.join(self.members)}"
            ) from None

    def label(self, value: int) -> str:
        return self.members[value] if 0 <= value < self.size else f"<{value}?>"

    def coerce(self, value: object, where: str) -> int:
        if isinstance(value, str):
            if value not in self._index:
                raise ModelError(f"{where}: {value!r} is not a member of {self.describe()}")
            return self._index[value]
        return super().coerce(value, where)

    def describe(self) -> str:
        return f"enum {self.name} {{{', '.join(self.members)}}}"


class IntDomain(Domain):
    """The integers lo..hi inclusive; some values may carry a printed name (e.g. INVALID_GPA)."""

    def __init__(self, lo: int, hi: int, names: Mapping[int, str] | None = None) -> None:
        if hi < lo:
            raise ModelError(f"int domain {lo}..{hi} is empty: hi must be >= lo")
        self.name = f"{lo}..{hi}"
        self.lo = lo
        self.size = hi - lo + 1
        self.names = dict(names or {})
        for v in self.names:
            if not self.contains(v):
                raise ModelError(f"int domain {lo}..{hi}: named value {v} is outside it")

    @property
    def hi(self) -> int:
        return self.lo + self.size - 1

    def label(self, value: int) -> str:
        return self.names.get(value, str(value))

    def describe(self) -> str:
        return f"int {self.lo}..{self.hi}"
