"""Spec files: one small world per TOML file, with its expected result.

```
description = "..."
components = ["attributes"]
depth = 40                      # optional: steps from the initial state
invariants = ["..."]            # optional: default is every applicable invariant
check_deadlock = false          # optional

[sizes]                         # vcpus, huge_pages, pages_per_huge
[attributes]                    # options of the component of that name
[guards]                        # guard-name = "off" (or "on")

[expect]
result = "pass" | "violation" | "cycle"
invariant = "..."               # violation: the invariant that must fail;
                                # cycle: the PROGRESS property a no-progress cycle breaks
within = 12                     # violation / cycle: at most this many steps (a lasso's
                                # prefix plus its cycle)
complete = true                 # pass: the search must reach a fixpoint
distinct = 83888                # pinned number of distinct states
depth = 29                      # pinned depth of the search
witnesses = ["..."]             # SOMETIMES witnesses that must be reached
```

Every key is checked: an unknown key, a wrong type or an unknown guard, invariant or
component is a SpecError naming the file, the key and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invariants import CATALOGUE, Bound, Kind, select
from invariants.core import facts
from model.lang import Model, ModelError, OptionError, UnknownName, order
from model.mmu import COMPONENTS, Sizes, build

TOP_KEYS = ("description", "components", "depth", "invariants", "check_deadlock", "sizes", "guards", "expect")
EXPECT_KEYS = ("result", "invariant", "within", "complete", "distinct", "depth", "witnesses")


class SpecError(Exception):
    """A bad spec: names the file, the key, the problem and what is allowed."""

    def __init__(self, source: str, key: str, problem: str, allowed: str = "") -> None:
        tail = f"; allowed: {allowed}" if allowed else ""
        super().__init__(f"{source}: {key}: {problem}{tail}")
        self.source, self.key = source, key


@dataclass(frozen=True)
class Expect:
    result: str  # "pass" | "violation" | "cycle"
    invariant: str | None = None
    within: int | None = None
    complete: bool | None = None
    distinct: int | None = None
    depth: int | None = None
    witnesses: tuple[str, ...] = ()


@dataclass
class Spec:
    source: str  # the file it came from, as given (or "<default>")
    name: str
    description: str
    components: tuple[str, ...]
    sizes: Sizes
    options: dict[str, dict[str, Any]]
    guards_off: tuple[str, ...]
    invariants: tuple[str, ...] | None
    depth: int | None
    check_deadlock: bool
    expect: Expect | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    text: str = field(repr=False, default="")  # the TOML itself, for exports that replay it
    _models: dict[tuple[str, ...], Model] = field(repr=False, default_factory=dict)

    def build(self, guards: Mapping[str, bool] | None = None) -> Model:
        """The model of this scenario; `guards` (name -> on) overrides the spec's guards."""
        off = set(self.guards_off)
        for name, on in (guards or {}).items():
            (off.discard if on else off.add)(name)
        key = tuple(sorted(off))
        if key not in self._models:
            self._models[key] = self._build(key)
        return self._models[key]

    def _build(self, off: tuple[str, ...]) -> Model:
        try:
            return build(self.components, self.sizes, self.options, off, self.name, self.description)
        except UnknownName as e:
            if e.kind == "guard":
                key = f"guards.{e.name}" if e.name in self.guards_off else "--guard"
                raise SpecError(self.source, key, "unknown guard", ", ".join(e.allowed)) from None
            raise SpecError(self.source, e.kind, f"unknown {e.kind} {e.name!r}", ", ".join(e.allowed)) from None
        except OptionError as e:
            base = re.split(r"[\[.]", e.key)[0]
            component = next((c for c in self.components if base in {o.name for o in COMPONENTS[c].options}), None)
            prefix = f"{component}." if component else ""
            raise SpecError(self.source, prefix + e.key, e.problem, e.allowed) from None

    def bound_invariants(self, model: Model, names: tuple[str, ...] | None = None) -> list[Bound]:
        """The invariants to check (the spec's, or `names`), plus the model's own facts."""
        chosen = names if names is not None else self.invariants
        try:
            picked = select(CATALOGUE, model, chosen)
        except UnknownName as e:
            key = "invariants" if names is None else "--invariant"
            raise SpecError(self.source, key, f"unknown invariant {e.name!r}", ", ".join(e.allowed)) from None
        return picked + facts(model)


def load(path: str | Path) -> Spec:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(source, "file", f"cannot be read ({e.strerror})") from None
    return parse(text, source, Path(path).stem)


