"""Hand-built states and single steps, for tests that pin one action or one invariant."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checker.compile import Compiled
from checker.trace import holds, successor
from invariants import CATALOGUE
from model.lang import Model


def state(model: Model, changes: Mapping[str, object] | None = None) -> dict[str, int]:
    """Field name -> value: the initial state with `changes` applied (labels or ints)."""
    current = dict(zip((f.name for f in model.schema.fields), model.schema.unpack(model.init), strict=True))
    for name, value in (changes or {}).items():
        f = model.field(name)
        current[name] = label_value(f, value)
    return current


def label_value(field, value: object) -> int:  # type: ignore[no-untyped-def]
    if isinstance(value, str):
        for v in field.domain.values():
            if field.label(v) == value:
                return v
        raise KeyError(f"{field.name} has no value labelled {value!r}")
    if isinstance(value, bool):
        return int(value)
    return int(value)  # type: ignore[arg-type]


def pack(model: Model, st: Mapping[str, int]) -> tuple[int, ...]:
    return model.schema.pack([st[f.name] for f in model.schema.fields])


def step(compiled: Compiled, st: Mapping[str, int], key: str) -> dict[str, int] | None:
    """The state after action `key`, or None when it is disabled in `st`."""
    model = compiled.model
    nxt = successor(compiled, pack(model, st), model.by_key[key])
    if nxt is None:
        return None
    return dict(zip((f.name for f in model.schema.fields), model.schema.unpack(nxt), strict=True))


def labels(model: Model, st: Mapping[str, int], *names: str) -> tuple[str, ...]:
    return tuple(model.field(n).label(st[n]) for n in names)


def check(model: Model, invariant: str, st: Mapping[str, int]) -> bool:
    """z3's verdict on a catalogue invariant in state `st`."""
    inv = next(i for i in CATALOGUE if i.name == invariant)
    return holds(model, inv.bind(model).term, [st[f.name] for f in model.schema.fields])


class Lazy:
    """A module-level model (or compiled model) built when a test first uses it, not when
    the test module is imported: pytest-xdist imports every module in every worker."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None

    def get(self) -> Any:
        if self._value is None:
            self._value = self._make()
        return self._value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "pytestmark":  # pytest probing what the name is
            raise AttributeError(name)
        return getattr(self.get(), name)
