"""Plain-text output: the one-line summary and the counterexample for a review mail.

Everything here is deterministic: no times, no absolute paths. Lines stay within 80
columns where the content allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from invariants import Bound
from model.lang import Extension, Field, Model, show

from .diagram import WIDTH, Diagram, steps_lines, wrap
from .document import Context, Failing, actor_title, failing, kernel_location, read_fields, where_text
from .explicit import SearchResult
from .progress import Lasso
from .text import ascii_path, shell_line
from .trace import Trace


def summary_line(result: SearchResult) -> str:
    line = (
        f"states={result.generated} distinct={result.distinct} depth={result.depth} "
        f"complete={'yes' if result.complete else 'no'}"
    )
    if result.reduction is not None:  # states= counts the successors the reduced search generated
        line += f" orbits={result.orbits} symmetry={result.reduction.group.short}"
    return line


def field_groups(model: Model) -> list[tuple[str, list[Field]]]:
    """Fields grouped by family (`name[label]` share `name`), in schema order."""
    groups: dict[str, list[Field]] = {}
    for f in model.schema.fields:
        groups.setdefault(f.name.split("[")[0], []).append(f)
    return list(groups.items())


def state_lines(model: Model, values: Sequence[int], indent: str = "  ",
                keep: set[str] | None = None) -> list[str]:
    """The state, one line per field family; only the fields in `keep` when given."""
    lines = []
    for name, family in field_groups(model):
        fields = [f for f in family if keep is None or f.name in keep]
        if not fields:
            continue
        if len(fields) == 1 and "[" not in fields[0].name:
            f = fields[0]
            lines.append(f"{indent}{name} = {f.label(values[f.index])}")
        else:
            labels = " ".join(f.name[len(name) + 1:-1] for f in fields)
            shown = " ".join(f.label(values[f.index]) for f in fields)
            lines.append(f"{indent}{name}[{labels}] = {shown}")
    return lines


def counterexample_text(trace: Trace, bound: Bound, context: Context) -> str:
    model = trace.model
    steps = len(trace.actions)
    f = failing(model, bound.term, trace.states[-1], bound.name)
    out = [*wrap(f"{subject(bound, model)} {bound.name} violated after {steps} step{'s' if steps != 1 else ''}",
                 WIDTH), ""]
    out += _header(model, context)
    out += ["", *_start(trace, f.where)]
    out += ["", *steps_lines(trace)]
    out += ["", *kernel_lines(trace)]
    out += ["", *violation_lines(bound, f)]
    return "\n".join(out) + "\n"


def witness_text(trace: Trace, bound: Bound, context: Context) -> str:
    model = trace.model
    out = [f"Witness: {bound.name} reached after {len(trace.actions)} steps", ""]
    out += _header(model, context)
    out += ["", *_start(trace)]
    out += ["", *steps_lines(trace)]
    out += ["", *kernel_lines(trace)]
    out += ["", f"Reached: {bound.name} (SOMETIMES)", *wrap(bound.invariant.statement, WIDTH, "  ")]
    return "\n".join(out) + "\n"


def lasso_text(trace: Trace, lasso: Lasso, context: Context) -> str:
    """A no-progress cycle: the steps that lead to it, then the steps that repeat forever."""
    model = trace.model
    p, c = len(lasso.prefix), len(lasso.cycle)
    inv = lasso.bound.invariant
    who = actor_title(lasso.who)
    if c:
        title = f"{subject(lasso.bound, model)} {inv.name} broken: {who} waits forever in a cycle of {c} steps"
    else:
        title = f"{subject(lasso.bound, model)} {inv.name} broken: {who} waits forever and nothing can happen"
    waiting = dict(lasso.bound.waiting)[lasso.who]
    where = read_fields(model, waiting, trace.states[p])
    out = [*wrap(title, WIDTH), ""]
    out += _header(model, context)
    out += ["", *_start(trace, where)]
    d = Diagram(trace)
    out += ["", *d.header(), *d.lines(1, p)]
    if c:
        head, tail = f"-- steps {p + 1}-{p + c} repeat forever;", "every actor enabled throughout takes a step --"
        fits = 4 + len(head) + 1 + len(tail) <= WIDTH  # indented by 4, as the step lines
        banner = [f"{head} {tail}"] if fits else [head, f"   {tail}"]
        out += [*(f"{'':>3} {line}" for line in banner), *d.lines(p + 1, p + c)]
        out += [f"{'':>3} -- back to the state after step {p} --" if p else f"{'':>3} -- back to the start --"]
    else:
        out += [f"{'':>3} -- stuck: no action is enabled after step {p} --"]
    out += ["", *kernel_lines(trace)]
    out += ["", f"Broken: {inv.name} (PROGRESS)", *wrap(inv.statement, WIDTH, "  ")]
    out += wrap(f"Reference: {inv.reference}", WIDTH, "  ", "             ")
    out += [f"  {who} waits in every state of the cycle:", *wrap(show(waiting, model.schema.by_name), WIDTH, "    ")]
    if where:
        out += wrap(where_text(where), WIDTH, "    ")
    return "\n".join(out) + "\n"


def subject(bound: Bound, model: Model) -> str:
    """The subject prefix a patch about this invariant would carry (a model that is not
    of a kernel, a --model file's, is named by its own name)."""
    if model.profile is None:
        return f"{model.name}:"
    return "KVM: TDX:" if {"tdx", "guest", "tdx_huge"} & set(bound.invariant.requires) else "KVM: x86/mmu:"


def command_lines(words: Sequence[str], indent: str = "  ") -> list[str]:
    """A shell command cut at option boundaries, with backslash continuations; plain
    ASCII whatever the words hold (text.shell_word)."""
    lines, current = [], indent + shell_line(words[:3])
    i = 3
    while i < len(words):
        take = 2 if words[i].startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--") else 1
        part = shell_line(words[i:i + take])
        if len(current) + 1 + len(part) + 2 > WIDTH:
            lines.append(current + " \\")
            current = indent + "  " + part
        else:
            current += " " + part
        i += take
    return [*lines, current]


def _header(model: Model, context: Context) -> list[str]:
    path = ascii_path(context.spec)
    label = "Spec:" if model.profile is not None else "Model:"  # a --model file
    spec = f"{label:<12}{path}"
    out = [spec] if len(spec) <= WIDTH else [label, f"  {path}"]
    if model.profile is not None:
        out += wrap(f"{model.profile.label} ({model.profile.kernel})", WIDTH, "Profile:    ", " " * 12)
    out.append(f"Components: {', '.join(model.parts) or 'none'}")
    for name, part in model.parts.items():  # the patches under review, from outside the tree
        if isinstance(part, Extension):
            out += wrap(f"{name}: {part.summary} ({ascii_path(part.origin)})", WIDTH, "Patch:      ", " " * 12)
    off = sorted((g for g in model.guards.values() if not g.enabled), key=lambda g: g.name)
    if not off:
        out.append("Guards off: none")
    for i, g in enumerate(off):
        out += wrap(f"{g.name}: {g.summary}", WIDTH, "Guard off:  " if i == 0 else " " * 12, " " * 14)
        out += wrap(f"Fix: {g.reference}", WIDTH, " " * 14, " " * 19)
    out += ["Reproduce:", *command_lines(context.command)]
    return out


def _start(trace: Trace, where: Mapping[str, str] | None = None) -> list[str]:
    """The start state, cut to the fields the steps change or the verdict reads."""
    keep = {f.name for n in range(1, len(trace.actions) + 1) for f, _, _ in trace.changes(n)} | set(where or ())
    return ["Start (the fields the steps change or the verdict reads):",
            *state_lines(trace.model, trace.states[0], keep=keep)]


def kernel_lines(trace: Trace) -> list[str]:
    """Where each kernel function the steps name lives, in the order the steps first name
    it: the kernel map of the model's profile, so a reviewer can open the code."""
    seen = dict.fromkeys(kernel_location(trace.model, a.kernel) for a in trace.actions)  # renamed ones meet
    if trace.model.profile is None:  # not a kernel model: the steps it names
        return [f"Steps ({trace.model.name}):", *(f"  {where}" for where in seen)]
    return [f"Kernel functions ({trace.model.profile.name}):", *(f"  {where}" for where in seen)]


def violation_lines(bound: Bound, f: Failing) -> list[str]:
    inv = bound.invariant
    lines = [f"Violated: {inv.name} ({inv.kind.value})"]
    lines += wrap(inv.statement, WIDTH, "  ")
    lines += wrap(f"Reference: {inv.reference}", WIDTH, "  ", "             ")
    return lines + failing_lines(f)


def failing_lines(f: Failing) -> list[str]:
    """The part of an invariant z3 finds false: the clause, the comparison, the values."""
    lines = ["  Failing part (z3):", *wrap(f.clause, WIDTH, "    ")]
    if f.fails_at:
        lines += wrap("fails at: " + f.fails_at, WIDTH, "    ", "      ")
    if f.where:
        lines += wrap(where_text(f.where), WIDTH, "    ")
    return lines
