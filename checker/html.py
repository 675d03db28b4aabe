"""A counterexample as one self-contained HTML page: a swimlane diagram to step through.

The page is rendered from the counterexample document (what the JSON export holds) and
needs nothing else: no network, no external scripts, styles or fonts. Python writes the
static parts (header, verdict, swimlanes, the state table at the start) so the page reads
without JavaScript; a small inline script moves the current step and fills the state
table from the document, which is embedded as JSON.

Stepping starts at step 0 (the start state) unless the URL says `#step=N`. Keys:
ArrowRight / j / n forward, ArrowLeft / k / p back, Home the start, End the last step;
clicking a step selects it. The output depends only on the document (no timestamps).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .document import own_name

__all__ = ["to_html"]


def to_html(doc: dict[str, Any]) -> str:
    """The page for one counterexample document (see `checker.document`)."""
    lanes = _lanes(doc)
    title = _title(doc, lanes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        _header(doc, title),
        _verdict(doc, lanes),
        _toolbar(doc),
        '<main id="main">',
        _swimlanes(doc, lanes),
        _state(doc),
        "</main>",
        _footer(doc),
        f'<script type="application/json" id="counterexample">{_json(doc)}</script>',
        f"<script>{_JS}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _json(doc: dict[str, Any]) -> str:
    """The document as JSON that cannot end its <script> element or open a comment in it."""
    text = json.dumps(doc, ensure_ascii=False, indent=None, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc.get("steps") or [])


def _lanes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, title) per column: the document's actors, then any actor a step names that it lacks."""
    lanes = [(str(a["id"]), str(a.get("title") or a["id"])) for a in doc.get("actors") or []]
    known = {i for i, _ in lanes}
    for s in _steps(doc):
        actor = str(s.get("actor", ""))
        if actor not in known:
            known.add(actor)
            lanes.append((actor, actor))
    return lanes


def _who(doc: dict[str, Any], lanes: list[tuple[str, str]]) -> str:
    who = str((doc.get("cycle") or doc["invariant"].get("waiting") or {}).get("who", ""))
    return dict(lanes).get(who, who)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _title(doc: dict[str, Any], lanes: list[tuple[str, str]]) -> str:
    """The subject line, worded as in the text export."""
    name = doc["invariant"]["name"]
    cycle = doc.get("cycle")
    if cycle is None:
        return f"KVM: x86/mmu: {name} violated after {_plural(len(_steps(doc)), 'step')}"
    who = _who(doc, lanes)
    if cycle.get("steps"):
        return f"KVM: x86/mmu: {name} broken: {who} waits forever in a cycle of {_plural(cycle['steps'], 'step')}"
    return f"KVM: x86/mmu: {name} broken: {who} waits forever and nothing can happen"


def _header(doc: dict[str, Any], title: str) -> str:
    scenario = doc.get("scenario") or {}
    model = doc.get("model") or {}
    out = ["<header>", f'<h1 id="title">{_e(title)}</h1>', '<dl class="meta">']
    source = scenario.get("source", "")
    name = scenario.get("name", "")
    out.append(f"<dt>Spec</dt><dd><code>{_e(source)}</code>"
               + (f' <span class="muted">({_e(name)})</span>' if name and name not in source else "") + "</dd>")
    components = ", ".join(model.get("components") or []) or "none"
    out.append(f"<dt>Model</dt><dd>components: {_e(components)}"
               f' <span class="muted">· fingerprint <code>{_e(model.get("fingerprint", ""))}</code></span></dd>')
    off = doc.get("guards_off") or []
    out.append('<dt>Guards off</dt><dd id="guards-off">')
    if not off:
        out.append("none")
    for g in off:
        out.append(f'<div class="guard"><code class="guard-name">{_e(g.get("name", ""))}</code>: '
                   f'{_e(g.get("summary", ""))}<div class="ref">Fix: {_e(g.get("reference", ""))}</div></div>')
    out.append("</dd>")
    overrides = scenario.get("guards") or {}
    if overrides:
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
        out.append(f"<dt>Overrides</dt><dd><code>{_e(shown)}</code></dd>")
    out.append(f'<dt>Reproduce</dt><dd><code id="command" class="command">{_e(doc.get("command", ""))}</code></dd>')
    out.append("</dl>")
    if scenario.get("toml"):
        out.append(f'<details><summary>Scenario TOML</summary><pre class="toml">{_e(scenario["toml"])}</pre></details>')
    for ext in scenario.get("extensions") or []:  # the patch under review, as the run loaded it
        out.append(f'<details class="extension"><summary>Patch extension <code>{_e(ext.get("name", ""))}</code> '
                   f'({_e(ext.get("via", ""))})</summary><pre class="python">{_e(ext.get("text", ""))}</pre></details>')
    if scenario.get("model"):
        model_file = scenario["model"]
        out.append(f'<details class="model-file"><summary>Model file <code>{_e(model_file.get("path", ""))}</code>'
                   f'</summary><pre class="python">{_e(model_file.get("text", ""))}</pre></details>')
    out.append("</header>")
    return "\n".join(out)


