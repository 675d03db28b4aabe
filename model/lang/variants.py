"""Variants: a named, enumerated choice of how one mechanism works, value by value tied to
the kernel release or series that introduced it.

A guard switches a historical fix off to see what breaks; a variant says which design a
kernel has. A component declares the variants it reads (`Component.variants`); a profile
chooses one value for each; the component reads its choice through `Choices`, the one
API, so no action tests a kernel version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ModelError


@dataclass(frozen=True)
class VariantValue:
    """One design of a mechanism: `since` the kernel or series that has it, `source` the
    commit id or lore Message-ID that introduced it."""

    name: str
    since: str
    source: str
    summary: str
    # a value an extension adds to another component's variant: that component, which
    # knows only its own values, reads the value this one is `like`; the extension reads
    # the choice itself (ModelBuilder.variant())
    like: str = ""


@dataclass(frozen=True)
class Variant:
    """One mechanism's choices; its key in a profile is `component.name`."""

    name: str
    doc: str
    values: Sequence[VariantValue]

    def value_names(self) -> list[str]:
        return [v.name for v in self.values]

    def with_values(self, added: Sequence[VariantValue], where: str) -> Variant:
        """This variant with values an extension adds; each must be new and be `like` one
        of the variant's own values."""
        own = self.value_names()
        for v in added:
            if v.name in own:
                raise ModelError(f"{where}: variant {self.name!r} already has a value {v.name!r}")
            if v.like not in own:
                raise ModelError(f"{where}: value {v.name!r} of variant {self.name!r} must say which of its own "
                                 f"values the component reads instead (like=...); allowed: {self.allowed()}")
        return Variant(self.name, self.doc, (*self.values, *added))

    def allowed(self) -> str:
        return " | ".join(repr(v) for v in self.value_names())


class Choices:
    """What a profile chose for each variant one component declares."""

    def __init__(self, component: str, declared: Sequence[Variant], chosen: Mapping[str, str]) -> None:
        self.component = component
        self.declared = {v.name: v for v in declared}
        self.values: dict[str, str] = {}
        for name, variant in self.declared.items():
            key = f"{component}.{name}"
            if key not in chosen:
                raise ModelError(f"variant {key!r} has no value: the profile must choose one of {variant.allowed()}")
            value = chosen[key]
            if value not in variant.value_names():
                raise ModelError(f"variant {key!r}: {value!r} is not one of {variant.allowed()}")
            self.values[name] = value
        # an added value reads as the value it is like (see VariantValue.like)
        self.values = {n: next(v.like or v.name for v in self.declared[n].values if v.name == value)
                       for n, value in self.values.items()}

    def __getitem__(self, name: str) -> str:
        if name not in self.values:
            raise ModelError(f"component {self.component!r} reads variant {name!r}, which it does not declare "
                             f"(it declares: {', '.join(self.values) or 'none'})")
        return self.values[name]

    def is_(self, name: str, value: str) -> bool:
        """Whether variant `name` is `value`; a value the variant does not have is a
        modelling error, so a misspelt name cannot silently read as False."""
        chosen = self[name]
        if value not in self.declared[name].value_names():
            raise ModelError(f"variant {self.component}.{name} has no value {value!r}; "
                             f"it has {self.declared[name].allowed()}")
        return chosen == value
