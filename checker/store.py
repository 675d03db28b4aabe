"""The visited store of the explicit engine: every distinct state found, exactly.

States are kept once, level after level (each level a contiguous run), in one array
beside the index of each state's parent (in the previous level) and the id of the action
that produced it. The arrays are reserved at the size physical memory could hold and
backed page by page as they fill, so they are never copied to grow and cost only what is
stored (where the kernel will not reserve that much, they start small and grow). An
open-addressing hash table of 32-bit slots (the state's position + 1, 0 for empty)
answers "seen before?" by comparing the packed words themselves, so there are no
fingerprint collisions: two states are the same only if every word is.

The loops that probe and fill the table are compiled once by numba (checker/loops.py,
imported on first use); everything else is NumPy on whole arrays.

Determinism: while a level is built, a state reached again keeps the smallest
(parent, action) pair seen, whatever order the candidates arrive in; when the level is
complete its states are sorted by key (`key_order`), so a level's order, and with it the
counterexample chosen among equally short ones, depends only on the model.
"""

from __future__ import annotations

import mmap
import os
from types import ModuleType

import numpy as np

_MAX_LOAD = 0.5  # the table is grown before a batch could fill it past this
_SMALL = 1 << 12  # states reserved when the kernel refuses a large reservation


class StateStore:
    """Distinct states with their parent and action, level after level."""

    LIMIT = (1 << 32) - 2  # slots hold position + 1 in 32 bits

    def __init__(self, words: int, action_dtype: type, capacity: int | None = None) -> None:
        """`capacity` states are reserved (default: as many as physical memory could
        hold); memory is taken only as states are written, and the arrays are copied into
        larger ones only beyond the reservation."""
        self.count = 0
        self.level_start = 0
        if capacity is None:
            capacity = min(self.LIMIT, max(_SMALL, _physical_memory() // (8 * words)))
        try:
            self._reserve(capacity, words, action_dtype)
        except OSError:  # no overcommit (vm.overcommit_memory=2): start small, grow by copying
            self._reserve(min(capacity, _SMALL), words, action_dtype)
        self.table = np.zeros(1 << 13, np.uint32)

    def _reserve(self, capacity: int, words: int, action_dtype: type) -> None:
        self.states = _lazy((capacity, words), np.uint64)
        self.parent = _lazy((capacity,), np.uint32)
        self.action = _lazy((capacity,), action_dtype)

    def __len__(self) -> int:
        return self.count

    def begin_level(self) -> None:
        self.level_start = self.count

    def add(self, succ: np.ndarray, parent: np.ndarray, action: np.ndarray) -> None:
        """Store the candidates not seen before (exact comparison of every word)."""
        self._room(self.count + len(succ))
        self.count = loops().insert(self.table, self.states, self.parent, self.action, self.count,
                             self.level_start, np.ascontiguousarray(succ), parent, action)

    def seen(self, succ: np.ndarray) -> np.ndarray:
        return self.find(succ) >= 0

    def find(self, succ: np.ndarray) -> np.ndarray:
        """Position of each candidate in the store (levels one after the other), -1 if absent."""
        return loops().find(self.table, self.states, np.ascontiguousarray(succ))

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
            loops().renumber(self.table, self.states, start, order)
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
            loops().rehash(self.table, self.states, self.count)


def loops() -> ModuleType:
    """checker.loops, imported when first needed (it loads numba)."""
    from . import loops as compiled

    return compiled


def key_order(states: np.ndarray) -> np.ndarray:
    """The permutation that sorts packed states by key: the word itself for one-word
    states, else the bytes of the words in memory order (little-endian words, first word
    first), the order levels have always been kept in, so that the same counterexample
    is chosen whatever the store."""
    if states.shape[1] == 1:
        return np.argsort(states[:, 0], kind="stable")
    return np.lexsort([states[:, w].byteswap() for w in reversed(range(states.shape[1]))])


def _lazy(shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """A zeroed array whose memory is taken page by page as it is written: an anonymous
    mapping (MAP_NORESERVE, so that reserving more than is used is not refused)."""
    size = int(np.prod(shape))
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    buf = mmap.mmap(-1, max(size * np.dtype(dtype).itemsize, 1), flags=flags)
    return np.frombuffer(buf, dtype, count=size).reshape(shape)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = _lazy((size, *a.shape[1:]), a.dtype)
    out[:len(a)] = a
    return out


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()