def _where(where: dict[str, Any]) -> str:
    items = "".join(f'<li><code class="f">{_e(k)}</code> = <code class="v">{_e(v)}</code></li>'
                    for k, v in where.items())
    return f'<ul class="where">{items}</ul>' if items else ""


def _verdict(doc: dict[str, Any], lanes: list[tuple[str, str]]) -> str:
    inv = doc["invariant"]
    cycle = doc.get("cycle")
    word = "Violated" if cycle is None else "Broken"
    out = [f'<section id="invariant" class="verdict {"violation" if cycle is None else "cycle"}">',
           f'<h2>{word}: <code class="inv-name">{_e(inv["name"])}</code>'
           f' <span class="kind">{_e(inv.get("kind", ""))}</span></h2>',
           f'<p class="statement">{_e(inv.get("statement", ""))}</p>',
           f'<p class="ref">Reference: {_e(inv.get("reference", ""))}</p>']
    failing = inv.get("failing")
    waiting = inv.get("waiting")
    if failing is not None:
        out.append('<div class="label">Failing part (z3), in the state after the last step:</div>')
        out.append(f'<pre class="clause">{_e(failing.get("clause", ""))}</pre>')
        if failing.get("fails_at"):
            out.append(f'<div class="label">fails at: <code class="fails-at">{_e(failing["fails_at"])}</code></div>')
        out.append(_where(failing.get("where") or {}))
    elif waiting is not None:
        who = _who(doc, lanes)
        steps = int((cycle or {}).get("steps", 0))
        where = "every state of the cycle" if steps else "the state it is stuck in"
        out.append(f'<div class="label">{_e(who)} waits in {where}:</div>')
        out.append(f'<pre class="clause">{_e(waiting.get("predicate", ""))}</pre>')
        first = int((cycle or {}).get("first_step", 1))
        out.append(f'<div class="label">where, {_e(_after(first - 1))}:</div>')
        out.append(_where(waiting.get("where") or {}))
    out.append("</section>")
    return "\n".join(out)


def _after(n: int) -> str:
    return f"after step {n}" if n else "at the start"


def _toolbar(doc: dict[str, Any]) -> str:
    total = len(_steps(doc))
    return "\n".join([
        '<nav id="toolbar" aria-label="stepping">',
        '<button type="button" id="first" title="start (Home)">« start</button>',
        '<button type="button" id="prev" title="back (ArrowLeft, k, p)">‹ back</button>',
        '<button type="button" id="next" title="forward (ArrowRight, j, n)">next ›</button>',
        '<button type="button" id="last" title="last step (End)">last »</button>',
        f'<span id="status" role="status">step 0 of {total}</span>',
        '<span id="current" class="current-text">the start state</span>',
        '<span class="keys">keys: <kbd>→</kbd> <kbd>j</kbd> <kbd>n</kbd> forward · '
        '<kbd>←</kbd> <kbd>k</kbd> <kbd>p</kbd> back · <kbd>Home</kbd> <kbd>End</kbd> · click a step</span>',
        "</nav>",
        '<noscript><p class="note">Stepping needs JavaScript. Without it, the swimlanes list what each step'
        " changes and the state table shows the start state.</p></noscript>",
    ])


