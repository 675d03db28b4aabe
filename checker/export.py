"""Counterexample files: text for a mail, versioned JSON, and the trace graph (DOT, GraphML).

The trace graph is a networkx DiGraph: one node per state (with the fields its step
changed), one edge per step (labelled with the actor and the action). Files are named
`DIR/<spec-name>.<ext>` and written through temporary files, so a failed export leaves
no half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import networkx as nx

from invariants import Bound
from model.lang import Model

from .progress import Lasso
from .report import Context, counterexample_text, lasso_text
from .trace import Trace

SCHEMA_VERSION = 1
FORMATS = ("text", "json", "dot", "graphml")
EXTENSIONS = {"text": "txt", "json": "json", "dot": "dot", "graphml": "graphml"}


def fingerprint(model: Model) -> str:
    """Identifies the model's shape: fields, domains and actions (not guard settings' effects)."""
    h = hashlib.sha256()
    for f in model.schema.fields:
        h.update(f"{f.name}:{f.domain.describe()}\n".encode())
    for a in model.actions:
        h.update(f"{a.key}\n".encode())
    return h.hexdigest()[:16]


def trace_graph(trace: Trace, bound: Bound, lasso: Lasso | None = None) -> nx.DiGraph:
    """The trace as a graph; a lasso's last step goes back to the state its cycle starts in."""
    g = nx.DiGraph(invariant=bound.name, model=trace.model.name)
    last = len(trace.states) - 1
    back = len(lasso.prefix) if lasso is not None and lasso.cycle else None
    for i in range(len(trace.states) - (back is not None)):
        changes = trace.changes(i) if i else []
        g.add_node(
            f"s{i}",
            step=i,
            changes="; ".join(f"{f.name}: {f.label(a)} -> {f.label(b)}" for f, a, b in changes),
            violated=(i == last) if lasso is None else (back is not None and i >= back),
        )
    for n, action in enumerate(trace.actions, start=1):
        target = f"s{back}" if back is not None and n == last else f"s{n}"
        g.add_edge(f"s{n - 1}", target, step=n, actor=action.actor, action=action.key,
                   kernel=action.kernel, text=action.text)
    return g


def to_dot(g: nx.DiGraph) -> str:
    def q(s: object) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {q(g.graph.get('invariant', 'trace'))} {{", "  node [shape=box, fontname=monospace];"]
    for node, data in g.nodes(data=True):
        label = f"{node}" + (f"\n{data['changes'].replace('; ', chr(10))}" if data["changes"] else "")
        style = ", color=red, penwidth=2" if data["violated"] else ""
        lines.append(f"  {q(node)} [label={q(label)}{style}];")
    for a, b, data in g.edges(data=True):
        lines.append(f"  {q(a)} -> {q(b)} [label={q(str(data['step']) + ' ' + data['actor'] + ': ' + data['text'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_graphml(g: nx.DiGraph) -> str:
    return "\n".join(nx.generate_graphml(g)) + "\n"


def to_json(trace: Trace, bound: Bound, context: Context, lasso: Lasso | None = None) -> str:
    model = trace.model
    inv = bound.invariant
    doc = {
        "format": "kvm-mmu-checker counterexample",
        "schema_version": SCHEMA_VERSION,
        "model": {
            "name": model.name,
            "components": list(model.parts),
            "fingerprint": fingerprint(model),
            "guards_off": model.guards_off(),
        },
        "spec": context.spec,
        "command": context.command,
        "invariant": {"name": inv.name, "kind": inv.kind.value, "statement": inv.statement,
                      "reference": inv.reference},
        "start": model.schema.describe(model.init),
        "steps": [
            {
                "step": n,
                "actor": a.actor,
                "action": a.key,
                "kernel": a.kernel,
                "text": a.text,
                "changes": {f.name: [f.label(old), f.label(new)] for f, old, new in trace.changes(n)},
            }
            for n, a in enumerate(trace.actions, start=1)
        ],
    }
    if lasso is not None:
        doc["cycle"] = {"who": lasso.who, "first_step": len(lasso.prefix) + 1, "steps": len(lasso.cycle)}
    return json.dumps(doc, indent=2) + "\n"


def render(fmt: str, trace: Trace, bound: Bound, context: Context, lasso: Lasso | None = None) -> str:
    if fmt == "text":
        return counterexample_text(trace, bound, context) if lasso is None else lasso_text(trace, lasso, context)
    if fmt == "json":
        return to_json(trace, bound, context, lasso)
    if fmt == "dot":
        return to_dot(trace_graph(trace, bound, lasso))
    if fmt == "graphml":
        return to_graphml(trace_graph(trace, bound, lasso))
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def write(directory: Path, name: str, formats: list[str], trace: Trace, bound: Bound,
          context: Context, lasso: Lasso | None = None) -> list[Path]:
    """Render every format first, then move the files into place; return their paths."""
    rendered = {fmt: render(fmt, trace, bound, context, lasso) for fmt in formats}
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, text in rendered.items():
        target = directory / f"{name}.{EXTENSIONS[fmt]}"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
        paths.append(target)
    return paths