def parse(text: str, source: str, name: str) -> Spec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(source, "toml", f"not valid TOML ({e})") from None
    component_keys = tuple(COMPONENTS)
    for key in raw:
        if key not in TOP_KEYS and key not in component_keys:
            raise SpecError(source, key, "unknown key", ", ".join(TOP_KEYS + component_keys))
    components = _str_list(raw, "components", source, ["attributes"])
    for c in components:
        if c not in COMPONENTS:
            raise SpecError(source, "components", f"unknown component {c!r}", ", ".join(COMPONENTS))
    sizes_raw = _table(raw, "sizes", source)
    try:
        sizes = Sizes.from_options(sizes_raw)
    except OptionError as e:
        raise SpecError(source, f"sizes.{e.key}", e.problem, e.allowed) from None
    options: dict[str, dict[str, Any]] = {}
    enabled = order(COMPONENTS, components)  # with what they require
    for c in component_keys:
        table = _table(raw, c, source)
        if table and c not in enabled:
            raise SpecError(source, c, f"options for component {c!r}, which is not in components "
                            f"(nor required by them)", ", ".join(enabled))
        options[c] = table
    guards_off = []
    for g, state in _table(raw, "guards", source).items():
        if state not in ("off", "on"):
            raise SpecError(source, f"guards.{g}", f"{state!r} is not a guard state", "'off' | 'on'")
        if state == "off":
            guards_off.append(g)
    invariants = tuple(_str_list(raw, "invariants", source, [])) if "invariants" in raw else None
    depth = _int(raw, "depth", source, minimum=0)
    check_deadlock = raw.get("check_deadlock", False)
    if not isinstance(check_deadlock, bool):
        raise SpecError(source, "check_deadlock", f"{check_deadlock!r} is not a boolean", "true | false")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(source, "description", "is not a string", "a string")
    spec = Spec(
        source, name, description, tuple(components), sizes, options, tuple(sorted(guards_off)),
        invariants, depth, check_deadlock, _expect(raw, source), raw, text,
    )
    _check_names(spec)
    return spec


def _check_names(spec: Spec) -> None:
    """Build once so unknown guards, options and invariants are reported now, by key; and
    an expectation must name an invariant or witness that the run will actually check."""
    try:
        model = spec.build()
    except ModelError as e:
        raise SpecError(spec.source, "model", str(e)) from None
    bounds = spec.bound_invariants(model)
    if spec.expect is None:
        return
    always = [b.name for b in bounds if b.kind is Kind.ALWAYS]
    sometimes = [b.name for b in bounds if b.kind is Kind.SOMETIMES]
    progress = [b.name for b in bounds if b.kind is Kind.PROGRESS]
    inv = spec.expect.invariant
    if spec.expect.result == "violation" and inv not in always:
        raise SpecError(spec.source, "expect.invariant", f"{inv!r} is not an ALWAYS invariant this spec checks",
                        ", ".join(always))
    if spec.expect.result == "cycle" and inv not in progress:
        raise SpecError(spec.source, "expect.invariant", f"{inv!r} is not a PROGRESS property this spec checks",
                        ", ".join(progress) or "none (no component of this spec has one)")
    for w in spec.expect.witnesses:
        if w not in sometimes:
            raise SpecError(spec.source, "expect.witnesses", f"{w!r} is not a SOMETIMES witness this spec checks",
                            ", ".join(sometimes))


def _expect(raw: dict[str, Any], source: str) -> Expect | None:
    if "expect" not in raw:
        return None
    table = _table(raw, "expect", source)
    for key in table:
        if key not in EXPECT_KEYS:
            raise SpecError(source, f"expect.{key}", "unknown key", ", ".join(EXPECT_KEYS))
    result = table.get("result")
    if result not in ("pass", "violation", "cycle"):
        raise SpecError(source, "expect.result", f"{result!r} is not a result", "'pass' | 'violation' | 'cycle'")
    invariant = table.get("invariant")
    if result != "pass" and not isinstance(invariant, str):
        raise SpecError(source, "expect.invariant", f"a {result} needs the name of the property it breaks",
                        "an invariant name" if result == "violation" else "a PROGRESS property name")
    if result == "pass" and invariant is not None:
        raise SpecError(source, "expect.invariant", "only a violation names an invariant")
    complete = table.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise SpecError(source, "expect.complete", f"{complete!r} is not a boolean", "true | false")
    witnesses = tuple(_str_list(table, "witnesses", source, [], prefix="expect."))
    return Expect(
        result, invariant, _int(table, "within", source, 0, "expect."), complete,
        _int(table, "distinct", source, 1, "expect."), _int(table, "depth", source, 0, "expect."), witnesses,
    )


def _table(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(source, key, "is not a table", f"a [{key}] table")
    return value


def _str_list(raw: dict[str, Any], key: str, source: str, default: list[str], prefix: str = "") -> list[str]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(source, prefix + key, f"{value!r} is not a list of strings", "a list of names")
    return value


def _int(raw: dict[str, Any], key: str, source: str, minimum: int, prefix: str = "") -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(source, prefix + key, f"{value!r} is not an integer >= {minimum}", f"an integer >= {minimum}")
    return value
