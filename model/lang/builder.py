"""Building a model: components declare fields, guards and actions; `build()` checks them.

Every model-definition mistake is caught here, before any search runs: duplicate names,
an effect on a field the model does not have, a value of the wrong sort or outside its
domain, an action without a docstring naming its kernel function, a guard switched off
that nobody declared. Domain checks on computed values are proved with z3: the action's
guard, within the domains, must imply that the new value is in range; so must it imply
that an index term names a member (`Family.read`, `Family.write`, `SetField.add` with a
term: `require()`).

Two dialects of actions. A model of the kernel (the default, `kernel_docs=True`, which
`model.mmu.build` uses) adds each action as a method decorated with `@kernel("fn")` whose
docstring names `fn`. A model that is not about the kernel (`ModelBuilder(name,
kernel_docs=False)`, e.g. the textbook examples) may add undecorated methods with
`action()`, or an action directly with `add(name, actor, guard, effect, text, **params)`.
Sets and records (`set_field()`, `record()`, see structures.py) are groups of ordinary
fields in both.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import z3

from . import solver
from .actions import Action, Step
from .deadline import checkpoint
from .domains import Domain, EnumDomain
from .errors import ModelError
from .exprs import free_constants
from .fields import Family, Field
from .schema import Schema
from .structures import Record, SetField, Universe, declare_record, declare_set
from .symmetry import IndexSet
from .variants import VariantValue


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
        symmetric: Sequence[IndexSet] = (),
    ) -> None:
        self.name = name
        self.schema = schema
        self.actions = tuple(actions)
        self.guards = dict(guards)
        self.init = init
        self.parts = dict(parts)
        self.facts = tuple(facts)
        self.description = description
        # index sets whose members the model treats alike (model/lang/symmetry.py)
        self.symmetric = tuple(symmetric)
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

    def __init__(self, name: str, guards_off: Iterable[str] = (), variants: Mapping[str, str] | None = None, *,
                 kernel_docs: bool = True) -> None:
        self.name = name
        # every action names the kernel function it models (a method with @kernel and a
        # docstring naming it); False for a model that is not about the kernel
        self.kernel_docs = kernel_docs
        self._required: dict[int, tuple[z3.ExprRef, _Requirement]] = {}  # term id -> what its actions must prove
        self.variants = dict(variants or {})  # the profile's choices: "component.variant" -> value
        # values extensions add to components' variants: "component.variant" -> values
        self.added_values: dict[str, tuple[VariantValue, ...]] = {}
        self._splits: list[_Split] = []
        self._guards_off = set(guards_off)
        self._fields: list[Field] = []
        self._names: dict[str, Field] = {}
        self._guards: dict[str, GuardInfo] = {}
        self._actions: list[Action] = []
        self._keys: set[str] = set()
        self._parts: dict[str, Any] = {}
        self._facts: list[Fact] = []
        self._symmetric: dict[str, IndexSet] = {}
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

    def set_field(self, name: str, universe: Universe | Iterable[str] | EnumDomain, init: Iterable[Any] = (),
                  doc: str = "") -> SetField:
        """A set over `universe` (labels, an enum domain, or `records(...)`): one bool field
        `name[label]` per element; `init` names the elements it starts with."""
        return declare_set(self, name, universe, init, doc)

    def record(self, name: str, parts: Mapping[str, Domain | Sequence[str]], init: Mapping[str, Any] | None = None,
               doc: str = "") -> Record:
        """A record: one field `name.part` per part (a domain, or labels for an enum); a
        part missing from `init` starts at its domain's first value (False, the first
        member, the lowest int)."""
        return declare_record(self, name, parts, init, doc)

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

    def symmetric(self, name: str, param: str, members: Mapping[int, Sequence[str]]) -> None:
        """Declare the index set `name` symmetric: `members` maps the value of the action
        parameter `param` that names each member (`vcpu=0`) to the names that member goes by
        in field names and actors (`vcpu0`, `vCPU0`). Declaring the same set again is a
        no-op; declaring it differently is an error. Nothing is trusted: `--symmetry`
        proves the model symmetric before it reduces anything (model/lang/symmetry.py)."""
        names = tuple(tuple(n) for n in members.values())
        if len(names) < 2 or any(len(n) != len(names[0]) or not n for n in names):
            raise ModelError(f"symmetric set {name!r}: give at least two members, each with as many names")
        declared = IndexSet(name, param, tuple(members), names)
        if self._symmetric.setdefault(name, declared) != declared:
            raise ModelError(f"symmetric set {name!r} is declared twice, differently")

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
        if kernel is None and not self.kernel_docs:
            kernel = name  # a model not about the kernel: the method names the step
        if kernel is None:
            raise ModelError(
                f"action {name!r} does not say which kernel function it models: "
                f"decorate it with @kernel('function_name')"
            )
        if self.kernel_docs and kernel.split("(")[0] not in doc:
            raise ModelError(
                f"action {name!r}: its docstring must name the kernel function {kernel!r} and "
                f"say what it leaves out"
            )
        checkpoint()
        step = method(**params)
        if not isinstance(step, Step):
            raise ModelError(f"action {name!r} returned {type(step).__name__}; return a Step")
        self._append(name, params, actor, process, kernel, step.text, doc, step.guard, step.effect, strong,
                     _origin(method))

    def add(self, name: str, actor: str, guard: z3.BoolRef | bool, effect: Mapping[Field, Any],
            text: str | None = None, *, process: str | None = None, strong: bool = False, **params: Any) -> Action:
        """Add one action instance as it stands: its key is `name(p=v, ...)` from `params`,
        its display line `text` (default: the key). Only for a model built with
        `kernel_docs=False`: a kernel model's actions are methods that name their kernel
        function (`action()`). Checked like any action."""
        if self.kernel_docs:
            raise ModelError(
                f"action {name!r}: this model's actions must say which kernel function they model: write a "
                f"method decorated with @kernel('function_name') and add it with action() (add() is for "
                f"models built with kernel_docs=False)"
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise ModelError(f"action {name!r}: its name must be an identifier")
        checkpoint()
        args = ", ".join(f"{k}={v}" for k, v in params.items())
        return self._append(name, params, actor, process, name, text if text is not None else f"{name}({args})", "",
                            guard, effect, strong, _caller())

    def _append(self, name: str, params: Mapping[str, Any], actor: str, process: str | None, kernel: str,
                text: str, doc: str, guard: z3.BoolRef | bool, effect: Mapping[Field, Any], strong: bool,
                origin: str) -> Action:
        """One action instance, its guard and effect checked, under a key no other has."""
        action = Action(
            id=len(self._actions),
            name=name,
            params=tuple(params.items()),
            actor=actor,
            process=process or actor,
            kernel=kernel,
            text=text,
            doc=doc,
            guard=self._guard_term(name, guard),
            effect=self._effect_terms(name, params, effect),
            strong=strong,
            origin=origin,
        )
        if action.key in self._keys:
            raise ModelError(f"action {action.key} is added twice: parameters must differ")
        self._keys.add(action.key)
        self._actions.append(action)
        return action

    def require(self, condition: z3.BoolRef, terms: Iterable[z3.ExprRef], what: str) -> None:
        """Wherever one of `terms` appears in an action (its guard or effect), the action's
        guard, with the domains and facts, must imply `condition`; checked by `build()`,
        which names the action and a state where it does not. `what` completes "action
        a ..." (e.g. "writes x[i], which must lie in 0..2")."""
        req = _Requirement(condition, what)
        for t in terms:
            if not (z3.is_true(t) or z3.is_false(t) or z3.is_int_value(t) or z3.is_const(t)):
                self._required[t.get_id()] = (t, req)

    def variant(self, key: str) -> str:
        """The value chosen for variant `key` ("component.variant"), as chosen: a value an
        extension added reads as itself here, and as the value it is like to the component."""
        if key not in self.variants:
            raise UnknownName("variant", key, self.variants)
        return self.variants[key]

    # -- changing what is there: what a patch under review does to the model ----------

    def lookup(self, name: str, missing_ok: bool = False) -> list[Field]:
        """The field `name`, or every member `name[label]` of the family `name`, declared
        so far (by any component); none with `missing_ok` if this model has no such field
        (a variant or option without it), an error otherwise."""
        found = [f for f in self._fields if f.name == name or f.name.startswith(f"{name}[")]
        if not found and not missing_ok:
            raise UnknownName("field", name, {f.name.split("[")[0] for f in self._fields})
        return found

    def actions(self, *targets: str, missing_ok: bool = False) -> list[Action]:
        """The actions added so far that `targets` name: a key `name(p=v, ...)` for one
        instance, or a bare name for every instance of that action; with `missing_ok`, a
        name this model lacks (a step only a guard or variant adds) names none."""
        found = [a for a in self._actions if a.key in targets or a.name in targets]
        known = {a.key for a in found} | {a.name for a in found}
        target = next((t for t in targets if t not in known), None)
        if target is not None and not missing_ok:
            raise UnknownName("action", target, {a.name for a in self._actions})
        return found

    def writers(self, field: Field) -> list[Action]:
        """The actions added so far whose effect writes `field`."""
        return [a for a in self._actions if any(f is field for f, _ in a.effect)]

    def refine(
        self, target: str | Iterable[Action], why: str, *,
        guard: Callable[[Action], z3.BoolRef | bool] | None = None,
        effect: Callable[[Action], Mapping[Field, Any]] | None = None,
        text: Callable[[Action], str] | None = None,
        replace_guard: bool = False,
        replace_effect: bool = False,
    ) -> list[Action]:
        """Change actions already added (`target`: a key, a bare name, or the actions).

        `guard(a)` is conjoined to each instance's guard (or replaces it with
        `replace_guard`); `effect(a)` writes fields on top of its effect (or replaces the
        whole effect with `replace_effect`; writing `f.var` to a field leaves it unchanged);
        `text(a)` is the new display line. `why` says what the patch changes, in the
        kernel's words: it is added to the action's docstring. The result is checked like
        any action (fields of this model, sorts, values in range)."""
        if not why.strip():
            raise ModelError(f"refine({target!r}): say why (what the patch changes) in `why`")
        chosen = self.actions(target) if isinstance(target, str) else list(target)
        origin = _caller()
        out: list[Action] = []
        for a in chosen:
            new_guard = a.guard
            if guard is not None:
                g = self._guard_term(a.name, guard(a))
                new_guard = g if replace_guard else z3.And(a.guard, g)
            new_effect = a.effect
            if effect is not None:
                written = self._effect_terms(a.name, a.args, effect(a))
                kept = () if replace_effect else tuple((f, t) for f, t in a.effect
                                                       if not any(f is g for g, _ in written))
                new_effect = (*kept, *written)
            refined = replace(a, guard=new_guard, effect=new_effect, text=text(a) if text else a.text,
                              doc=f"{a.doc}\n\nRefined ({origin}): {why.strip()}", origin=origin)
            self._actions[a.id] = refined
            out.append(refined)
        return out

    def split(self, target: str, later: Callable[..., Step], first: Iterable[Field]) -> list[Action]:
        """Split each instance of `target` into two steps with an interleaving point
        between them, as a patch that drops a lock or moves a check does.

        The first step (the action itself, same key) checks the guard and makes the writes
        to `first`; the second (`later`, an action method taking the same parameters) runs
        when its own Step's guard holds, makes the other writes of the original effect,
        evaluated in the state it runs in, then its own Step's writes. Between the two the
        actor is inside the function: a field `<later>.pending[<actor>]` says where, and no
        other action of that actor runs until the second step has."""
        first = list(first)
        originals = self.actions(target)
        by_actor: dict[str, list[Action]] = {}
        for a in originals:
            by_actor.setdefault(a.actor, []).append(a)
        out: list[Action] = []
        for actor, instances in by_actor.items():
            labels = _labels(instances)
            pending = self.field(f"{later.__name__}.pending[{actor}]",
                                 EnumDomain(f"{later.__name__}.pending", ("idle", *labels)), "idle",
                                 f"where {actor} is between {target} and {later.__name__}")
            dom: EnumDomain = pending.domain  # type: ignore[assignment]
            halves: list[int] = []
            for a, label in zip(instances, labels, strict=True):
                at = pending.var == dom.code(label)
                now = tuple((f, t) for f, t in a.effect if any(f is g for g in first))
                rest = tuple((f, t) for f, t in a.effect if not any(f is g for g in first))
                self._actions[a.id] = replace(a, effect=(*now, (pending, z3.IntVal(dom.code(label)))))
                before = len(self._actions)
                self.action(later, actor, a.process, strong=a.strong, **a.args)
                second = self._actions[before]
                merged = [(f, t) for f, t in rest if not any(f is g for g, _ in second.effect)]
                leave = (pending, z3.IntVal(dom.code("idle")))
                self._actions[before] = replace(second, guard=z3.And(at, second.guard),
                                                effect=(*merged, *second.effect, leave))
                halves.append(before)
                out.append(self._actions[before])
            self._splits.append(_Split(actor, pending, frozenset(halves)))
        return out

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

    def _check_domains(self, context: solver.Context) -> None:
        """Prove every computed effect value lies in its field's domain."""
        for a in self._actions:
            checkpoint()
            for f, term in a.effect:
                if f.domain.is_bool() or z3.is_int_value(term):
                    continue
                if z3.is_const(term) and self._names.get(term.decl().name()) is not None:
                    src = self._names[term.decl().name()].domain
                    if src.lo >= f.domain.lo and src.lo + src.size <= f.domain.lo + f.domain.size:
                        continue
                witness = context.satisfiable([a.guard, z3.Not(f.domain.constraint(term))])
                if witness is not None:
                    raise ModelError(
                        f"action {a.key}{_at(a)} can write {f.name} := {term} outside "
                        f"{f.domain.describe()} (e.g. in a state where "
                        f"{solver.witness_text(witness, [a.guard, term])}): strengthen its guard so "
                        f"that it implies the new value is in range, declare a fact that does, or "
                        f"widen the domain"
                    )

    def _check_requirements(self, context: solver.Context) -> None:
        """Prove what `require()` asked of each action that uses the terms it named."""
        if not self._required:
            return
        for a in self._actions:
            checkpoint()
            for req in _required_in([a.guard, *(t for _, t in a.effect)], self._required):
                witness = context.satisfiable([a.guard, z3.Not(req.condition)])
                if witness is not None:
                    raise ModelError(
                        f"action {a.key}{_at(a)} {req.what} (it can fail where "
                        f"{solver.witness_text(witness, [a.guard, req.condition])}): strengthen its guard so that it "
                        f"implies {req.condition}, or declare a fact that does"
                    )

    def _keep_actors_inside(self) -> None:
        """An actor between the two steps of a split action takes no other step."""
        for sp in self._splits:
            idle = z3.IntVal(0)
            for i, a in enumerate(self._actions):
                if a.actor == sp.actor and i not in sp.second:
                    self._actions[i] = replace(a, guard=z3.And(a.guard, sp.pending.var == idle))

    def build(self, description: str = "") -> Model:
        unknown = sorted(self._guards_off - set(self._guards))
        if unknown:
            raise UnknownName("guard", unknown[0], self._guards)
        if not self._fields:
            raise ModelError(f"model {self.name!r} has no fields: declare at least one")
        if not self._actions:
            raise ModelError(f"model {self.name!r} has no actions: add at least one")
        self._keep_actors_inside()
        schema = Schema(self._fields)
        for i, f in enumerate(schema.fields):
            f.index = i
        # the domains and facts, asserted once for every proof below
        context = solver.Context([f.domain.constraint(f.var) for f in schema.fields] + [f.term for f in self._facts])
        self._check_domains(context)
        self._check_requirements(context)
        init = schema.pack([f.init for f in schema.fields])
        return Model(
            self.name, schema, self._actions, self._guards, init, self._parts, self._facts, description,
            tuple(self._symmetric.values()),
        )