def _swimlanes(doc: dict[str, Any], lanes: list[tuple[str, str]]) -> str:
    steps = _steps(doc)
    cycle = doc.get("cycle")
    first = int(cycle["first_step"]) if cycle else 0
    last_cycle = first + int(cycle.get("steps", 0)) - 1 if cycle else -1
    index = {a: i for i, (a, _) in enumerate(lanes)}
    width = len(lanes)
    out = ['<section id="lanes-panel" aria-label="swimlanes"><div class="lanes-scroll">',
           f'<table id="lanes" class="lanes" style="min-width: {3 + 15 * width}rem">',
           '<colgroup><col class="n-col">' + '<col class="lane-col">' * width + "</colgroup>",
           '<thead><tr><th class="n" title="step">n</th>']
    for i, (actor, title) in enumerate(lanes, start=1):
        out.append(f'<th class="lane-head lane-{(i - 1) % 6}" data-actor="{_e(actor)}" title="{_e(actor)}">'
                   f'<span class="lane-no">{i}</span> <span class="lane-title">{_e(title)}</span></th>')
    out.append("</tr></thead><tbody>")
    out.append(f'<tr id="step-0" class="step start current" data-step="0"><td class="n">0</td>'
               f'<td class="startcell" colspan="{max(width, 1)}">start state</td></tr>')
    seen: dict[str, int] = {}
    for s in steps:
        n = int(s["step"])
        actor = str(s.get("actor", ""))
        seen[actor] = seen.get(actor, 0) + 1
        lane = index[actor]
        tag = f"{lane + 1}.{seen[actor]}"
        if cycle and n == first:
            out.append(_marker("cycle-start", "cycle-mark", width,
                               f"↻ cycle: steps {first}–{last_cycle} repeat forever; {_who(doc, lanes)} waits"))
        in_cycle = first <= n <= last_cycle
        cls = "step in-cycle" if in_cycle else "step"
        out.append(f'<tr id="step-{n}" class="{cls}" data-step="{n}"><td class="n">{n}</td>')
        for j in range(width):
            if j != lane:
                out.append('<td class="lane"></td>')
                continue
            out.append(f'<td class="lane act lane-{lane % 6}">{_box(s, tag, lanes[lane][1])}</td>')
        out.append("</tr>")
        if cycle and n == last_cycle:
            out.append(_marker("cycle-end", "cycle-mark", width, f"↺ back to the state {_after(first - 1)}"))
    if cycle and not cycle.get("steps"):
        out.append(_marker("stuck", "cycle-mark", width,
                           f"■ stuck: no action is enabled {_after(first - 1)}; {_who(doc, lanes)} waits forever"))
    if cycle is None:
        failing = doc["invariant"].get("failing") or {}
        what = failing.get("fails_at") or failing.get("clause", "")
        out.append(_marker("verdict", "verdict-mark", width,
                           f"✗ {doc['invariant']['name']} is false {_after(len(steps))}: {what}"))
    out.append("</tbody></table></div></section>")
    return "\n".join(out)


def _marker(ident: str, cls: str, width: int, text: str) -> str:
    return f'<tr id="{ident}" class="{cls}"><td class="n"></td><td colspan="{max(width, 1)}">{_e(text)}</td></tr>'


