"""The loops numba compiles: the visited store's hash table (checker/store.py),
Tarjan's strongly connected components (checker/scc.py) and symmetry's canonical form
(checker/symmetry.py).

They are compiled on first use and cached beside this file; this module is imported only
when a search or a no-progress check starts, so that the command line answers everything
else (help, spec errors, listings, budgets spent while building) without loading numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SEED = np.uint64(0x9E3779B97F4A7C15)


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
def insert(table: np.ndarray, states: np.ndarray, parent: np.ndarray, action: np.ndarray, count: int,
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
def find(table: np.ndarray, states: np.ndarray, succ: np.ndarray) -> np.ndarray:
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
def renumber(table: np.ndarray, states: np.ndarray, start: int, old_of: np.ndarray) -> None:
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
def rehash(table: np.ndarray, states: np.ndarray, count: int) -> None:
    mask = np.uint64(table.shape[0] - 1)
    for i in range(count):
        slot = _hash(states, i) & mask
        while table[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = np.uint32(i + 1)


@njit(cache=True, nogil=True)
def tarjan(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Component label of each node 0..n-1 (labels in the order components complete)."""
    n = indptr.shape[0] - 1
    index = np.full(n, -1, np.int64)
    low = np.zeros(n, np.int64)
    on_stack = np.zeros(n, np.bool_)
    comp = np.full(n, -1, np.int64)
    stack = np.empty(n, np.int64)
    call_v = np.empty(n, np.int64)
    call_e = np.empty(n, np.int64)
    sp = 0
    counter = 0
    ncomp = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        w = root  # the node to enter next, -1 for none
        cp = 0
        while True:
            if w >= 0:
                index[w] = counter
                low[w] = counter
                counter += 1
                stack[sp] = w
                sp += 1
                on_stack[w] = True
                call_v[cp] = w
                call_e[cp] = indptr[w]
                cp += 1
                w = -1
            if cp == 0:
                break
            v = call_v[cp - 1]
            e = call_e[cp - 1]
            if e < indptr[v + 1]:
                call_e[cp - 1] = e + 1
                x = indices[e]
                if index[x] < 0:
                    w = x
                elif on_stack[x] and index[x] < low[v]:
                    low[v] = index[x]
            else:
                if low[v] == index[v]:
                    while True:
                        sp -= 1
                        x = stack[sp]
                        on_stack[x] = False
                        comp[x] = ncomp
                        if x == v:
                            break
                    ncomp += 1
                cp -= 1
                if cp > 0:
                    u = call_v[cp - 1]
                    if low[v] < low[u]:
                        low[u] = low[v]
    return comp


@njit(cache=True, nogil=True, inline="always")
def _moved(x: np.uint64, shift: np.int64) -> np.uint64:
    return x << np.uint64(shift) if shift >= 0 else x >> np.uint64(-shift)


@njit(cache=True, nogil=True)
def sort_members(states: np.ndarray, word: np.ndarray, kw: np.ndarray, shift: np.ndarray, mask: np.ndarray,
                 start: np.ndarray, key_words: int, keep: np.ndarray, out: np.ndarray, at: np.ndarray,
                 stabiliser: np.ndarray) -> None:
    """Symmetry's canonical form (checker/symmetry.py) of each state: its members sorted
    by their keys. Member m's key gathers, for j in start[m]..start[m+1], the bits
    `states[word[j]] & mask[j]` shifted by shift[j] into key word kw[j]; the key at
    position q is written back through position q's moves. Also writes the member at
    each position (`at`) and how many rearrangements fix the state (`stabiliser`),
    unless they are given empty."""
    n = start.shape[0] - 1
    keys = np.zeros((n, key_words), np.uint64)
    order = np.zeros(n, np.int64)
    for i in range(states.shape[0]):
        for m in range(n):
            order[m] = m
            for k in range(key_words):
                keys[m, k] = 0
            for j in range(start[m], start[m + 1]):
                keys[m, kw[j]] |= _moved(states[i, word[j]] & mask[j], shift[j])
        moved = False
        for a in range(1, n):  # insertion sort: stable, and n is small
            b = a
            while b > 0:
                greater = False
                for k in range(key_words):
                    if keys[b - 1, k] != keys[b, k]:
                        greater = keys[b - 1, k] > keys[b, k]
                        break
                if not greater:
                    break
                for k in range(key_words):
                    keys[b - 1, k], keys[b, k] = keys[b, k], keys[b - 1, k]
                order[b - 1], order[b] = order[b], order[b - 1]
                moved = True
                b -= 1
        for w in range(states.shape[1]):
            out[i, w] = states[i, w] & keep[w] if moved else states[i, w]
        if moved:
            for m in range(n):
                for j in range(start[m], start[m + 1]):
                    out[i, word[j]] |= _moved(keys[m, kw[j]], -shift[j]) & mask[j]
        if stabiliser.shape[0] == 0:
            continue
        run = 1
        fixed = 1
        for m in range(n):
            at[i, m] = order[m]
            if m > 0:
                same = True
                for k in range(key_words):
                    if keys[m, k] != keys[m - 1, k]:
                        same = False
                        break
                run = run + 1 if same else 1
                fixed *= run
        stabiliser[i] = fixed