@dataclass(frozen=True)
class _Requirement:
    """What an action using certain terms must imply (an index in range, ...)."""

    condition: z3.BoolRef
    what: str


def _required_in(terms: Sequence[z3.ExprRef], required: Mapping[int, tuple[z3.ExprRef, _Requirement]]
                 ) -> list[_Requirement]:
    """The requirements of the registered terms that occur in `terms`, once each."""
    found: dict[int, _Requirement] = {}
    seen: set[int] = set()
    stack = list(terms)
    while stack:
        t = stack.pop()
        tid = t.get_id()
        if tid in seen:
            continue
        seen.add(tid)
        if tid in required:
            req = required[tid][1]
            found.setdefault(id(req), req)
        stack.extend(t.children())
    return list(found.values())


@dataclass(frozen=True)
class _Split:
    """An actor with a split action: where it is, and the ids of the second halves."""

    actor: str
    pending: Field
    second: frozenset[int]


def _labels(instances: Sequence[Action]) -> list[str]:
    """An identifier per instance, from its parameters (`gfn0_level1`), for the enum of
    where an actor is inside a split action."""
    labels = [re.sub(r"\W", "_", "_".join(f"{k}{v}" for k, v in a.params)) or "at" for a in instances]
    if len(set(labels)) != len(labels) or not all(x.isidentifier() and x != "idle" for x in labels):
        labels = [f"i{n}" for n in range(len(instances))]
    return labels


def _origin(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""


def _caller() -> str:
    """file:line of the code that called the builder method calling this."""
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _at(a: Action) -> str:
    if not a.origin:
        return ""
    path, _, line = a.origin.rpartition(":")
    relative = os.path.relpath(path)
    return f" (defined at {path if relative.startswith('..') else relative}:{line})"

