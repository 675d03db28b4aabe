"""Typed options a component accepts from a spec (sizes, scripts, initial values).

Each option states its type, default and allowed values, so a spec that gets one wrong
is rejected with the key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import shown, shown_key


class OptionError(Exception):
    """A bad option value. `key` is the option's name, `allowed` what would be accepted."""

    def __init__(self, key: str, problem: str, allowed: str) -> None:
        super().__init__(f"{key}: {problem}; allowed: {allowed}")
        self.key = key
        self.problem = problem
        self.allowed = allowed


@dataclass(frozen=True)
class Option:
    """One option. `kind` is int, bool, str or list; `choices` restricts str values."""

    name: str
    kind: type
    default: Any
    doc: str
    choices: Sequence[str] = ()
    minimum: int | None = None
    maximum: int | None = None

    def allowed(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            lo = "" if self.minimum is None else str(self.minimum)
            hi = "" if self.maximum is None else str(self.maximum)
            return f"an integer in {lo}..{hi}" if (lo or hi) else "an integer"
        if self.kind is str:
            return " | ".join(repr(c) for c in self.choices) if self.choices else "a string"
        return self.doc

    def check(self, value: Any) -> Any:
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionError(self.name, f"{shown(value)} is not an integer", self.allowed())
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise OptionError(self.name, f"{shown(value)} is out of range", self.allowed())
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise OptionError(self.name, f"{shown(value)} is not a boolean", self.allowed())
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise OptionError(self.name, f"{shown(value)} is not allowed", self.allowed())
            return value
        if not isinstance(value, self.kind):
            raise OptionError(self.name, f"{shown(value)} has the wrong type", self.allowed())
        return value


def resolve(options: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given`, each value checked; unknown keys are errors."""
    known = {o.name: o for o in options}
    for key in given:
        if key not in known:
            raise OptionError(shown_key(key), "unknown option", ", ".join(sorted(known)) or "none")
    return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in options}
