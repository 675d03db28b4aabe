"""No-progress cycles: liveness on the explored state graph.

A PROGRESS property names, per actor, a "waiting" predicate (vCPU0 has an MMIO access
outstanding). It is broken by a lasso: a reachable cycle in which that actor waits in
every state, and which is *weakly fair*: every actor that is enabled in every state of
the cycle also takes a step in it (otherwise the cycle only shows a thread that was never
scheduled). Fairness is per process (`Action.process`): an actor's own steps, and for a
vCPU also the TDX module's answers to its SEAMCALLs, since it is blocked in them. A state
where the actor waits and nothing at all can happen counts as a cycle of length zero
(stuttering), as in TLC. An action marked strong (`Action.strong`: the TDX module's
success answer, which BUSY may delay but not forever) is *strongly fair*: a cycle that
passes a state where it is enabled must take it.

This runs after a complete breadth-first search, on the graph of every explored state:
edges are recomputed from the levels the engine kept (each successor found in the
engine's visited store), and the strongly connected components of the waiting states
come from checker/scc.py, on arrays. An SCC contains a weakly fair
cycle exactly when each actor either steps inside it or is disabled in one of its
states; the cycle shown then passes through such a step or state for every actor. With
strong actions, a component where one is enabled but never taken inside loses the states
that enable it and is split again (the Streett refinement) before that test.
The lasso reported has the shortest prefix (its first state is the shallowest one of
any fair component); its cycle is built from shortest paths inside the component.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from invariants.core import Bound, Kind
from model.lang import checkpoint

from .budget import Budget
from .compile import Compiled, compile_predicate
from .explicit import BLOCK, ExplicitSearch, SearchResult
from .scc import Digraph, GraphError


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
    store = result.store
    if store is None:
        raise GraphError("the search kept no store of its states")
    states = store.states[:len(store)]  # levels are contiguous in the store: position = global id
    offsets = np.cumsum([0] + [len(lv.states) for lv in result.levels[:-1]])
    src_parts, dst_parts, act_parts = [], [], []
    for base in range(0, len(states), BLOCK):
        checkpoint()
        for aid, idx, succ in compiled.expand(states[base:base + BLOCK]):
            dst = store.find(succ)
            if (dst < 0).any():
                raise GraphError("a successor of an explored state was never explored")
            src_parts.append(idx.astype(np.int64) + base)
            dst_parts.append(dst)
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


def full_space(compiled: Compiled, result: SearchResult, bounds: Iterable[Bound], budget: Budget,
               check_deadlock: bool, workers: int = 1) -> SearchResult:
    """The search the no-progress check reads: `result`, or, when it kept one state per
    orbit (--symmetry), a search of the full space: weak fairness is per process, and a
    canonical form forgets which process is which."""
    if result.reduction is None:
        return result
    safety = [b for b in bounds if b.kind is not Kind.PROGRESS]
    return ExplicitSearch(compiled, safety, budget, check_deadlock, workers=workers).run()


def find_lassos(compiled: Compiled, result: SearchResult, bounds: Iterable[Bound]) -> list[Lasso]:
    """One lasso for each PROGRESS property that some waiting actor breaks."""
    progress = [b for b in bounds if b.kind is Kind.PROGRESS]
    if not progress:
        return []
    if not result.complete:
        raise ValueError("progress needs the whole state graph: the search must be complete")
    if result.reduction is not None:
        raise ValueError("progress needs the full state graph, not one state per orbit: see full_space()")
    model = compiled.model
    graph = state_graph(compiled, result)
    actors = sorted({a.process for a in model.actions})  # weak fairness is per process
    actor_id = np.array([actors.index(a.process) for a in model.actions], np.int64)
    strong_on = _strong_enabled(graph, [a.id for a in model.actions if a.strong])
    out: list[Lasso] = []
    for bound in progress:
        found = []
        for who, term in bound.waiting:
            waits = compile_predicate(model, f"{bound.name}[{who}]", term)(graph.states)
            lasso = _lasso(graph, waits, actor_id, len(actors), strong_on)
            if lasso is not None:
                found.append((lasso[0], who, lasso[1]))
        if found:
            entry, who, cycle = min(found, key=lambda f: f[0])
            depth, index = graph.locate(entry)
            prefix = [aid for aid, _ in result.path(depth, index)]
            out.append(Lasso(bound, who, prefix, cycle))
    return out


def _strong_enabled(g: StateGraph, strong: list[int]) -> dict[int, set[int]]:
    """For each strongly fair action, the states it is enabled in."""
    if not strong:
        return {}
    mask = np.isin(g.action, strong)
    out: dict[int, set[int]] = {a: set() for a in strong}
    for s, a in zip(g.src[mask].tolist(), g.action[mask].tolist(), strict=True):
        out[a].add(s)
    return out


def _lasso(g: StateGraph, waits: np.ndarray, actor_id: np.ndarray, n_actors: int,
           strong_on: dict[int, set[int]] | None = None) -> tuple[int, list[int]] | None:
    """(entry state, cycle's action ids) of the fair waiting cycle with the shallowest
    entry; `strong_on` gives the states where each strongly fair action is enabled."""
    strong_on = strong_on or {}
    n = len(g.states)
    edge_actor = actor_id[g.action]
    # enabled[s, a]: actor a has some step from state s
    enabled = np.zeros((n, n_actors), dtype=bool)
    enabled[g.src, edge_actor] = True
    inside = waits[g.src] & waits[g.dst]
    src, dst, act = g.src[inside], g.dst[inside], g.action[inside]
    nodes = np.flatnonzero(waits)
    h = Digraph.of(nodes, src, dst, act)
    candidates: list[tuple[int, list[int]]] = []
    stuck = np.flatnonzero(waits & ~enabled.any(axis=1))
    if len(stuck):
        candidates.append((int(stuck[0]), []))
    comp = np.full(n, -1, np.int64)
    ids, labels = h.labels()
    comp[ids] = labels
    checkpoint()
    if strong_on:
        comp = _strongly_fair(comp, src, dst, act, strong_on)
    nodes = nodes[comp[nodes] >= 0]
    ncomp = int(comp.max()) + 1
    if ncomp:
        internal = (comp[src] == comp[dst]) & (comp[src] >= 0)
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
            must = {a: [e for e in zip(isrc[mine].tolist(), idst[mine].tolist(), iact[mine].tolist(), strict=True)
                        if e[2] == a] for a, on in strong_on.items() if on & members}
            candidates.append((entry, _fair_cycle(h, entry, members, steps, somewhere, enabled, actor_id, must)))
    return min(candidates, key=lambda c: c[0]) if candidates else None


def _strongly_fair(comp: np.ndarray, src: np.ndarray, dst: np.ndarray, act: np.ndarray,
                   strong_on: dict[int, set[int]]) -> np.ndarray:
    """`comp` (a component label per state, -1 outside the waiting states) with each cyclic component
    that passes a strong action by split again (`_strongly_fair_components`); the states
    it drops get -1. Most components pass nothing by, and are found so in bulk."""
    ncomp = int(comp.max()) + 1
    labelled = comp[comp >= 0]
    internal = comp[src] == comp[dst]
    cyclic = np.bincount(labelled, minlength=ncomp) > 1
    cyclic[comp[src[internal & (src == dst)]]] = True
    missed: set[int] = set()
    for a, on in strong_on.items():
        states = np.fromiter(on, np.int64, len(on))
        enabled_in = np.unique(comp[states[comp[states] >= 0]])
        taken_in = np.unique(comp[src[internal & (act == a)]])
        missed |= set(np.setdiff1d(enabled_in[cyclic[enabled_in]], taken_in).tolist())
    out = comp.copy()
    label = ncomp
    # the edges inside each component, grouped by component
    isrc, idst, iact = src[internal], dst[internal], act[internal]
    order = np.argsort(comp[isrc], kind="stable")
    isrc, idst, iact = isrc[order], idst[order], iact[order]
    bounds = np.searchsorted(comp[isrc], np.arange(ncomp + 1))
    # the states of each component, grouped the same way (a scan of all states per
    # component would make this quadratic)
    by_comp = np.argsort(comp, kind="stable")
    node_bounds = np.searchsorted(comp[by_comp], np.arange(ncomp + 1))
    for c in sorted(missed):
        ids = by_comp[node_bounds[c]:node_bounds[c + 1]]
        members = set(ids.tolist())
        out[ids] = -1
        lo, hi = bounds[c], bounds[c + 1]
        edges = (isrc[lo:hi], idst[lo:hi], iact[lo:hi])
        for sub in _strongly_fair_components(Digraph.of(ids, *edges), members, edges, strong_on):
            out[list(sub)] = label
            label += 1
    return out


def _strongly_fair_components(h: Digraph, members: set[int], edges: tuple[np.ndarray, np.ndarray, np.ndarray],
                              strong_on: dict[int, set[int]]) -> list[set[int]]:
    """The strongly connected component `members` of `h` (whose inside `edges` are
    given), split until every strong action enabled in one of its states is taken on one
    of its edges: the states enabling one that is not are dropped and what remains is
    decomposed again. Parts without a cycle are kept as they are (a state where nothing
    can happen is judged elsewhere)."""
    src, dst, act = edges
    out: list[set[int]] = []
    work = [members]
    while work:
        checkpoint()
        part = work.pop()
        if len(part) == 1 and not h.has_loop(np.fromiter(part, np.int64, 1)):
            out.append(part)
            continue
        ids = np.fromiter(part, np.int64, len(part))
        taken = set(act[np.isin(src, ids) & np.isin(dst, ids)].tolist())
        missed = [a for a, on in strong_on.items() if on & part and a not in taken]
        if not missed:
            out.append(part)
            continue
        rest = part - set().union(*(strong_on[a] for a in missed))
        work += [set(c.tolist()) for c in h.components(np.fromiter(rest, np.int64, len(rest)))]
    return sorted(out, key=min)


def _fair_cycle(
    h: Digraph, entry: int, members: set[int], steps: dict[int, list[tuple[int, int, int]]],
    somewhere: np.ndarray, enabled: np.ndarray, actor_id: np.ndarray,
    must: dict[int, list[tuple[int, int, int]]],
) -> list[int]:
    """A cycle from `entry` back to it, inside `members`, that is weakly fair: each actor
    enabled somewhere in the component steps on it, or is disabled in one of its states;
    and strongly fair: each strong action enabled in the component (`must`, with its
    edges inside it) is taken on it."""
    path: list[int] = []  # action ids
    visited = [entry]
    current = entry

    def satisfied(a: int) -> bool:
        return any(actor_id[x] == a for x in path) or any(not enabled[s, a] for s in visited)

    def walk(goal: set[int]) -> None:
        nonlocal current
        route = h.route(current, goal, members)
        for u, v in pairwise(route):
            path.append(h.action(u, v))
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
    for a, edges in sorted(must.items()):
        if a in path:
            continue
        walk({e[0] for e in edges})
        step = next(e for e in edges if e[0] == current)
        path.append(step[2])
        visited.append(step[1])
        current = step[1]
    if not path:
        first = min(v for v in h.successors(entry)[0].tolist() if v in members)
        path.append(h.action(entry, first))
        visited.append(first)
        current = first
    walk({entry})
    return path
