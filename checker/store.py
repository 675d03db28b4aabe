"""The visited store of the explicit engine: every distinct state found, exactly.

States are kept once, in breadth-first discovery order, in one growing array beside the
index of each state's parent (in the previous level) and the id of the action that
produced it. An open-addressing hash table of 32-bit slots (the state's position + 1,
0 for empty) answers "seen before?" by comparing the packed words themselves, so there
are no fingerprint collisions: two states are the same only if every word is.

The loops that probe and fill the table are compiled once by numba (and cached beside
this file); everything else is NumPy on whole arrays.

Determinism: while a level is built, a state reached again keeps the smallest
(parent, action) pair seen, whatever order the candidates arrive in; when the level is
complete its states are sorted by key (`key_order`), so a level's order, and with it the
counterexample chosen among equally short ones, depends only on the model.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = np.uint32(0)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SEED = np.uint64(0x9E3779B97F4A7C15)
_MAX_LOAD = 0.5  # the table is grown before a batch could fill it past this


@njit(cache=True, nogil=True, inline="always")
def _hash(states: np.ndarray, i: int) -> np.uint64:
    """splitmix64's finaliser folded over the state's words."""
    h = _SEED
    for w in range(states.shape[1]):
        h ^= states[i, w]
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True, inline="always")
def _same(a: np.ndarray, i: int, b: np.ndarray, j: int) -> bool:
    for w in range(a.shape[1]):
        if a[i, w] != b[j, w]:
            return False
    return True


@njit(cache=True, nogil=True)
def _insert(table: np.ndarray, states: np.ndarray, parent: np.ndarray, action: np.ndarray, count: int,
            level_start: int, succ: np.ndarray, succ_parent: np.ndarray, succ_action: np.ndarray) -> int:
    """Add the candidates not seen yet; a candidate of this level seen again keeps the
    smaller (parent, action). Returns the new count. The caller guarantees room."""
    mask = np.uint64(table.shape[0] - 1)
    for j in range(succ.shape[0]):
        slot = _hash(succ, j) & mask
        while True:
            e = table[slot]
            if e == 0:
                for w in range(states.shape[1]):
                    states[count, w] = succ[j, w]
                parent[count] = succ_parent[j]
                action[count] = succ_action[j]
                count += 1
                table[slot] = np.uint32(count)
                break
            k = np.int64(e) - 1
            if _same(states, k, succ, j):
                if k >= level_start and (succ_parent[j] < parent[k]
                                         or (succ_parent[j] == parent[k] and succ_action[j] < action[k])):
                    parent[k] = succ_parent[j]
                    action[k] = succ_action[j]
                break
            slot = (slot + np.uint64(1)) & mask
    return count


@njit(cache=True, nogil=True)
def _seen(table: np.ndarray, states: np.ndarray, succ: np.ndarray) -> np.ndarray:
    """For each candidate, whether it is stored."""
    mask = np.uint64(table.shape[0] - 1)
    out = np.zeros(succ.shape[0], dtype=np.bool_)
    for j in range(succ.shape[0]):
        slot = _hash(succ, j) & mask
        while True:
            e = table[slot]
            if e == 0:
                break
            if _same(states, np.int64(e) - 1, succ, j):
                out[j] = True
                break
            slot = (slot + np.uint64(1)) & mask
    return out


@njit(cache=True, nogil=True)
def _find(table: np.ndarray, states: np.ndarray, succ: np.ndarray) -> np.ndarray:
    """For each candidate, its position in the store, or -1."""
    mask = np.uint64(table.shape[0] - 1)
    out = np.full(succ.shape[0], -1, dtype=np.int64)
    for j in range(succ.shape[0]):
        slot = _hash(succ, j) & mask
        while True:
            e = table[slot]
            if e == 0:
                break
            if _same(states, np.int64(e) - 1, succ, j):
                out[j] = np.int64(e) - 1
                break
            slot = (slot + np.uint64(1)) & mask
    return out


@njit(cache=True, nogil=True)
def _renumber(table: np.ndarray, states: np.ndarray, start: int, old_of: np.ndarray) -> None:
    """The states from `start` on were moved: the one now at start + p was at
    start + old_of[p]. Point their slots at the new positions (every slot is found
    before any is rewritten, so a rewritten slot is never taken for an old one)."""
    mask = np.uint64(table.shape[0] - 1)
    slots = np.empty(old_of.shape[0], dtype=np.uint64)
    for p in range(old_of.shape[0]):
        old = np.uint32(start + old_of[p] + 1)
        slot = _hash(states, start + p) & mask
        while table[slot] != old:
            slot = (slot + np.uint64(1)) & mask
        slots[p] = slot
    for p in range(old_of.shape[0]):
        table[slots[p]] = np.uint32(start + p + 1)


@njit(cache=True, nogil=True)
def _rehash(table: np.ndarray, states: np.ndarray, count: int) -> None:
    mask = np.uint64(table.shape[0] - 1)
    for i in range(count):
        slot = _hash(states, i) & mask
        while table[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = np.uint32(i + 1)


class StateStore:
    """Distinct states with their parent and action, level after level."""

    LIMIT = (1 << 32) - 2  # slots hold position + 1 in 32 bits

    def __init__(self, words: int, action_dtype: type, capacity: int = 1 << 12) -> None:
        self.words = words
        self.count = 0
        self.level_start = 0
        self.states = np.zeros((capacity, words), np.uint64)
        self.parent = np.zeros(capacity, np.uint32)
        self.action = np.zeros(capacity, action_dtype)
        self.table = np.zeros(_pow2(int(capacity / _MAX_LOAD)), np.uint32)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return self.states.nbytes + self.parent.nbytes + self.action.nbytes + self.table.nbytes

    def begin_level(self) -> None:
        self.level_start = self.count

    def add(self, succ: np.ndarray, parent: np.ndarray, action: np.ndarray) -> None:
        """Store the candidates not seen before (exact comparison of every word)."""
        self._room(self.count + len(succ))
        self.count = _insert(self.table, self.states, self.parent, self.action, self.count,
                             self.level_start, np.ascontiguousarray(succ), parent, action)

    def seen(self, succ: np.ndarray) -> np.ndarray:
        return _seen(self.table, self.states, np.ascontiguousarray(succ))

    def find(self, succ: np.ndarray) -> np.ndarray:
        """Position of each candidate in the store (discovery order), -1 if absent."""
        return _find(self.table, self.states, np.ascontiguousarray(succ))

    def end_level(self, keep: int | None = None) -> tuple[int, int]:
        """Put this level's states in key order and keep the first `keep` of them;
        returns the level's [start, end) positions."""
        start, end = self.level_start, self.count
        n = end - start
        if n:
            order = key_order(self.states[start:end])
            self.states[start:end] = self.states[start:end][order]
            self.parent[start:end] = self.parent[start:end][order]
            self.action[start:end] = self.action[start:end][order]
            _renumber(self.table, self.states, start, order)
        if keep is not None and keep < n:
            self.count = end = start + keep  # the search stops here: the table is not read again
        return start, end

    def _room(self, need: int) -> None:
        if need > self.LIMIT:
            raise MemoryError(f"more than {self.LIMIT} distinct states: beyond the store's 32-bit positions")
        if need > len(self.states):
            size = min(max(need, len(self.states) * 3 // 2), self.LIMIT)
            self.states = _grown(self.states, size)
            self.parent = _grown(self.parent, size)
            self.action = _grown(self.action, size)
        if need > len(self.table) * _MAX_LOAD:
            self.table = np.zeros(_pow2(int(need / _MAX_LOAD) + 1), np.uint32)
            _rehash(self.table, self.states, self.count)


def key_order(states: np.ndarray) -> np.ndarray:
    """The permutation that sorts packed states by key: the word itself for one-word
    states, else the bytes of the words in memory order (little-endian words, first word
    first), the order levels have always been kept in, so that the same counterexample
    is chosen whatever the store."""
    if states.shape[1] == 1:
        return np.argsort(states[:, 0], kind="stable")
    return np.lexsort([states[:, w].byteswap() for w in reversed(range(states.shape[1]))])


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.empty((size, *a.shape[1:]), a.dtype)
    out[:len(a)] = a
    return out


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()
