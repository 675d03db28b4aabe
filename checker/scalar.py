"""The reference engine: a textbook breadth-first search, one state at a time.

It compiles the same z3 terms to plain Python (no NumPy), keeps visited states as Python
ints in a dict (state -> depth) and walks a deque. It is the baseline the benchmarks compare the explicit
engine against, and an independent cross-check of its state counts in the tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from model.lang import Model

from .compile import SCALAR, _Emitter, _used_fields

Successors = Callable[[int], list[int]]


def compile_scalar(model: Model) -> Successors:
    """successors(state) -> next states, for a state packed into one Python int."""
    schema = model.schema
    fields = dict(schema.by_name)
    terms = [a.guard for a in model.actions] + [t for a in model.actions for _, t in a.effect]
    lines = ["def successors(s):"]
    for f in _used_fields(terms, fields):
        slot = schema.slots[f.index]
        shift = slot.word * 64 + slot.shift
        raw = f"((s >> {shift}) & {slot.mask})"
        value = f"({raw} != 0)" if f.domain.is_bool() else (f"({raw} + {f.domain.lo})" if f.domain.lo else raw)
        lines.append(f"    f{f.index} = {value}")
    lines.append("    out = []")
    emit = _Emitter(fields, "guards", SCALAR)
    for a in model.actions:
        emit.where = f"action {a.key}"
        lines.append(f"    if {emit.expr(a.guard, lambda f: f'f{f.index}')}:")
        clear, parts = 0, []
        for f, term in a.effect:
            slot = schema.slots[f.index]
            shift = slot.word * 64 + slot.shift
            clear |= slot.mask << shift
            code = emit.expr(term, lambda g: f"f{g.index}")
            offset = f" - {f.domain.lo}" if f.domain.lo else ""
            parts.append(f"(int({code}){offset}) << {shift}")
        keep = ((1 << (64 * schema.words)) - 1) & ~clear
        lines.append(f"        out.append((s & {keep}) | " + " | ".join(parts or ["0"]) + ")")
    lines.append("    return out")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines) + "\n", f"<scalar {model.name}>", "exec"), namespace)
    return namespace["successors"]  # type: ignore[return-value]


def pack_int(words: tuple[int, ...]) -> int:
    return sum(w << (64 * i) for i, w in enumerate(words))


@dataclass
class ReferenceResult:
    distinct: int
    generated: int
    depth: int
    complete: bool
    seconds: float


def textbook_bfs(model: Model, time_limit: float | None = None, max_depth: int | None = None) -> ReferenceResult:
    successors = compile_scalar(model)
    start = time.perf_counter()
    init = pack_int(model.init)
    depth = {init: 0}
    queue = deque([init])
    generated, deepest, n, cut = 1, 0, 0, False
    while queue:
        s = queue.popleft()
        d = depth[s] + 1
        if max_depth is not None and d > max_depth:
            cut = True
            continue
        for t in successors(s):
            generated += 1
            if t not in depth:
                depth[t] = d
                deepest = max(deepest, d)
                queue.append(t)
        n += 1
        if time_limit is not None and n % 4096 == 0 and time.perf_counter() - start > time_limit:
            return ReferenceResult(len(depth), generated, deepest, False, time.perf_counter() - start)
    return ReferenceResult(len(depth), generated, deepest, not cut, time.perf_counter() - start)
