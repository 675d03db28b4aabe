"""A counterexample as one plain document: what every export format renders.

The document is what the JSON file holds (versioned by `SCHEMA_VERSION`), what the HTML
viewer embeds, what a regression test replays and what the mail text is laid out from.
It carries the scenario's TOML itself, so a file can be replayed without the spec file
it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from invariants import Bound
from model.lang import Field, Model, free_constants, show

from .progress import Lasso
from .text import shell_line
from .trace import Trace, failing_part, holds

FORMAT = "kvm-mmu-checker counterexample"
SCHEMA_VERSION = 4  # 3: the scenario's profile, and where each step's function lives; 4: extensions, model files
# a document without either is written as version 3, which readers of 3 read unchanged
WITHOUT_EXTENSIONS = 3


@dataclass
class Context:
    """Where a run came from: the header of every export, and what replay rebuilds."""

    spec: str  # the spec file as given, or "<default>"
    command: tuple[str, ...]  # the command that reproduces the run, word by word
    name: str = ""  # the spec's name
    toml: str = ""  # the spec's text
    guards: dict[str, bool] = field(default_factory=dict)  # --guard overrides (name -> on)
    # the extensions the run loaded (checker.extensions.Loaded.document()), text included
    extensions: tuple[dict[str, str], ...] = ()
    # a --model run's file (path, sha256, text), which replay runs again
    model: dict[str, str] | None = None


def kernel_location(model: Model, function: str) -> str:
    """`file:function` in the kernel the model stands for (its profile's kernel map)."""
    return model.profile.where(function) if model.profile is not None else function


def fingerprint(model: Model) -> str:
    """Identifies the model's shape: fields, domains and actions (not guard settings' effects)."""
    h = hashlib.sha256()
    for f in model.schema.fields:
        h.update(f"{f.name}:{f.domain.describe()}\n".encode())
    for a in model.actions:
        h.update(f"{a.key}\n".encode())
    return h.hexdigest()[:16]


def actor_title(actor: str) -> str:
    """The column header for an actor: `vmx0.vcpu1` -> `vmx0 vCPU1`, `nx` -> `NX recovery`."""
    words = []
    for part in actor.split("."):
        if part.startswith("vcpu") and part[4:].isdigit():
            part = "vCPU" + part[4:]
        elif part == "nx":
            part = "NX recovery"
        words.append(part)
    return " ".join(words)


def own_name(field: str, actor: str) -> str:
    """The field's name, without the index when the index is the acting actor itself:
    `fault.step[vcpu0]` is `fault.step` in vCPU0's column, which already says whose it is."""
    base, _, label = field.partition("[")
    return base if label[:-1].lower() == actor.lower() else field


def actors(trace: Trace) -> list[str]:
    """The actors that take part, in the order they first step (the diagram's columns)."""
    return list(dict.fromkeys(a.actor for a in trace.actions))


@dataclass
class Failing:
    """The part of an invariant that is false in a state, found by evaluating it with z3."""

    clause: str  # the innermost failing implication (the rule that broke) or conjunct
    fails_at: str  # the smallest false comparison inside it ("" when it is the clause)
    where: dict[str, str]  # the fields that comparison reads, with their values


def failing(model: Model, term: z3.BoolRef, values: Sequence[int], name: str) -> Failing:
    if holds(model, term, values):
        raise AssertionError(f"z3 says {name} holds in the final state")
    chain = failing_part(model, term, values)
    part = chain[-1]
    implications = [t for t in chain[:-1] if z3.is_implies(t)]
    ands = [i for i, t in enumerate(chain[:-1]) if z3.is_and(t)]
    clause = implications[-1] if implications else chain[ands[-1] + 1] if ands else chain[0]
    fields = model.schema.by_name
    return Failing(show(clause, fields), "" if clause is part else show(part, fields),
                   read_fields(model, part, values))


def where_text(where: dict[str, str]) -> str:
    """`where f = v, ...` for the fields a formula reads."""
    return "where " + ", ".join(f"{k} = {v}" for k, v in where.items())


def read_fields(model: Model, term: z3.ExprRef, values: Sequence[int]) -> dict[str, str]:
    """The fields `term` mentions, in schema order, with their values in `values`."""
    mentioned: list[Field] = sorted((model.schema.by_name[c.decl().name()] for c in free_constants(term)),
                                    key=lambda f: f.index)
    return {f.name: f.label(values[f.index]) for f in mentioned}


def document(trace: Trace, bound: Bound, context: Context, lasso: Lasso | None = None) -> dict[str, Any]:
    model = trace.model
    inv = bound.invariant
    final = trace.states[-1]
    invariant: dict[str, Any] = {"name": inv.name, "kind": inv.kind.value, "statement": inv.statement,
                                 "reference": inv.reference}
    if lasso is None:
        f = failing(model, bound.term, final, inv.name)
        invariant["failing"] = {"clause": f.clause, "fails_at": f.fails_at, "where": f.where}
    else:
        waiting = dict(bound.waiting)[lasso.who]
        invariant["waiting"] = {"who": lasso.who, "predicate": show(waiting, model.schema.by_name),
                                "where": read_fields(model, waiting, trace.states[len(lasso.prefix)])}
    scenario: dict[str, Any] = {"name": context.name, "source": context.spec, "toml": context.toml}
    if model.profile is not None:  # the profile the run checked (the spec's, or --profile)
        scenario["profile"] = model.profile.name
    scenario["guards"] = {k: "on" if v else "off" for k, v in sorted(context.guards.items())}
    if context.extensions:
        scenario["extensions"] = list(context.extensions)
    if context.model is not None:
        scenario["model"] = dict(context.model)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION if context.extensions or context.model else WITHOUT_EXTENSIONS,
        "model": {
            "name": model.name,
            "components": list(model.parts),
            "fingerprint": fingerprint(model),
        },
        "scenario": scenario,
        "command": shell_line(context.command),
        "result": "violation" if lasso is None else "cycle",
        "invariant": invariant,
        "guards_off": [{"name": g.name, "summary": g.summary, "reference": g.reference}
                       for g in sorted(model.guards.values(), key=lambda g: g.name) if not g.enabled],
        "actors": [{"id": a, "title": actor_title(a)} for a in actors(trace)],
        "fields": [f.name for f in model.schema.fields],
        "start": {f.name: f.label(v) for f, v in zip(model.schema.fields, trace.states[0], strict=True)},
        "steps": [
            {
                "step": n,
                "actor": a.actor,
                "action": a.key,
                "kernel": a.kernel,
                "where": kernel_location(model, a.kernel),
                "text": a.text,
                "changes": {f.name: [f.label(old), f.label(new)] for f, old, new in trace.changes(n)},
            }
            for n, a in enumerate(trace.actions, start=1)
        ],
    }
    if lasso is not None:
        doc["cycle"] = {"who": lasso.who, "first_step": len(lasso.prefix) + 1, "steps": len(lasso.cycle)}
    return doc
