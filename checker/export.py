"""Counterexample files: mail text, versioned JSON, the trace graph (DOT, GraphML, SVG),
the browser viewer (HTML) and a regression test (pytest).

The trace graph is a networkx DiGraph: one node per state (with the fields its step
changed), one edge per step (labelled with the actor and the action). On request it also
holds the explored neighbourhood of the trace: every other choice at each state of the
trace, followed for up to k steps, so a reviewer sees where the race branches.

Files are named `DIR/<name>.<ext>` and written through temporary files after every
format has been rendered, so a failed export leaves no half-written output.
"""

from __future__ import annotations

import json
import pprint
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from invariants import Bound, Kind
from model.lang import Model, checkpoint
from model.lang.deadline import remaining

from .budget import Budget
from .compile import Compiled, compile_predicate
from .diagram import wrap
from .document import Context, document
from .explicit import BLOCK
from .files import write_all
from .html import to_html
from .progress import Lasso
from .report import counterexample_text, lasso_text
from .text import printable, shell_word
from .trace import Trace

FORMATS = ("text", "json", "dot", "graphml", "html", "pytest", "svg")
DEFAULT_FORMATS = ("text", "json", "dot", "graphml", "html", "pytest")
EXTENSIONS = {"text": "txt", "json": "json", "dot": "dot", "graphml": "graphml", "html": "html",
              "pytest": "py", "svg": "svg"}
GRAPHVIZ_HINT = ("Graphviz is not installed: install it (Debian/Ubuntu: apt install graphviz; "
                 "Fedora: dnf install graphviz; macOS: brew install graphviz), or render the .dot "
                 "file yourself with: dot -Tsvg FILE.dot -o FILE.svg")


class ExportError(Exception):
    """An export that cannot be written (a format needs a tool that is missing)."""


def graphviz() -> str | None:
    return shutil.which("dot")


@dataclass
class Neighbourhood:
    """States around a trace: `nodes` maps a state to its node id, `edges` are
    (source id, target id, action id) for every step explored from them."""

    depth: int
    nodes: dict[tuple[int, ...], str]
    parents: dict[str, str]
    edges: list[tuple[str, str, int]]


def explore_around(compiled: Compiled, trace: Trace, depth: int, budget: Budget | None = None,
                   progress: Callable[[int, int, int], None] | None = None) -> Neighbourhood:
    """Every step from each state of the trace, and from the states they reach, to `depth`
    (or until nothing new is reached). Its states count against the budget's `max_states`,
    checked, with the time limit, after every block; `progress(k, states, edges)` follows it."""
    schema = trace.model.schema
    nodes: dict[tuple[int, ...], str] = {}
    for i, values in enumerate(trace.states):
        nodes.setdefault(tuple(schema.pack(values)), f"s{i}")
    parents: dict[str, str] = {}
    edges: list[tuple[str, str, int]] = []
    frontier = list(nodes)
    for k in range(1, depth + 1):
        if not frontier:
            break
        following: list[tuple[int, ...]] = []
        for base in range(0, len(frontier), BLOCK):
            block = frontier[base:base + BLOCK]
            steps = [(int(i), aid, tuple(int(w) for w in row))
                     for aid, idx, succ in compiled.expand(np.array(block, dtype=np.uint64))
                     for i, row in zip(idx, succ, strict=True)]
            steps.sort(key=lambda s: (s[0], s[1]))  # each state's steps in action order, as on the trace
            for i, aid, succ in steps:
                words = block[i]
                if succ not in nodes:
                    nodes[succ] = f"n{len(parents)}"
                    parents[nodes[succ]] = nodes[words]
                    following.append(succ)
                edges.append((nodes[words], nodes[succ], aid))
            if budget is not None:
                budget.check("exploring the neighbourhood", len(nodes))
            if progress is not None:
                progress(k, len(nodes), len(edges))
        frontier = following
    return Neighbourhood(depth, nodes, parents, sorted(set(edges), key=_edge_order))


def _edge_order(edge: tuple[str, str, int]) -> tuple[int, int, int, int, int]:
    def num(node: str) -> tuple[int, int]:
        return (0 if node[0] == "s" else 1, int(node[1:]))

    return (*num(edge[0]), *num(edge[1]), edge[2])