def _box(step: dict[str, Any], tag: str, lane_title: str) -> str:
    """One step in its lane: the numbers, what happens, the kernel function, the fields it changed."""
    text = str(step.get("text") or step.get("action", ""))
    kernel = str(step.get("kernel", ""))
    where = str(step.get("where") or (kernel + "()" if kernel else ""))  # file:function (schema 3)
    out = [f'<div class="box" title="{_e(lane_title)}: {_e(step.get("action", ""))}">',
           f'<div class="what"><span class="tag">{_e(tag)}</span> <code class="text">{_e(text)}</code></div>']
    if where and (":" in where or kernel not in text):
        out.append(f'<div class="kernel">in <code>{_e(where)}</code></div>')
    changes = step.get("changes") or {}
    if changes:
        out.append('<ul class="changes">')
        for f, (old, new) in changes.items():
            out.append(f'<li title="{_e(f)}"><code class="f">{_e(own_name(f, str(step.get("actor", ""))))}</code> '
                       f'<code class="old">{_e(old)}</code> → <code class="new">{_e(new)}</code></li>')
        out.append("</ul>")
    out.append("</div>")
    return "".join(out)


def _groups(fields: list[str]) -> list[tuple[str, list[str]]]:
    """Fields by family (`name[label]` share `name`), in the order the families first appear."""
    groups: dict[str, list[str]] = {}
    for f in fields:
        groups.setdefault(f.split("[")[0], []).append(f)
    return list(groups.items())


def _state(doc: dict[str, Any]) -> str:
    """The state table at the start; the script rewrites values and classes for the current step."""
    start = doc.get("start") or {}
    fields = list(doc.get("fields") or start)
    inv = doc["invariant"]
    read = set((inv.get("failing") or inv.get("waiting") or {}).get("where") or {})
    touched = {f for s in _steps(doc) for f in s.get("changes") or {}} | read
    out = ['<section id="state-panel" aria-label="state">',
           '<div class="state-head"><h2>State <span id="state-when">at the start</span></h2>'
           '<label><input type="checkbox" id="only-touched"> only fields the trace changes or the verdict reads'
           "</label></div>",
           '<table id="state"><tbody>']
    for name, family in _groups(fields):
        still = "" if any(f in touched for f in family) else " still"
        out.append(f'<tr class="family{still}" data-family="{_e(name)}"><th><code>{_e(name)}</code></th><td>')
        for f in family:
            label = f[len(name):]
            if label.startswith("[") and label.endswith("]"):
                label = label[1:-1]
            cls = "cell" + (" read" if f in read else "") + ("" if f in touched else " still")
            out.append(f'<span class="{cls}" data-field="{_e(f)}">'
                       + (f'<span class="lbl">{_e(label)}</span>' if label else "")
                       + '<code class="old"></code><span class="arrow">→</span>'
                       + f'<code class="val">{_e(start.get(f, ""))}</code></span>')
        out.append("</td></tr>")
    out.append("</tbody></table>")
    out.append('<p class="legend"><span class="cell changed">changed by this step</span> '
               '<span class="cell read">read by the verdict</span> '
               '<span class="cell failing">its value when the verdict fails</span></p>')
    out.append("</section>")
    return "\n".join(out)


def _footer(doc: dict[str, Any]) -> str:
    return (f'<footer>{_e(doc.get("format", ""))}, schema {_e(doc.get("schema_version", ""))}'
            f' · model {_e((doc.get("model") or {}).get("name", ""))}</footer>')


