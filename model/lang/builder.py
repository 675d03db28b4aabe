"""Building a model: components declare fields, guards and actions; `build()` checks them.

Every model-definition mistake is caught here, before any search runs: duplicate names,
an effect on a field the model does not have, a value of the wrong sort or outside its
domain, an action without a docstring naming its kernel function, a guard switched off
that nobody declared. Domain checks on computed values are proved with z3: the action's
guard, within the domains, must imply that the new value is in range.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import z3

from . import solver
from .actions import Action, Step
from .deadline import checkpoint
from .domains import Domain
from .errors import ModelError
from .exprs import free_constants
from .fields import Family, Field
from .schema import Schema


@dataclass(frozen=True)
class Fact:
    """A property the model's author relies on (e.g. to prove values stay in range).

    Facts are assumed by the build-time domain proof and checked in every reachable state
    by the engines, so they are verified, never trusted.
    """

    name: str
    statement: str
    term: z3.BoolRef
    component: str


@dataclass(frozen=True)
class GuardInfo:
    """A named protective mechanism from the kernel that a spec may switch off."""

    name: str
    summary: str
    reference: str
    component: str
    enabled: bool


class UnknownName(ModelError):
    """A name (guard, invariant, component, ...) that the model does not have."""

    def __init__(self, kind: str, name: str, allowed: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.allowed = sorted(allowed)
        super().__init__(
            f"unknown {kind} {name!r}; this model has: {', '.join(self.allowed) or 'none'}"
        )


class Model:
    """A built, checked, immutable transition system."""

    def __init__(
        self,
        name: str,
        schema: Schema,
        actions: Sequence[Action],
        guards: Mapping[str, GuardInfo],
        init: tuple[int, ...],
        parts: Mapping[str, Any],
        facts: Sequence[Fact] = (),
        description: str = "",
    ) -> None:
        self.name = name
        self.schema = schema
        self.actions = tuple(actions)
        self.guards = dict(guards)
        self.init = init
        self.parts = dict(parts)
        self.facts = tuple(facts)
        self.description = description
        self.by_key = {a.key: a for a in self.actions}
        # what kernel the model stands for (for the MMU, a model.mmu.profiles.Profile),
        # set by whoever builds it
        self.profile: Any = None

    def field(self, name: str) -> Field:
        try:
            return self.schema.by_name[name]
        except KeyError:
            raise UnknownName("field", name, self.schema.by_name) from None

    def guards_off(self) -> list[str]:
        return sorted(g.name for g in self.guards.values() if not g.enabled)

    def domain_constraints(self) -> list[z3.BoolRef]:
        return [f.domain.constraint(f.var) for f in self.schema.fields]


class ModelBuilder:
    """Collects fields, guards and actions from components, then builds a `Model`."""

    def __init__(self, name: str, guards_off: Iterable[str] = (), variants: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.variants = dict(variants or {})  # the profile's choices: "component.variant" -> value
        self._guards_off = set(guards_off)
        self._fields: list[Field] = []
        self._names: dict[str, Field] = {}
        self._guards: dict[str, GuardInfo] = {}
        self._actions: list[Action] = []
        self._keys: set[str] = set()
        self._parts: dict[str, Any] = {}
        self._facts: list[Fact] = []
        self.component = "model"  # the component currently declaring things

    # -- declarations ---------------------------------------------------------------

    def field(self, name: str, domain: Domain, init: object, doc: str = "") -> Field:
        if name in self._names:
            raise ModelError(
                f"field {name!r} is declared twice (by {self._names[name].component} and "
                f"{self.component}): give each field its own name"
            )
        code = domain.coerce(init, f"initial value of field {name!r}")
        f = Field(name, domain, code, doc, self.component, domain.z3_const(name), self)
        self._fields.append(f)
        self._names[name] = f
        return f

    def family(
        self, name: str, labels: Sequence[str], domain: Domain, init: object, doc: str = ""
    ) -> Family:
        """Fields `name[label]`; `init` is one value for all, or a sequence, one per label."""
        if isinstance(init, (list, tuple)):
            if len(init) != len(labels):
                raise ModelError(
                    f"family {name!r}: {len(init)} initial values for {len(labels)} members"
                )
            inits = list(init)
        else:
            inits = [init] * len(labels)
        fields = [self.field(f"{name}[{lab}]", domain, v, doc) for lab, v in zip(labels, inits, strict=True)]
        return Family(name, labels, fields)

    def guard(self, name: str, summary: str, reference: str) -> bool:
        """Declare a guard (on unless the spec switches it off); returns whether it is on."""
        if name in self._guards:
            raise ModelError(f"guard {name!r} is declared twice: guard names must be unique")
        if not summary or not reference:
            raise ModelError(f"guard {name!r} needs a summary and a kernel reference")
        info = GuardInfo(name, summary, reference, self.component, name not in self._guards_off)
        self._guards[name] = info
        return info.enabled

    def fact(self, name: str, statement: str, term: z3.BoolRef) -> None:
        """Declare a fact: assumed when proving effects stay in range, checked by the search."""
        if any(f.name == name for f in self._facts):
            raise ModelError(f"fact {name!r} is declared twice: fact names must be unique")
        self._check_known(f"fact {name!r}", term)
        self._facts.append(Fact(name, statement, term, self.component))

    def part(self, name: str, obj: Any) -> None:
        """Record a component object so invariants can use its helpers."""
        if name in self._parts:
            raise ModelError(f"component {name!r} is added twice")
        self._parts[name] = obj
        self.component = name

    def action(self, method: Callable[..., Step], actor: str, process: str | None = None, *,
               strong: bool = False, **params: Any) -> None:
        """Add one instance of an action method for the given concrete parameters.
        `process` is whose progress the step is, for weak fairness (default: the actor's):
        a SEAMCALL's result is a step of the thread blocked in the SEAMCALL. `strong` makes
        the step strongly fair: no fair cycle passes by it infinitely often without taking it."""
        name = method.__name__
        kernel = getattr(method, "__kernel_function__", None)
        doc = inspect.getdoc(method) or ""
        if kernel is None:
            raise ModelError(
                f"action {name!r} does not say which kernel function it models: "
                f"decorate it with @kernel('function_name')"
            )
        if kernel.split("(")[0] not in doc:
            raise ModelError(
                f"action {name!r}: its docstring must name the kernel function {kernel!r} and "
                f"say what it leaves out"
            )
        checkpoint()
        step = method(**params)
        if not isinstance(step, Step):
            raise ModelError(f"action {name!r} returned {type(step).__name__}; return a Step")
        action = Action(
            id=len(self._actions),
            name=name,
            params=tuple(params.items()),
            actor=actor,
            process=process or actor,
            kernel=kernel,
            text=step.text,
            doc=doc,
            guard=self._guard_term(name, step.guard),
            effect=self._effect_terms(name, params, step.effect),
            strong=strong,
        )
        if action.key in self._keys:
            raise ModelError(f"action {action.key} is added twice: parameters must differ")
        self._keys.add(action.key)
        self._actions.append(action)

    # -- checks ---------------------------------------------------------------------

    def _guard_term(self, name: str, guard: z3.BoolRef | bool) -> z3.BoolRef:
        if isinstance(guard, bool):
            return z3.BoolVal(guard)
        if not z3.is_bool(guard):
            raise ModelError(f"action {name!r}: the guard is not a boolean term: {guard}")
        self._check_known(f"guard of action {name!r}", guard)
        return guard

    def _effect_terms(
        self, name: str, params: Mapping[str, Any], effect: Mapping[Field, Any]
    ) -> tuple[tuple[Field, z3.ExprRef], ...]:
        where = f"action {name}({', '.join(f'{k}={v}' for k, v in params.items())})"
        out: list[tuple[Field, z3.ExprRef]] = []
        for f, value in effect.items():
            if not isinstance(f, Field):
                raise ModelError(f"{where}: effect key {f!r} is not a field; use the Field object")
            if f.owner is not self or self._names.get(f.name) is not f:
                raise ModelError(
                    f"{where}: effect on unknown field {f.name!r}: it is not a field of this "
                    f"model (is its component enabled?)"
                )
            term = self._value_term(where, f, value)
            self._check_known(f"{where}, value of {f.name}", term)
            out.append((f, term))
        return tuple(out)

    def _value_term(self, where: str, f: Field, value: Any) -> z3.ExprRef:
        if isinstance(value, z3.ExprRef):
            if f.domain.is_bool() != z3.is_bool(value):
                want = "a boolean" if f.domain.is_bool() else "an integer"
                raise ModelError(f"{where}: {f.name} needs {want} value, got {value}")
            if z3.is_int_value(value):
                f.domain.coerce(value.as_long(), f"{where}: {f.name}")
            return value
        return f.domain.z3_value(f.domain.coerce(value, f"{where}: {f.name}"))

    def _check_known(self, where: str, term: z3.ExprRef) -> None:
        for c in free_constants(term):
            f = self._names.get(c.decl().name())
            if f is None or not f.var.eq(c):
                raise ModelError(
                    f"{where} mentions {c}, which is not a field of this model: build terms "
                    f"from Field.var"
                )

    def _check_domains(self, fields: Sequence[Field]) -> None:
        """Prove every computed effect value lies in its field's domain."""
        constraints = [f.domain.constraint(f.var) for f in fields] + [f.term for f in self._facts]
        for a in self._actions:
            checkpoint()
            for f, term in a.effect:
                if f.domain.is_bool() or z3.is_int_value(term):
                    continue
                if z3.is_const(term) and self._names.get(term.decl().name()) is not None:
                    src = self._names[term.decl().name()].domain
                    if src.lo >= f.domain.lo and src.lo + src.size <= f.domain.lo + f.domain.size:
                        continue
                witness = solver.satisfiable([*constraints, a.guard, z3.Not(f.domain.constraint(term))])
                if witness is not None:
                    raise ModelError(
                        f"action {a.key} can write {f.name} := {term} outside "
                        f"{f.domain.describe()} (e.g. in a state where "
                        f"{_witness_text(witness, a.guard, term)}): strengthen its guard so "
                        f"that it implies the new value is in range, declare a fact that does, or "
                        f"widen the domain"
                    )

    def build(self, description: str = "") -> Model:
        unknown = sorted(self._guards_off - set(self._guards))
        if unknown:
            raise UnknownName("guard", unknown[0], self._guards)
        if not self._fields:
            raise ModelError(f"model {self.name!r} has no fields: declare at least one")
        if not self._actions:
            raise ModelError(f"model {self.name!r} has no actions: add at least one")
        schema = Schema(self._fields)
        for i, f in enumerate(schema.fields):
            f.index = i
        self._check_domains(schema.fields)
        init = schema.pack([f.init for f in schema.fields])
        return Model(
            self.name, schema, self._actions, self._guards, init, self._parts, self._facts, description
        )


def _witness_text(model: z3.ModelRef, *terms: z3.ExprRef) -> str:
    consts = {c.decl().name(): c for t in terms for c in free_constants(t)}
    return ", ".join(f"{n} = {model.eval(c, model_completion=True)}" for n, c in sorted(consts.items()))