def trace_graph(trace: Trace, bound: Bound, lasso: Lasso | None = None,
                around: Neighbourhood | None = None) -> nx.DiGraph:
    """The trace as a graph; a lasso's last step goes back to the state its cycle starts in."""
    model = trace.model
    g = nx.DiGraph(invariant=bound.name, model=model.name)
    last = len(trace.states) - 1
    back = len(lasso.prefix) if lasso is not None and lasso.cycle else None
    for i in range(len(trace.states) - (back is not None)):
        changes = trace.changes(i) if i else []
        g.add_node(
            f"s{i}",
            step=i,
            on_trace=True,
            changes="; ".join(f"{f.name}: {f.label(a)} -> {f.label(b)}" for f, a, b in changes),
            violated=(i == last) if lasso is None else (back is not None and i >= back),
        )
    for n, action in enumerate(trace.actions, start=1):
        target = f"s{back}" if back is not None and n == last else f"s{n}"
        g.add_edge(f"s{n - 1}", target, step=n, on_trace=True, actor=action.actor, action=action.key,
                   kernel=action.kernel, text=action.text)
    if around is not None:
        _add_neighbourhood(g, trace, bound, around)
    return g


def _add_neighbourhood(g: nx.DiGraph, trace: Trace, bound: Bound, around: Neighbourhood) -> None:
    model = trace.model
    schema = model.schema
    g.graph["neighbourhood"] = around.depth
    values = {node: schema.unpack(words) for words, node in around.nodes.items()}
    broken = _violated(model, bound, around)
    for node, parent in around.parents.items():
        before, after = values[parent], values[node]
        changes = [(f, a, b) for f, a, b in zip(schema.fields, before, after, strict=True) if a != b]
        g.add_node(node, step=-1, on_trace=False,
                   changes="; ".join(f"{f.name}: {f.label(a)} -> {f.label(b)}" for f, a, b in changes),
                   violated=node in broken)
    for src, dst, aid in around.edges:
        if g.has_edge(src, dst):  # the trace's own step, or a second action between the same states
            continue
        action = model.actions[aid]
        g.add_edge(src, dst, step=-1, on_trace=False, actor=action.actor, action=action.key,
                   kernel=action.kernel, text=action.text)


def _violated(model: Model, bound: Bound, around: Neighbourhood) -> set[str]:
    """The neighbourhood's states that break the invariant, by its compiled predicate
    (which a property test keeps equal to z3's verdict), all states at once."""
    if bound.kind is not Kind.ALWAYS or not around.nodes:
        return set()
    holds = compile_predicate(model, bound.name, bound.term)(np.array(list(around.nodes), dtype=np.uint64))
    return {node for node, ok in zip(around.nodes.values(), holds, strict=True) if not ok}


