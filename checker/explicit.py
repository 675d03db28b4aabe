"""The explicit engine: breadth-first search over packed states, level by level.

Each level is a run of distinct packed states in the visited store (checker/store.py),
with, for every state, the index of its parent in the previous level and the id of the
action that produced it; nothing else is kept, so a counterexample is rebuilt by walking
parent links and replaying the model. Duplicate detection is exact (every word of a
packed state is compared). Because the search is breadth-first and each level is checked
whole before the next is built, the first violation found is at the smallest possible
depth, and the figures reported (distinct, generated) do not depend on how levels are
split into blocks. Among several ways to reach a state, the parent kept is the one with
the smallest (parent index, action id), and a level's states are sorted by key.

Budgets are checked after every block. When one runs out, the level being built keeps
what was found so far, cut to exactly `max_states` stored states (the smallest keys),
and is checked like any other, so every state counted was checked.

With a `reduction` (--symmetry, checker/symmetry.py), every successor is replaced by its
canonical form before it is stored, so a level holds one state per orbit; `distinct` is
then the full space's count (the orbits' sizes summed) and `orbits` what was stored.

With `coverage`, the search also counts, per action, the expanded states whose guard
holds (`Enabled`, read by checker/coverage.py), and expands the level at the depth bound
whole (its successors only counted, never stored) instead of stopping at its first new
state, so that every stored state is expanded. Without it the loop does no more work
than one test per block.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from invariants.core import Bound, Kind

from .budget import Budget
from .compile import Compiled, compile_predicate
from .store import StateStore
from .symmetry import Reduction

BLOCK = 1 << 16  # states expanded per vectorised call
Expanded = list[tuple[int, np.ndarray, np.ndarray]]  # what Compiled.expand returns for a block


@dataclass
class Successors:
    """One expanded block: per action (id, indices in the block, successors), and the same
    successors in one array (canonical forms, under symmetry) with their parents'
    indices in the block and their action ids."""

    out: Expanded
    states: np.ndarray
    parent: np.ndarray
    action: np.ndarray


@dataclass
class Level:
    states: np.ndarray  # (n, words) uint64, distinct, sorted by key
    parent: np.ndarray  # uint32: index of each state's parent in the previous level
    action: np.ndarray  # uint16 (uint32 for huge models): id of the action that produced it


@dataclass
class Hit:
    """A reachable state satisfying (witness) or violating (invariant) a predicate."""

    bound: Bound
    depth: int
    index: int


@dataclass
class Enabled:
    """What a search with `coverage` counts while it expands: per action id, the expanded
    states whose guard holds; per action name (`names`, in model order of first
    appearance), the expanded states in which some instance of it holds; and how many
    states were expanded (a search that stops on a violation or a budget leaves its last
    level, or part of it, unexpanded)."""

    names: tuple[str, ...]
    per_action: np.ndarray  # int64, indexed by action id
    per_name: np.ndarray  # int64, indexed like `names`
    expanded: int = 0


@dataclass
class SearchResult:
    distinct: int  # states of the full space found (under symmetry: the stored orbits' sizes summed)
    generated: int
    depth: int  # deepest level that holds states
    complete: bool  # every reachable state was explored (fixpoint reached)
    stop: str  # fixpoint | depth | violation | deadlock | max-states | time-limit
    violations: list[Hit]
    witnesses: dict[str, Hit | None]
    deadlock: tuple[int, int] | None  # (depth, index) of a state with no successor
    seconds: float
    levels: list[Level] = field(repr=False)
    enabled: Enabled | None = field(default=None, repr=False)  # counted with coverage=True only
    store: StateStore | None = field(default=None, repr=False)  # the levels' states, findable by value
    reduction: Reduction | None = field(default=None, repr=False)  # with symmetry: the levels hold canonical forms
    orbits: int | None = None  # with symmetry: the states stored, one per orbit

    def path(self, depth: int, index: int) -> list[tuple[int, int]]:
        """(action id, index in level) for each step from the initial state to (depth, index)."""
        steps: list[tuple[int, int]] = []
        while depth > 0:
            level = self.levels[depth]
            steps.append((int(level.action[index]), index))
            index = int(level.parent[index])
            depth -= 1
        steps.reverse()
        return steps

    def state(self, depth: int, index: int) -> tuple[int, ...]:
        return tuple(int(w) for w in self.levels[depth].states[index])


@dataclass(frozen=True)
class Tick:
    """Where the search is: shown by a progress display after every block."""

    depth: int  # the level being built (the frontier is depth - 1)
    distinct: int  # states stored so far, the level being built included
    generated: int
    seconds: float  # since the search started
    expanded: int  # frontier states expanded so far in this level
    frontier: int  # frontier states in this level


Progress = Callable[[Tick], None]


class ExplicitSearch:
    """Breadth-first search of a compiled model against bound invariants."""

    def __init__(
        self,
        compiled: Compiled,
        invariants: Sequence[Bound],
        budget: Budget,
        check_deadlock: bool = False,
        progress: Progress | None = None,
        all_violations: bool = False,
        coverage: bool = False,
        workers: int = 1,
        reduction: Reduction | None = None,
    ) -> None:
        self.compiled = compiled
        self.model = compiled.model
        self.words = compiled.words
        self.budget = budget
        self.check_deadlock = check_deadlock
        self.progress = progress
        # keep searching after a violation, for the shortest counterexample of every invariant
        self.all_violations = all_violations
        self.always = [(b, compile_predicate(self.model, b.name, b.term))
                       for b in invariants if b.kind is Kind.ALWAYS]
        self.sometimes = [(b, compile_predicate(self.model, b.name, b.term))
                          for b in invariants if b.kind is Kind.SOMETIMES]
        self._aid = np.uint16 if len(self.model.actions) <= 0xFFFF else np.uint32
        self.coverage = coverage
        self._names = tuple(dict.fromkeys(a.name for a in self.model.actions))
        position = {n: i for i, n in enumerate(self._names)}
        self._name_of = [position[a.name] for a in self.model.actions]
        self.enabled: Enabled | None = None  # the counts of the last run, with coverage
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        # store one state per orbit of the model's proved symmetry group (checker/symmetry.py)
        self.reduction = reduction

    def run(self) -> SearchResult:
        if self.workers == 1:
            return self._run()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="expand") as self._pool:
            return self._run()

    def _run(self) -> SearchResult:
        start = time.perf_counter()
        store = StateStore(self.words, self._aid)
        store.add(np.array([self.model.init], dtype=np.uint64), np.zeros(1, np.uint32), np.zeros(1, self._aid))
        spans = [store.end_level()]  # [start, end) of each level in the store
        self._generated = 1
        self._start = start
        self.enabled = None
        if self.coverage:
            self.enabled = Enabled(self._names, np.zeros(len(self.model.actions), np.int64),
                                   np.zeros(len(self._names), np.int64))
        witnesses: dict[str, Hit | None] = {b.name: None for b, _ in self.sometimes}
        stop, complete = "fixpoint", True
        deadlock: tuple[int, int] | None = None
        violations = self._check(store.states[0:1], 0, witnesses, set())
        if self._stops(violations):
            stop, complete = "violation", False
        depth = 0
        while stop == "fixpoint":
            at_bound = self.budget.depth is not None and depth >= self.budget.depth
            found, dead, why = self._expand(store, spans[depth], depth + 1, probe=at_bound)
            if self.check_deadlock and dead is not None and not at_bound:
                deadlock, stop, complete = (depth, dead), "deadlock", False
                break
            if not found:
                if why:
                    stop, complete = why, False
                break  # fixpoint: the last level produced nothing new
            if at_bound:
                # with coverage, a budget may run out while the rest of the level is counted
                stop, complete = why or "depth", False
                break
            depth += 1
            spans.append(store.end_level(self._room(store)))
            lo, hi = spans[depth]
            violations += self._check(store.states[lo:hi], depth, witnesses, {h.bound.name for h in violations})
            if self._stops(violations):
                stop, complete = "violation", False
            elif why:
                stop, complete = why, False  # a budget ran out: this level is partial, but checked
        return SearchResult(
            distinct=len(store) if self.reduction is None else self._full(store),
            generated=self._generated,
            depth=depth,
            complete=complete,
            stop=stop,
            violations=violations,
            witnesses=witnesses,
            deadlock=deadlock,
            seconds=time.perf_counter() - start,
            levels=[Level(store.states[lo:hi], store.parent[lo:hi], store.action[lo:hi]) for lo, hi in spans],
            enabled=self.enabled,
            store=store,
            reduction=self.reduction,
            orbits=None if self.reduction is None else len(store),
        )

    def _full(self, store: StateStore) -> int:
        """How many states of the full space the stored canonical forms stand for."""
        assert self.reduction is not None
        n = len(store)
        return sum(int(self.reduction.orbit_sizes(store.states[i:min(i + BLOCK, n)]).sum())
                   for i in range(0, n, BLOCK))

    def _room(self, store: StateStore) -> int | None:
        """How many more states the state budget lets the level being built keep."""
        return None if self.budget.max_states is None else self.budget.max_states - store.level_start

    def _expand(
        self, store: StateStore, span: tuple[int, int], depth: int, probe: bool
    ) -> tuple[bool, int | None, str | None]:
        """Expand the frontier (the store's states in `span`) into the next level.

        Returns (whether some successor is new, index of a state without successors or
        None, the budget that stopped the expansion or None). A budget is checked after
        every block: the level then holds what was found so far, and the caller cuts it to
        the state budget exactly. With `probe`, nothing is stored and the expansion stops
        at the first block with a new state: only whether one exists matters; with
        coverage, the rest of the level is still expanded, its successors only counted.
        """
        lo, hi = span
        dead: int | None = None
        why: str | None = None
        probed = False
        store.begin_level()
        room = self._room(store)
        for base, block, found in self._blocks(store.states[lo:hi]):
            out = found.out
            if self.budget.out_of_time():
                why = "time-limit"
                break
            if room is not None and len(store) - store.level_start >= room:
                why = "max-states"
                break
            if self.enabled is not None:
                self._count(out, len(block))
            if not probed:
                if self.check_deadlock and dead is None:
                    enabled = np.zeros(len(block), dtype=bool)
                    for _, idx, _ in out:
                        enabled[idx] = True
                    if not enabled.all():
                        dead = base + int(np.flatnonzero(~enabled)[0])
                if out:
                    succ, parent, action = found.states, found.parent + np.uint32(base), found.action
                    self._generated += len(succ)
                    if probe:
                        probed = not store.seen(succ).all()
                        if probed and self.enabled is None:
                            return True, dead, None
                    else:
                        store.add(succ, parent, action)
            if self.progress:
                self.progress(Tick(depth, len(store), self._generated, time.perf_counter() - self._start,
                                   min(base + BLOCK, hi - lo), hi - lo))
        return probed or len(store) > store.level_start, dead, why

    def _successors(self, block: np.ndarray) -> Successors:
        """Expand one block (on a worker thread, with more than one worker)."""
        out = self.compiled.expand(block)
        if not out:
            empty = np.zeros((0, self.words), np.uint64)
            return Successors(out, empty, np.zeros(0, np.uint32), np.zeros(0, self._aid))
        succ = np.concatenate([n for _, _, n in out])
        if self.reduction is not None:
            succ = self.reduction.canonical(succ)
        parent = np.concatenate([idx for _, idx, _ in out]).astype(np.uint32)
        action = np.concatenate([np.full(len(idx), aid, self._aid) for aid, idx, _ in out])
        return Successors(out, succ, parent, action)

    def _blocks(self, frontier: np.ndarray) -> Iterator[tuple[int, np.ndarray, Successors]]:
        """(offset, block, its successors) for each block of the frontier, in order. With
        more than one worker, the next blocks are expanded on other threads (NumPy lets go
        of the GIL inside its loops) while this one's successors are stored; a block the
        caller stops before is expanded but never counted, so the figures do not change."""
        bases = range(0, len(frontier), BLOCK)
        if self.workers == 1 or len(bases) == 1:
            for base in bases:
                block = frontier[base:base + BLOCK]
                yield base, block, self._successors(block)
            return
        pending: deque[tuple[int, np.ndarray, Future[Successors]]] = deque()
        try:
            for base in bases:
                block = frontier[base:base + BLOCK]
                pending.append((base, block, self._pool.submit(self._successors, block)))
                if len(pending) > self.workers:
                    b, blk, fut = pending.popleft()
                    yield b, blk, fut.result()
            while pending:
                b, blk, fut = pending.popleft()
                yield b, blk, fut.result()
        finally:
            for _, _, fut in pending:
                fut.cancel()

    def _count(self, out: list[tuple[int, np.ndarray, np.ndarray]], n: int) -> None:
        """Coverage: the enabled states of one expanded block of `n` states. Every enabled
        state has its successor in `out` (a self-loop included), so len(idx) counts them."""
        enabled = self.enabled
        assert enabled is not None
        enabled.expanded += n
        by_name: dict[int, list[np.ndarray]] = {}
        for aid, idx, _ in out:
            enabled.per_action[aid] += len(idx)
            by_name.setdefault(self._name_of[aid], []).append(idx)
        for name, parts in by_name.items():
            if len(parts) == 1:
                enabled.per_name[name] += len(parts[0])
            else:  # a state enabling two instances of one name counts once
                mask = np.zeros(n, dtype=bool)
                for idx in parts:
                    mask[idx] = True
                enabled.per_name[name] += int(np.count_nonzero(mask))

    def _stops(self, violations: list[Hit]) -> bool:
        """A violation ends the search, unless every invariant's is wanted and some are missing."""
        return bool(violations) and (not self.all_violations or len(violations) == len(self.always))

    def _check(self, states: np.ndarray, depth: int, witnesses: dict[str, Hit | None], known: set[str]) -> list[Hit]:
        """Invariants violated (for the first time) and witnesses reached in this level."""
        hits: list[Hit] = []
        for bound, pred in self.always:
            if bound.name in known:
                continue
            bad = ~pred(states)
            if bad.any():
                hits.append(Hit(bound, depth, int(np.flatnonzero(bad)[0])))
        for bound, pred in self.sometimes:
            if witnesses[bound.name] is None:
                good = pred(states)
                if good.any():
                    witnesses[bound.name] = Hit(bound, depth, int(np.flatnonzero(good)[0]))
        return hits