_CSS = """
:root { --bg: #f7f7f4; --fg: #1d1d1f; --muted: #6b6b70; --line: #d6d6d0; --card: #fff;
  --cur: #fff2b3; --chg: #fff7d1; --red: #c0262d; --cyc: #7a4fd0; --cycbg: #f3eefc;
  --mono: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; --bar: 2.6rem; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
code, pre, kbd { font-family: var(--mono); font-size: 0.92em; }
header, .verdict, footer, .note { margin: 0 1rem; }
h1 { font-size: 1.2rem; margin: 0.8rem 0 0.4rem; overflow-wrap: anywhere; }
h2 { font-size: 1rem; margin: 0 0 0.3rem; }
.muted, .ref, .kernel, footer, .keys { color: var(--muted); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 0.8rem; margin: 0 0 0.4rem; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
.guard + .guard { margin-top: 0.25rem; }
.guard-name { font-weight: 600; }
.ref { font-size: 0.9em; }
.command { background: #ecece6; padding: 0.05rem 0.3rem; border-radius: 3px; user-select: all; }
details { margin-bottom: 0.5rem; }
summary { cursor: pointer; color: var(--muted); }
pre.toml { background: var(--card); border: 1px solid var(--line); padding: 0.5rem; overflow: auto; max-height: 20rem; }
.verdict { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--red);
  padding: 0.5rem 0.8rem; margin-bottom: 0.6rem; }
.verdict.cycle { border-left-color: var(--cyc); }
.verdict .inv-name { color: var(--red); font-size: 1.05em; }
.verdict.cycle .inv-name { color: var(--cyc); }
.kind { font-size: 0.75em; font-weight: 600; color: var(--muted); border: 1px solid var(--line);
  border-radius: 3px; padding: 0 0.3rem; vertical-align: middle; }
.statement { margin: 0.2rem 0; }
.verdict p { margin: 0.15rem 0; }
.label { margin-top: 0.3rem; font-weight: 600; }
pre.clause { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.2rem 0; padding: 0.3rem 0.5rem;
  background: #faf8f8; border: 1px solid #eee2e2; max-height: 9rem; overflow: auto; }
.fails-at { color: var(--red); }
ul.where { list-style: none; display: flex; flex-wrap: wrap; gap: 0.1rem 1.4rem; margin: 0.2rem 0 0; padding: 0; }
ul.where .v { color: var(--red); font-weight: 600; }
.verdict.cycle ul.where .v { color: var(--cyc); }
#toolbar { position: sticky; top: 0; z-index: 5; display: flex; align-items: center; gap: 0.4rem;
  min-height: var(--bar); padding: 0.3rem 1rem; background: #e9e9e3; border-bottom: 1px solid var(--line);
  flex-wrap: wrap; }
#toolbar button { font: inherit; min-width: 2rem; padding: 0.1rem 0.4rem; cursor: pointer;
  background: var(--card); border: 1px solid #bbb; border-radius: 4px; }
#toolbar button:disabled { opacity: 0.4; cursor: default; }
#status { font-weight: 700; font-variant-numeric: tabular-nums; min-width: 7rem; }
.current-text { font-family: var(--mono); font-size: 0.9em; flex: 1 1 20rem; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.keys { font-size: 0.85em; }
kbd { border: 1px solid #bbb; border-bottom-width: 2px; border-radius: 3px; padding: 0 0.25rem; background: #fff; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(20rem, 2fr); gap: 0.8rem;
  padding: 0.6rem 1rem; align-items: start; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
.lanes-scroll { overflow-x: auto; background: var(--card); border: 1px solid var(--line); }
table.lanes { border-collapse: collapse; table-layout: fixed; width: 100%; }
.n-col { width: 3rem; }
table.lanes th { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 2px solid #888; background: #f0f0ea; }
table.lanes th.lane-head { border-left: 1px solid var(--line); }
.lane-no { display: inline-block; min-width: 1.3rem; text-align: center; border-radius: 3px; color: #fff;
  font-size: 0.8em; background: var(--lane); }
table.lanes td { vertical-align: top; padding: 0.25rem 0.4rem; border-left: 1px dashed var(--line); }
table.lanes td.n { border-left: 0; text-align: right; color: var(--muted); font-variant-numeric: tabular-nums;
  padding-right: 0.5rem; }
tr.step { cursor: pointer; scroll-margin-top: calc(var(--bar) + 0.5rem); }
tr.step:hover td { background: #f4f4ef; }
tr.step.in-cycle td { background: var(--cycbg); }
tr.step.in-cycle td.n { border-left: 4px solid var(--cyc); color: var(--cyc); }
tr.step.current td, tr.step.current:hover td { background: var(--cur); }
tr.step.current td.n { color: var(--fg); font-weight: 700; }
td.startcell { color: var(--muted); font-style: italic; }
.lane-0 { --lane: #2f6db5; } .lane-1 { --lane: #2e8b57; } .lane-2 { --lane: #b5652f; }
.lane-3 { --lane: #8a3fb5; } .lane-4 { --lane: #2f9aa6; } .lane-5 { --lane: #a6852f; }
.box { background: var(--card); border: 1px solid var(--line); border-left: 3px solid var(--lane);
  border-radius: 3px; padding: 0.2rem 0.4rem; }
.tag { font-size: 0.8em; font-weight: 700; color: var(--lane); margin-right: 0.2rem; }
.what .text { overflow-wrap: anywhere; }
.kernel { font-size: 0.85em; }
ul.changes { list-style: none; margin: 0.15rem 0 0; padding: 0 0 0 0.6rem; font-size: 0.82em;
  border-left: 1px solid #e4e4de; }
ul.changes li { overflow-wrap: anywhere; }
ul.changes .f { color: #444; }
ul.changes .old { color: var(--muted); }
ul.changes .new { font-weight: 600; }
tr.cycle-mark td, tr.verdict-mark td { border-left: 0; font-weight: 600; padding: 0.2rem 0.5rem; }
tr.cycle-mark td:not(.n) { color: var(--cyc); background: var(--cycbg); border-top: 1px solid #d9ccf2;
  border-bottom: 1px solid #d9ccf2; }
tr.verdict-mark td:not(.n) { color: var(--red); overflow-wrap: anywhere; font-family: var(--mono); font-size: 0.9em; }
#state-panel { position: sticky; top: calc(var(--bar) + 0.6rem); max-height: calc(100vh - var(--bar) - 1.2rem);
  overflow: auto; background: var(--card); border: 1px solid var(--line); padding: 0.4rem 0.6rem; }
.state-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.2rem 1rem; }
.state-head label { font-size: 0.85em; color: var(--muted); }
#state { border-collapse: collapse; width: 100%; }
#state th { text-align: left; font-weight: normal; vertical-align: top; padding: 0.2rem 0.6rem 0.2rem 0;
  white-space: nowrap; }
#state td { padding: 0.1rem 0; }
#state tr + tr th, #state tr + tr td { border-top: 1px solid #eeeee8; }
#state tr.changed th code { font-weight: 700; }
#state.only-touched .still { display: none; }
.cell { display: inline-flex; align-items: baseline; gap: 0.25rem; margin: 0.1rem 0.35rem 0.1rem 0;
  padding: 0 0.3rem; border: 1px solid transparent; border-radius: 3px; }
.cell .lbl { color: var(--muted); font-size: 0.8em; }
.cell .val { font-family: var(--mono); }
.cell .old:empty { display: none; }
.cell .old { color: var(--muted); text-decoration: line-through; }
.cell:not(.changed) .arrow { display: none; }
.cell.changed { background: var(--chg); border-color: #e3c65a; }
.cell.changed .val { font-weight: 700; }
.cell.read { border-style: dashed; border-color: #e0a0a3; }
.cell.failing { border: 1px solid var(--red); background: #fdeced; }
.cell.failing .val { color: var(--red); font-weight: 700; }
.legend { font-size: 0.82em; color: var(--muted); margin: 0.5rem 0 0; }
.note { background: #fff3cd; border: 1px solid #e3c65a; padding: 0.3rem 0.6rem; }
footer { font-size: 0.8em; padding: 0.3rem 0 1rem; }
"""

