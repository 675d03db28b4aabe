"""Plain-text output: the one-line summary and the counterexample for a review mail.

Everything here is deterministic: no times, no absolute paths. Lines stay within 80
columns where the content allows.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import z3

from invariants import Bound
from model.lang import Field, Model, free_constants, show

from .explicit import SearchResult
from .progress import Lasso
from .trace import Trace, failing_part, holds

WIDTH = 80


def summary_line(result: SearchResult) -> str:
    return (
        f"states={result.generated} distinct={result.distinct} depth={result.depth} "
        f"complete={'yes' if result.complete else 'no'}"
    )


def field_groups(model: Model) -> list[tuple[str, list[Field]]]:
    """Fields grouped by family (`name[label]` share `name`), in schema order."""
    groups: dict[str, list[Field]] = {}
    for f in model.schema.fields:
        groups.setdefault(f.name.split("[")[0], []).append(f)
    return list(groups.items())


def state_lines(model: Model, values: Sequence[int], indent: str = "  ") -> list[str]:
    lines = []
    for name, fields in field_groups(model):
        if len(fields) == 1 and "[" not in fields[0].name:
            f = fields[0]
            lines.append(f"{indent}{name} = {f.label(values[f.index])}")
        else:
            labels = " ".join(f.name[len(name) + 1:-1] for f in fields)
            shown = " ".join(f.label(values[f.index]) for f in fields)
            lines.append(f"{indent}{name}[{labels}] = {shown}")
    return lines


@dataclass
class Context:
    """Where a run came from, for the counterexample header."""

    spec: str  # the spec file as given, or "<default>"
    command: str  # the command that reproduces the run


def counterexample_text(trace: Trace, bound: Bound, context: Context) -> str:
    model = trace.model
    steps = len(trace.actions)
    out = [f"KVM: x86/mmu: {bound.name} violated after {steps} step{'s' if steps != 1 else ''}", ""]
    out += _header(model, context)
    out += ["", "Start:", *state_lines(model, trace.states[0])]
    out += ["", "Steps:", *steps_lines(trace)]
    out += ["", *violation_lines(model, bound, trace.states[-1])]
    return "\n".join(out) + "\n"


def witness_text(trace: Trace, bound: Bound, context: Context) -> str:
    model = trace.model
    out = [f"Witness: {bound.name} reached after {len(trace.actions)} steps", ""]
    out += _header(model, context)
    out += ["", "Start:", *state_lines(model, trace.states[0])]
    out += ["", "Steps:", *steps_lines(trace)]
    out += ["", f"Reached: {bound.name} (SOMETIMES)", *_wrap(bound.invariant.statement, "  ")]
    return "\n".join(out) + "\n"


def lasso_text(trace: Trace, lasso: Lasso, context: Context) -> str:
    """A no-progress cycle: the steps that lead to it, then the steps that repeat forever."""
    model = trace.model
    p, c = len(lasso.prefix), len(lasso.cycle)
    inv = lasso.bound.invariant
    if c:
        title = f"KVM: x86/mmu: {inv.name} broken: {lasso.who} waits forever in a cycle of {c} steps"
    else:
        title = f"KVM: x86/mmu: {inv.name} broken: {lasso.who} waits forever and nothing can happen"
    out = [*_wrap(title, ""), ""]
    out += _header(model, context)
    out += ["", "Start:", *state_lines(model, trace.states[0])]
    out += ["", f"Steps to the cycle ({p}):", *steps_lines(trace, 1, p)]
    if c:
        out += ["", f"Cycle (steps {p + 1}-{p + c} repeat forever; every actor enabled throughout it "
                "takes a step):", *steps_lines(trace, p + 1, p + c)]
        out += [f"{'':>3} back to the state after step {p}" if p else f"{'':>3} back to the start"]
    else:
        out += ["", f"Stuck: no action is enabled after step {p}."]
    out += ["", f"Broken: {inv.name} (PROGRESS)", *_wrap(inv.statement, "  ")]
    out += _wrap(f"Reference: {inv.reference}", "  ", "             ")
    waiting = dict(lasso.bound.waiting)[lasso.who]
    out += ["  Waiting in every state of the cycle:", *_wrap(show(waiting, model.schema.by_name), "    ")]
    mentioned = _mentioned(model, waiting)
    if mentioned:
        values = trace.states[p]
        out += _wrap("where " + ", ".join(f"{f.name} = {f.label(values[f.index])}" for f in mentioned), "    ")
    return "\n".join(out) + "\n"


def _header(model: Model, context: Context) -> list[str]:
    return [
        f"Spec:       {context.spec}",
        f"Components: {', '.join(model.parts) or 'none'}",
        f"Guards off: {', '.join(model.guards_off()) or 'none'}",
        "Reproduce:",
        f"  {context.command}",
    ]


def steps_lines(trace: Trace, first: int = 1, last: int | None = None) -> list[str]:
    """Steps `first`..`last` (1-based, inclusive; default all) with what each changed."""
    actors = sorted({a.actor for a in trace.actions})
    width = max((len(a) for a in actors), default=5)
    lines = []
    stop = len(trace.actions) if last is None else last
    for n, action in enumerate(trace.actions, start=1):
        if not first <= n <= stop:
            continue
        lead = f"{n:>3} {action.actor:<{width}}  "
        lines += _wrap(action.text, lead, " " * len(lead))
        for f, old, new in trace.changes(n):
            lines += _wrap(f"{f.name}: {f.label(old)} -> {f.label(new)}", " " * (len(lead) + 2))
    return lines


def violation_lines(model: Model, bound: Bound, values: Sequence[int]) -> list[str]:
    inv = bound.invariant
    lines = [f"Violated: {inv.name} ({inv.kind.value})"]
    lines += _wrap(inv.statement, "  ")
    lines += _wrap(f"Reference: {inv.reference}", "  ", "             ")
    if holds(model, bound.term, values):
        raise AssertionError(f"z3 says {inv.name} holds in the final state")
    chain = failing_part(model, bound.term, values)
    part = chain[-1]
    fields = model.schema.by_name
    # Show the innermost failing implication (the rule that broke), else the innermost
    # failing conjunct; "fails at" then names the exact comparison that is false.
    implications = [t for t in chain[:-1] if z3.is_implies(t)]
    ands = [i for i, t in enumerate(chain[:-1]) if z3.is_and(t)]
    clause = implications[-1] if implications else chain[ands[-1] + 1] if ands else chain[0]
    lines.append("  Failing part:")
    lines += _wrap(show(clause, fields), "    ")
    if clause is not part:
        lines += _wrap("fails at: " + show(part, fields), "    ", "      ")
    mentioned = _mentioned(model, part)
    if mentioned:
        lines += _wrap("where " + ", ".join(f"{f.name} = {f.label(values[f.index])}" for f in mentioned), "    ")
    return lines


def _mentioned(model: Model, term: z3.ExprRef) -> list[Field]:
    return sorted((model.schema.by_name[c.decl().name()] for c in free_constants(term)), key=lambda f: f.index)


def _wrap(text: str, first: str, rest: str | None = None) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest if rest is not None else first,
        break_long_words=False, break_on_hyphens=False,
    ) or [first.rstrip()]
