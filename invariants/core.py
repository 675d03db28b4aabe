"""What an invariant is: a named z3 predicate over a model's fields.

ALWAYS invariants must hold in every reachable state (safety). SOMETIMES invariants are
witnesses: some reachable state must satisfy them, so that a model which never reaches
the interesting race cannot pass vacuously. PROGRESS properties are liveness: each names,
per actor, a "waiting" predicate (e.g. vCPU0 has an MMIO access outstanding), and is
broken by a reachable, weakly fair cycle in which that actor waits in every state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import z3

from model.lang import Model, ModelError, UnknownName


class Kind(enum.Enum):
    ALWAYS = "ALWAYS"
    SOMETIMES = "SOMETIMES"
    PROGRESS = "PROGRESS"


Waiting = Callable[[Model], list[tuple[str, z3.BoolRef]]]


@dataclass(frozen=True)
class Invariant:
    """A named predicate: `formula(model)` builds its z3 term for a built model."""

    name: str
    kind: Kind
    statement: str  # one line, in kernel terms
    reference: str  # kernel function, commit or lore link
    requires: tuple[str, ...]  # components the formula reads
    formula: Callable[[Model], z3.BoolRef]
    # PROGRESS only: (who, waiting predicate) pairs; `formula` is then "someone waits"
    waiting: Waiting | None = None
    # decided by the kernel's constants (masks, values) in each configuration, so it
    # cannot fail in some models; a guard switched off is what makes it fail
    constant: bool = False
    # what the formula needs of the configuration ("component.name=value", a variant or
    # an option of the component; "=a|b" for any of several values; "c1 or c2" for either
    # condition): a property of one design or one kind of scenario
    when: tuple[str, ...] = ()

    def applies_to(self, model: Model) -> bool:
        """Whether `model` has every component the formula reads and meets every condition
        of `when` (a misspelt name or value is a ModelError, never a silent False)."""
        if not all(c in model.parts for c in self.requires):
            return False
        # every condition; one of its " or " alternatives (evaluated all, for the spelling check)
        return all(any([self._meets(model, alt) for alt in cond.split(" or ")]) for cond in self.when)

    def _meets(self, model: Model, condition: str) -> bool:
        """One "component.name=a|b": a variant with one of those values, or an option."""
        key, _, value = condition.partition("=")
        values = value.split("|")  # any of them
        component, _, name = key.partition(".")
        if component not in model.parts:  # a condition on a component this model lacks
            return False
        part = model.parts[component]
        if name in part.variant.declared:
            return any([part.variant.is_(name, v) for v in values])  # a list: every value checked
        if name not in {o.name for o in part.options}:
            raise ModelError(f"invariant {self.name!r} needs {key!r}, which is neither a variant nor an "
                             f"option of component {component!r}")
        return str(part.config[name]).lower() in values  # type: ignore[attr-defined]

    def bind(self, model: Model) -> Bound:
        term = self.formula(model)
        if not z3.is_bool(term):
            raise ModelError(f"invariant {self.name!r} does not build a boolean term")
        if (self.kind is Kind.PROGRESS) != (self.waiting is not None):
            raise ModelError(f"invariant {self.name!r}: a PROGRESS property, and only one, says who waits")
        return Bound(self, term, tuple(self.waiting(model)) if self.waiting else ())


def progress(
    name: str, statement: str, reference: str, requires: tuple[str, ...], waiting: Waiting,
    when: tuple[str, ...] = (),
) -> Invariant:
    """A PROGRESS property: no actor waits forever (see checker/progress.py)."""
    return Invariant(
        name, Kind.PROGRESS, statement, reference, requires,
        lambda m: z3.Or([t for _, t in waiting(m)] or [z3.BoolVal(False)]), waiting, when=when,
    )


@dataclass(frozen=True)
class Bound:
    """An invariant together with its term for one model."""

    invariant: Invariant
    term: z3.BoolRef
    waiting: tuple[tuple[str, z3.BoolRef], ...] = ()

    @property
    def name(self) -> str:
        return self.invariant.name

    @property
    def kind(self) -> Kind:
        return self.invariant.kind


def applicable(catalogue: Iterable[Invariant], model: Model) -> list[Invariant]:
    """The invariants whose components are all part of `model`, in catalogue order."""
    return [i for i in catalogue if i.applies_to(model)]


def select(catalogue: Iterable[Invariant], model: Model, names: Iterable[str] | None) -> list[Bound]:
    """Bind the named invariants (all applicable ones when `names` is None)."""
    usable = applicable(catalogue, model)
    if names is None:
        return [i.bind(model) for i in usable]
    by_name = {i.name: i for i in usable}
    chosen: list[Bound] = []
    for n in names:
        if n not in by_name:
            raise UnknownName("invariant", n, by_name)
        chosen.append(by_name[n].bind(model))
    return chosen


def facts(model: Model) -> list[Bound]:
    """The model's own facts, as ALWAYS invariants: the search verifies what the build assumed."""
    out: list[Bound] = []
    for f in model.facts:
        inv = Invariant(
            f.name, Kind.ALWAYS, f.statement, f"model fact of component {f.component}",
            (), lambda _m, term=f.term: term,
        )
        out.append(Bound(inv, f.term))
    return out