_JS = """
(() => {
  "use strict";
  const doc = JSON.parse(document.getElementById("counterexample").textContent);
  const steps = doc.steps || [];
  const last = steps.length;
  const inv = doc.invariant || {};
  const cycle = doc.cycle || null;
  // The state after each step, as Maps (field names are data, not object keys to trust).
  const states = [new Map(Object.entries(doc.start || {}))];
  for (const s of steps) {
    const next = new Map(states[states.length - 1]);
    for (const [f, change] of Object.entries(s.changes || {})) next.set(f, change[1]);
    states.push(next);
  }
  // The fields the verdict reads fail in the final state; a cycle's are read where it closes.
  const verdictAt = new Set(cycle ? [cycle.first_step - 1, last] : [last]);
  const rows = Array.from(document.querySelectorAll("tr.step"));
  const cells = Array.from(document.querySelectorAll("#state [data-field]"));
  const families = Array.from(document.querySelectorAll("#state tr.family"));
  const status = document.getElementById("status");
  const current = document.getElementById("current");
  const when = document.getElementById("state-when");
  const buttons = ["first", "prev", "next", "last"].map((id) => document.getElementById(id));
  let at = 0;

  function describe(n) {
    if (n === 0) return "the start state";
    const row = document.getElementById("step-" + n);
    const tag = row ? row.querySelector(".tag") : null;
    const box = row ? row.querySelector(".box") : null;
    const lane = box ? box.closest("td") : null;
    const head = lane ? document.querySelectorAll("#lanes thead th")[lane.cellIndex] : null;
    const who = head ? head.querySelector(".lane-title").textContent : steps[n - 1].actor;
    return "after " + who + " " + (tag ? tag.textContent : "") + ": " + (steps[n - 1].text || steps[n - 1].action);
  }

  function show(n, user) {
    if (!Number.isInteger(n)) n = 0;
    at = Math.max(0, Math.min(last, n));
    for (const row of rows) row.classList.toggle("current", Number(row.dataset.step) === at);
    status.textContent = "step " + at + " of " + last;
    current.textContent = describe(at);
    when.textContent = at === 0 ? "at the start" : "after step " + at;
    const changes = at > 0 ? steps[at - 1].changes || {} : {};
    const state = states[at];
    const verdict = verdictAt.has(at);
    for (const cell of cells) {
      const f = cell.dataset.field;
      const changed = Object.prototype.hasOwnProperty.call(changes, f);
      cell.querySelector(".val").textContent = state.has(f) ? String(state.get(f)) : "";
      cell.querySelector(".old").textContent = changed ? String(changes[f][0]) : "";
      cell.classList.toggle("changed", changed);
      cell.classList.toggle("failing", verdict && cell.classList.contains("read"));
    }
    for (const fam of families) {
      fam.classList.toggle("changed", fam.querySelector(".cell.changed") !== null);
      fam.classList.toggle("failing", fam.querySelector(".cell.failing") !== null);
    }
    buttons[0].disabled = buttons[1].disabled = at === 0;
    buttons[2].disabled = buttons[3].disabled = at === last;
    if (user) {
      const row = document.getElementById("step-" + at);
      if (row) row.scrollIntoView({ block: "nearest" });
      try { history.replaceState(null, "", "#step=" + at); } catch (e) { /* some file:// setups refuse */ }
    }
  }

  function fromHash() {
    const m = /^#step=(\\d+)$/.exec(location.hash);
    return m ? Number(m[1]) : null;
  }

  const keys = { ArrowRight: 1, j: 1, n: 1, ArrowLeft: -1, k: -1, p: -1 };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
              (t.tagName === "INPUT" && t.type !== "checkbox"))) return;
    if (e.key in keys) show(at + keys[e.key], true);
    else if (e.key === "Home") show(0, true);
    else if (e.key === "End") show(last, true);
    else return;
    e.preventDefault();
  });
  for (const row of rows) {
    row.addEventListener("click", () => {
      // Selecting text to copy it is not a request to move.
      if (String(window.getSelection()).length === 0) show(Number(row.dataset.step), true);
    });
  }
  buttons[0].addEventListener("click", () => show(0, true));
  buttons[1].addEventListener("click", () => show(at - 1, true));
  buttons[2].addEventListener("click", () => show(at + 1, true));
  buttons[3].addEventListener("click", () => show(last, true));
  document.getElementById("only-touched").addEventListener("change", (e) => {
    document.getElementById("state").classList.toggle("only-touched", e.target.checked);
  });
  window.addEventListener("hashchange", () => {
    const n = fromHash();
    if (n !== null && n !== at) show(n, false);
  });
  show(fromHash() ?? 0, false);
})();
"""
