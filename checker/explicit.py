"""The explicit engine: breadth-first search over packed states, level by level.

Each level is a sorted array of distinct packed states with, for every state, the index
of its parent in the previous level and the id of the action that produced it; nothing
else is kept, so a counterexample is rebuilt by walking parent links and replaying the
model. Duplicate detection is exact (packed states are the keys). Because the search is
breadth-first and each level is checked whole before the next is built, the first
violation found is at the smallest possible depth, and the figures reported (distinct,
generated) do not depend on how levels are split into blocks. Among several ways to
reach a state, the parent kept is the one with the smallest (parent index, action id).

Budgets are checked after every block. When one runs out, the level being built keeps
what was found so far, cut to exactly `max_states` stored states (the smallest keys),
and is checked like any other, so every state counted was checked.

With `coverage`, the search also counts, per action, the expanded states whose guard
holds (`Enabled`, read by checker/coverage.py), and expands the level at the depth bound
whole (its successors only counted, never stored) instead of stopping at its first new
state, so that every stored state is expanded. Without it the loop does no more work
than one test per block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from invariants.core import Bound, Kind

from .budget import Budget
from .compile import Compiled, compile_predicate

BLOCK = 1 << 16  # states expanded per vectorised call


@dataclass
class Level:
    states: np.ndarray  # (n, words) uint64, sorted by key, distinct
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
    distinct: int
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

    def keys(self, states: np.ndarray) -> np.ndarray:
        return key_view(states, self.words)

    def run(self) -> SearchResult:
        start = time.perf_counter()
        init = np.array([self.model.init], dtype=np.uint64)
        levels = [Level(init, np.zeros(1, np.uint32), np.zeros(1, self._aid))]
        visited = self.keys(init).copy()
        self._generated = 1
        self._start = start
        self.enabled = None
        if self.coverage:
            self.enabled = Enabled(self._names, np.zeros(len(self.model.actions), np.int64),
                                   np.zeros(len(self._names), np.int64))
        witnesses: dict[str, Hit | None] = {b.name: None for b, _ in self.sometimes}
        stop, complete = "fixpoint", True
        deadlock: tuple[int, int] | None = None
        violations = self._check(levels[0], 0, witnesses, set())
        if self._stops(violations):
            stop, complete = "violation", False
        depth = 0
        while stop == "fixpoint":
            frontier = levels[depth].states
            at_bound = self.budget.depth is not None and depth >= self.budget.depth
            found, dead, why = self._expand(frontier, visited, depth + 1, probe=at_bound)
            if self.check_deadlock and dead is not None and not at_bound:
                deadlock, stop, complete = (depth, dead), "deadlock", False
                break
            if found is None:
                if why:
                    stop, complete = why, False
                break  # fixpoint: the last level produced nothing new
            if at_bound:
                # with coverage, a budget may run out while the rest of the level is counted
                stop, complete = why or "depth", False
                break
            depth += 1
            levels.append(found)
            visited = _merge(visited, self.keys(found.states))
            violations += self._check(found, depth, witnesses, {h.bound.name for h in violations})
            if self._stops(violations):
                stop, complete = "violation", False
            elif why:
                stop, complete = why, False  # a budget ran out: this level is partial, but checked
        return SearchResult(
            distinct=len(visited),
            generated=self._generated,
            depth=depth,
            complete=complete,
            stop=stop,
            violations=violations,
            witnesses=witnesses,
            deadlock=deadlock,
            seconds=time.perf_counter() - start,
            levels=levels,
            enabled=self.enabled,
        )

    def _expand(
        self, frontier: np.ndarray, visited: np.ndarray, depth: int, probe: bool
    ) -> tuple[Level | None, int | None, str | None]:
        """The next level: new states with their parents and actions.

        Returns (level or None when nothing is new, index of a state without successors
        or None, the budget that stopped the expansion or None). A budget is checked after
        every block: the level then holds what was found so far, cut to the state budget
        exactly. With `probe`, stop at the first new state: only whether one exists matters;
        with coverage, the rest of the level is still expanded, its successors only counted.
        """
        parts_states: list[np.ndarray] = []
        parts_parent: list[np.ndarray] = []
        parts_action: list[np.ndarray] = []
        found = 0  # fresh states in the parts (a state new to two blocks counts twice)
        dead: int | None = None
        why: str | None = None
        probed: Level | None = None  # with probe and coverage: the first new state, once found
        room = None if self.budget.max_states is None else self.budget.max_states - len(visited)
        for base in range(0, len(frontier), BLOCK):
            if self.budget.out_of_time():
                why = "time-limit"
                break
            if room is not None and found >= room:
                why = "max-states"
                break
            block = frontier[base:base + BLOCK]
            out = self.compiled.expand(block)
            if self.enabled is not None:
                self._count(out, len(block))
            if probed is None:
                if self.check_deadlock and dead is None:
                    enabled = np.zeros(len(block), dtype=bool)
                    for _, idx, _ in out:
                        enabled[idx] = True
                    if not enabled.all():
                        dead = base + int(np.flatnonzero(~enabled)[0])
                if out:
                    succ = np.concatenate([n for _, _, n in out])
                    parent = np.concatenate([idx for _, idx, _ in out]).astype(np.uint32) + np.uint32(base)
                    action = np.concatenate([np.full(len(idx), aid, self._aid) for aid, idx, _ in out])
                    self._generated += len(succ)
                    # Order candidates by (parent, action) so that the first occurrence of a state,
                    # which np.unique keeps, is the same whatever the block size.
                    order = np.argsort(parent, kind="stable")
                    succ, parent, action = succ[order], parent[order], action[order]
                    keys = self.keys(succ)
                    uniq, first = np.unique(keys, return_index=True)
                    fresh = ~_member(visited, uniq)
                    if fresh.any():
                        keep = first[fresh]
                        if probe:
                            probed = Level(succ[keep[:1]], parent[keep[:1]], action[keep[:1]])
                            if self.enabled is None:
                                return probed, dead, None
                        else:
                            parts_states.append(succ[keep])
                            parts_parent.append(parent[keep])
                            parts_action.append(action[keep])
                            found += len(keep)
            if self.progress:
                self.progress(Tick(depth, len(visited) + found, self._generated, time.perf_counter() - self._start,
                                   min(base + BLOCK, len(frontier)), len(frontier)))
        if probed is not None:
            return probed, dead, why
        if not parts_states:
            return None, dead, why
        states = np.concatenate(parts_states)
        parent = np.concatenate(parts_parent)
        action = np.concatenate(parts_action)
        _, first = np.unique(self.keys(states), return_index=True)
        if room is not None and len(first) >= room:
            first = first[:room]  # the smallest keys: the same states whatever the block size
            why = why or "max-states"
        return Level(states[first], parent[first], action[first]), dead, why

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

    def _check(self, level: Level, depth: int, witnesses: dict[str, Hit | None], known: set[str]) -> list[Hit]:
        """Invariants violated (for the first time) and witnesses reached in this level."""
        hits: list[Hit] = []
        for bound, pred in self.always:
            if bound.name in known:
                continue
            bad = ~pred(level.states)
            if bad.any():
                hits.append(Hit(bound, depth, int(np.flatnonzero(bad)[0])))
        for bound, pred in self.sometimes:
            if witnesses[bound.name] is None:
                good = pred(level.states)
                if good.any():
                    witnesses[bound.name] = Hit(bound, depth, int(np.flatnonzero(good)[0]))
        return hits


def key_view(states: np.ndarray, words: int) -> np.ndarray:
    """One comparable key per packed state (the words themselves, no hashing)."""
    dtype = np.dtype(np.uint64) if words == 1 else np.dtype((np.void, 8 * words))
    return np.ascontiguousarray(states).view(dtype).reshape(-1)


def _member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Which queries occur in `sorted_keys`."""
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    pos = np.searchsorted(sorted_keys, queries)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == queries


def _merge(sorted_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """Insert distinct, not-yet-present sorted keys into a sorted array."""
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, new_keys), new_keys)