def to_dot(g: nx.DiGraph) -> str:
    def q(s: object) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {q(g.graph.get('invariant', 'trace'))} {{", "  node [shape=box, fontname=monospace];",
             "  edge [fontname=monospace];"]
    for node, data in g.nodes(data=True):
        label = f"{node}" + (f"\n{data['changes'].replace('; ', chr(10))}" if data["changes"] else "")
        style = ", color=red, penwidth=2" if data["violated"] else ""
        if not data["on_trace"]:
            style += ", style=dashed, fontcolor=gray40, color=" + ("red" if data["violated"] else "gray60")
        lines.append(f"  {q(node)} [label={q(label)}{style}];")
    for a, b, data in g.edges(data=True):
        if data["on_trace"]:
            lines.append(f"  {q(a)} -> {q(b)} [label={q(str(data['step']) + ' ' + data['actor'] + ': ' + data['text'])}"
                         ", penwidth=2];")
        else:
            lines.append(f"  {q(a)} -> {q(b)} [label={q(data['actor'] + ': ' + data['text'])}, style=dashed, "
                         "color=gray60, fontcolor=gray40];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_graphml(g: nx.DiGraph) -> str:
    return "\n".join(nx.generate_graphml(g)) + "\n"


def to_svg(dot: str) -> str:
    exe = graphviz()
    if exe is None:
        raise ExportError(GRAPHVIZ_HINT)
    left = remaining()
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, check=False,
                              timeout=300 if left is None else max(left, 0.1))
    except subprocess.TimeoutExpired:
        checkpoint()  # the run's deadline, if that is what ran out
        raise ExportError("Graphviz's dot took more than 300 s") from None
    if done.returncode != 0:
        raise ExportError(f"Graphviz's dot failed: {done.stderr.strip()}")
    return done.stdout


def to_json(doc: dict[str, object]) -> str:
    return json.dumps(doc, indent=2) + "\n"


LINE_LENGTH = 120  # pyproject.toml's ruff line-length: the regression file must lint clean in tests/


def _literal(doc: dict[str, object]) -> str:
    """The document as a Python literal within the line length.

    pprint cuts strings only at spaces, so a path or a long token can still overrun. ruff lets a
    line that is a single word pass; any other is data, not code, and is marked so rather than
    cut inside the string."""
    lines = pprint.pformat(doc, width=100, sort_dicts=False).splitlines()
    return "\n".join(f"{line}  # noqa: E501" if len(line) > LINE_LENGTH and len(line.split()) > 1 else line
                     for line in lines)


def python_docstring(text: str) -> str:
    """`text` as a triple-quoted literal that data cannot close or break: quotes and
    backslashes escaped, control and format characters written as escapes."""
    body = "\n".join(printable(line.replace("\\", "\\\\").replace('"', '\\"')) for line in text.split("\n"))
    return f'"""{body}\n"""'


def to_pytest(doc: dict[str, object], name: str) -> str:
    """A test file that replays the counterexample and asserts that it still reproduces.

    Every string taken from the document or the file name is written with repr() or as an
    escaped docstring, and the test's name keeps only ASCII letters, digits and '_'."""
    inv = doc["invariant"]["name"]  # type: ignore[index]
    what = "no-progress cycle" if doc["result"] == "cycle" else "violation"
    test = "test_" + re.sub(r"[^0-9A-Za-z_]", "_", name) + "_still_reproduces"
    # a path too long for a line stands alone on one, which ruff accepts as a single word
    command = wrap(f"Exported by: {doc['command']}", 96, rest="    ")
    docstring = python_docstring("\n".join([
        f"Regression test: the {what} of {inv} in {doc['scenario']['name']}.",  # type: ignore[index]
        "",
        *command,
        "It replays the counterexample below against the current model and asserts that every",
        f"step still applies and {inv} still breaks; it fails, naming the first step that no",
        "longer applies, once the model rules the trace out.",
        f"Run it with: python -m pytest {shell_word(name + '.py')}",
    ]))
    return f'''{docstring}

from checker.replay import replay_document

COUNTEREXAMPLE = {_literal(doc)}


def {test}() -> None:
    replay = replay_document(COUNTEREXAMPLE, {name + ".py"!r})
    stopped = replay.stopped_at
    assert stopped is None, f"step {{stopped.step}} ({{stopped.text}}) no longer applies: {{stopped.detail}}"
    assert replay.reproduces, "\\n".join(replay.verdict)
'''


def render(fmt: str, doc: dict[str, object], trace: Trace, bound: Bound, context: Context, name: str,
           lasso: Lasso | None = None, around: Neighbourhood | None = None) -> str:
    """One format of the counterexample whose document is `doc`."""
    checkpoint()
    if fmt == "text":
        return counterexample_text(trace, bound, context) if lasso is None else lasso_text(trace, lasso, context)
    if fmt == "json":
        return to_json(doc)
    if fmt == "html":
        return to_html(doc)
    if fmt == "pytest":
        return to_pytest(doc, name)
    if fmt in ("dot", "svg"):
        dot = to_dot(trace_graph(trace, bound, lasso, around))
        return dot if fmt == "dot" else to_svg(dot)
    if fmt == "graphml":
        return to_graphml(trace_graph(trace, bound, lasso, around))
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def write(directory: Path, name: str, formats: list[str], trace: Trace, bound: Bound,
          context: Context, lasso: Lasso | None = None, around: Neighbourhood | None = None) -> list[Path]:
    """Render every format, then write them all or none (files.write_all); their paths."""
    doc = document(trace, bound, context, lasso)
    rendered = {f"{name}.{EXTENSIONS[fmt]}": render(fmt, doc, trace, bound, context, name, lasso, around)
                for fmt in formats}
    return write_all(directory, rendered)
