"""Strongly connected components and routes on a state graph held as arrays.

The no-progress check (checker/progress.py) needs the SCCs of the waiting states' graph
and short routes inside one of them. The graph can have as many nodes as the search has
states, so it is kept as sorted edge arrays (CSR), never as Python objects, and the
components come from an iterative Tarjan compiled once by numba (checker/loops.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


class GraphError(Exception):
    """The state graph does not close over the explored levels: a checker bug."""


@dataclass
class Digraph:
    """Nodes (global state ids, sorted) and edges, one per (src, dst) pair: the smallest
    action among the transitions between them; edges sorted by (src, dst)."""

    nodes: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    act: np.ndarray

    @classmethod
    def of(cls, nodes: np.ndarray, src: np.ndarray, dst: np.ndarray, act: np.ndarray) -> Digraph:
        order = np.lexsort((act, dst, src))
        src, dst, act = src[order], dst[order], act[order]
        first = np.ones(len(src), dtype=bool)
        first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        return cls(np.asarray(nodes, np.int64), src[first], dst[first], act[first])

    def successors(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """(destinations in increasing order, their actions) of the edges leaving u."""
        lo, hi = np.searchsorted(self.src, [u, u + 1])
        return self.dst[lo:hi], self.act[lo:hi]

    def action(self, u: int, v: int) -> int:
        dsts, acts = self.successors(u)
        return int(acts[np.searchsorted(dsts, v)])

    def has_loop(self, ids: np.ndarray) -> bool:
        loops = self.src[self.src == self.dst]
        return bool(np.isin(ids, loops).any())

    def labels(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, the SCC label of each) for the subgraph induced by `ids` (default: every
        node), ids sorted; labels number the components in the order of their smallest id."""
        ids = self.nodes if ids is None else np.sort(np.asarray(ids, np.int64))
        if len(ids) == 0:
            return ids, np.zeros(0, np.int64)
        keep = np.isin(self.src, ids) & np.isin(self.dst, ids)
        local_src = np.searchsorted(ids, self.src[keep])
        local_dst = np.searchsorted(ids, self.dst[keep])  # edges stay sorted by (src, dst)
        indptr = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(np.bincount(local_src, minlength=len(ids)), out=indptr[1:])
        from .loops import tarjan  # loads numba: only once a no-progress check runs

        label = tarjan(indptr, local_dst.astype(np.int64))
        ncomp = int(label.max()) + 1
        first = np.full(ncomp, len(ids), np.int64)
        np.minimum.at(first, label, np.arange(len(ids)))
        rank = np.empty(ncomp, np.int64)
        rank[np.argsort(first)] = np.arange(ncomp)
        return ids, rank[label]

    def components(self, ids: np.ndarray | None = None) -> list[np.ndarray]:
        """The SCCs of the subgraph induced by `ids` (default: every node), each as a
        sorted array of global ids, in the order of their smallest id."""
        ids, label = self.labels(ids)
        order = np.argsort(label, kind="stable")  # ids stay sorted within a component
        return np.split(ids[order], np.flatnonzero(np.diff(label[order])) + 1) if len(ids) else []

    def route(self, start: int, goal: set[int], members: set[int]) -> list[int]:
        """The shortest route from `start` to a state of `goal`, inside `members` (ties:
        smallest ids first)."""
        if start in goal:
            return [start]
        parent = {start: start}
        queue = deque([start])
        while queue:
            u = queue.popleft()
            for v in self.successors(u)[0].tolist():
                if v in members and v not in parent:
                    parent[v] = u
                    if v in goal:
                        path = [v]
                        while path[-1] != start:
                            path.append(parent[path[-1]])
                        return path[::-1]
                    queue.append(v)
        raise GraphError("no route inside a strongly connected component")
