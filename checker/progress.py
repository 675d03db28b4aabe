"""No-progress cycles: liveness on the explored state graph.

A PROGRESS property names, per actor, a "waiting" predicate (vCPU0 has an MMIO access
outstanding). It is broken by a lasso: a reachable cycle in which that actor waits in
every state, and which is *weakly fair*: every actor that is enabled in every state of
the cycle also takes a step in it (otherwise the cycle only shows a thread that was never
scheduled). Fairness is per process (`Action.process`): an actor's own steps, and for a
vCPU also the TDX module's answers to its SEAMCALLs, since it is blocked in them. A state
where the actor waits and nothing at all can happen counts as a cycle of length zero
(stuttering), as in TLC.

This runs after a complete breadth-first search, on the graph of every explored state:
edges are recomputed from the levels the engine kept, and the strongly connected
components of the waiting states come from networkx. An SCC contains a weakly fair
cycle exactly when each actor either steps inside it or is disabled in one of its
states; the cycle shown then passes through such a step or state for every actor.
The lasso reported has the shortest prefix (its first state is the shallowest one of
any fair component); its cycle is built from shortest paths inside the component.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx
import numpy as np

from invariants.core import Bound, Kind
from model.lang import checkpoint

from .compile import Compiled, compile_predicate
from .explicit import BLOCK, SearchResult, key_view


class GraphError(Exception):
    """The state graph does not close over the explored levels: a checker bug."""


@dataclass
class StateGraph:
    """Every explored state (global id = level offset + index) and every transition."""

    offsets: np.ndarray  # first global id of each level
    states: np.ndarray  # (n, words) uint64, in global-id order
    src: np.ndarray
    dst: np.ndarray
    action: np.ndarray

    def locate(self, gid: int) -> tuple[int, int]:
        depth = int(np.searchsorted(self.offsets, gid, side="right")) - 1
        return depth, gid - int(self.offsets[depth])


def state_graph(compiled: Compiled, result: SearchResult) -> StateGraph:
    words = compiled.words
    states = np.concatenate([lv.states for lv in result.levels])
    offsets = np.cumsum([0] + [len(lv.states) for lv in result.levels[:-1]])
    keys = key_view(states, words)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    src_parts, dst_parts, act_parts = [], [], []
    for base in range(0, len(states), BLOCK):
        checkpoint()
        for aid, idx, succ in compiled.expand(states[base:base + BLOCK]):
            succ_keys = key_view(succ, words)
            pos = np.searchsorted(sorted_keys, succ_keys)
            pos[pos == len(sorted_keys)] = 0
            if not (sorted_keys[pos] == succ_keys).all():
                raise GraphError("a successor of an explored state was never explored")
            src_parts.append(idx.astype(np.int64) + base)
            dst_parts.append(order[pos].astype(np.int64))
            act_parts.append(np.full(len(idx), aid, np.int64))
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))  # noqa: E731
    return StateGraph(offsets, states, cat(src_parts), cat(dst_parts), cat(act_parts))


@dataclass
class Lasso:
    """A reachable cycle in which `who` waits forever: `prefix`, then `cycle` repeated."""

    bound: Bound
    who: str
    prefix: list[int]  # action ids from the initial state to the cycle's first state
    cycle: list[int]  # action ids around the cycle (empty: nothing can happen any more)

    @property
    def steps(self) -> int:
        return len(self.prefix) + len(self.cycle)


def find_lassos(compiled: Compiled, result: SearchResult, bounds: Iterable[Bound]) -> list[Lasso]:
    """One lasso for each PROGRESS property that some waiting actor breaks."""
    progress = [b for b in bounds if b.kind is Kind.PROGRESS]
    if not progress:
        return []
    if not result.complete:
        raise ValueError("progress needs the whole state graph: the search must be complete")
    model = compiled.model
    graph = state_graph(compiled, result)
    actors = sorted({a.process for a in model.actions})  # weak fairness is per process
    actor_id = np.array([actors.index(a.process) for a in model.actions], np.int64)
    out: list[Lasso] = []
    for bound in progress:
        found = []
        for who, term in bound.waiting:
            waits = compile_predicate(model, f"{bound.name}[{who}]", term)(graph.states)
            lasso = _lasso(graph, waits, actor_id, len(actors))
            if lasso is not None:
                found.append((lasso[0], who, lasso[1]))
        if found:
            entry, who, cycle = min(found, key=lambda f: f[0])
            depth, index = graph.locate(entry)
            prefix = [aid for aid, _ in result.path(depth, index)]
            out.append(Lasso(bound, who, prefix, cycle))
    return out


def _lasso(g: StateGraph, waits: np.ndarray, actor_id: np.ndarray, n_actors: int) -> tuple[int, list[int]] | None:
    """(entry state, cycle's action ids) of the fair waiting cycle with the shallowest entry."""
    n = len(g.states)
    edge_actor = actor_id[g.action]
    # enabled[s, a]: actor a has some step from state s
    enabled = np.zeros((n, n_actors), dtype=bool)
    enabled[g.src, edge_actor] = True
    inside = waits[g.src] & waits[g.dst]
    src, dst, act = g.src[inside], g.dst[inside], g.action[inside]
    nodes = np.flatnonzero(waits)
    h = nx.DiGraph()
    h.add_nodes_from(nodes.tolist())
    for s, d, a in sorted(zip(src.tolist(), dst.tolist(), act.tolist(), strict=True)):
        if not h.has_edge(s, d):
            h.add_edge(s, d, action=a)
    candidates: list[tuple[int, list[int]]] = []
    stuck = np.flatnonzero(waits & ~enabled.any(axis=1))
    if len(stuck):
        candidates.append((int(stuck[0]), []))
    comp = np.full(n, -1, np.int64)
    for k, members in enumerate(nx.strongly_connected_components(h)):
        checkpoint()
        comp[list(members)] = k
    ncomp = int(comp.max()) + 1
    if ncomp:
        internal = comp[src] == comp[dst]
        isrc, idst, iact = src[internal], dst[internal], act[internal]
        size = np.bincount(comp[nodes], minlength=ncomp)
        looped = np.zeros(ncomp, dtype=bool)
        looped[comp[isrc[isrc == idst]]] = True
        cyclic = (size > 1) | looped
        steps_in = np.zeros((ncomp, n_actors), dtype=bool)
        steps_in[comp[isrc], actor_id[iact]] = True
        enabled_count = np.zeros((ncomp, n_actors), np.int64)
        np.add.at(enabled_count, comp[nodes], enabled[nodes].astype(np.int64))
        always = enabled_count == size[:, None]
        fair = cyclic & ~(always & ~steps_in).any(axis=1)
        if fair.any():
            entry_of = np.full(ncomp, n, np.int64)
            np.minimum.at(entry_of, comp[nodes], nodes)
            best = int(np.flatnonzero(fair)[np.argmin(entry_of[fair])])
            entry = int(entry_of[best])
            members = set(np.flatnonzero(comp == best).tolist())
            mine = comp[isrc] == best
            steps: dict[int, list[tuple[int, int, int]]] = {}
            for s, d, a in sorted(zip(isrc[mine].tolist(), idst[mine].tolist(), iact[mine].tolist(), strict=True)):
                steps.setdefault(int(actor_id[a]), []).append((s, d, a))
            somewhere = enabled_count[best] > 0
            candidates.append((entry, _fair_cycle(h, entry, members, steps, somewhere, enabled, actor_id)))
    return min(candidates, key=lambda c: c[0]) if candidates else None


def _fair_cycle(
    h: nx.DiGraph, entry: int, members: set[int], steps: dict[int, list[tuple[int, int, int]]],
    somewhere: np.ndarray, enabled: np.ndarray, actor_id: np.ndarray,
) -> list[int]:
    """A cycle from `entry` back to it, inside `members`, that is weakly fair: each actor
    enabled somewhere in the component steps on it, or is disabled in one of its states."""
    path: list[int] = []  # action ids
    visited = [entry]
    current = entry

    def satisfied(a: int) -> bool:
        return any(actor_id[x] == a for x in path) or any(not enabled[s, a] for s in visited)

    def walk(goal: set[int]) -> None:
        nonlocal current
        route = _bfs(h, current, goal, members)
        for u, v in pairwise(route):
            path.append(h.edges[u, v]["action"])
            visited.append(v)
        current = route[-1]

    for a in range(len(somewhere)):
        if not somewhere[a] or satisfied(a):
            continue
        if steps.get(a):
            walk({e[0] for e in steps[a]})
            step = next(e for e in steps[a] if e[0] == current)
            path.append(step[2])
            visited.append(step[1])
            current = step[1]
        else:
            walk({s for s in members if not enabled[s, a]})
    if not path:
        first = min(v for v in h.successors(entry) if v in members)
        path.append(h.edges[entry, first]["action"])
        visited.append(first)
        current = first
    walk({entry})
    return path


def _bfs(h: nx.DiGraph, start: int, goal: set[int], members: set[int]) -> list[int]:
    """The shortest route from `start` to a state of `goal`, inside `members` (ties: smallest ids)."""
    if start in goal:
        return [start]
    parent = {start: start}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in sorted(h.successors(u)):
            if v in members and v not in parent:
                parent[v] = u
                if v in goal:
                    route = [v]
                    while route[-1] != start:
                        route.append(parent[route[-1]])
                    return route[::-1]
                queue.append(v)
    raise GraphError("no route inside a strongly connected component")
