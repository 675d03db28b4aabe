"""Strongly connected components on arrays agree with networkx's; routes are shortest."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from checker.scc import Digraph, GraphError


def _random(seed: int, n: int, m: int) -> tuple[Digraph, nx.DiGraph]:
    rng = np.random.default_rng(seed)
    nodes = np.sort(rng.choice(10 * n, size=n, replace=False))  # global ids with gaps
    src, dst = nodes[rng.integers(0, n, m)], nodes[rng.integers(0, n, m)]
    act = rng.integers(0, 5, m)
    g = nx.DiGraph()
    g.add_nodes_from(nodes.tolist())
    g.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return Digraph.of(nodes, src, dst, act), g


@pytest.mark.parametrize("seed", range(6))
def test_components_are_networkx_components(seed: int) -> None:
    h, g = _random(seed, 200, 260 + 40 * seed)
    ours = [frozenset(c.tolist()) for c in h.components()]
    assert set(ours) == {frozenset(c) for c in nx.strongly_connected_components(g)}
    assert [min(c) for c in ours] == sorted(min(c) for c in ours)  # ordered by smallest id
    some = np.array(sorted(g.nodes)[::2])
    sub = {frozenset(c.tolist()) for c in h.components(some)}
    assert sub == {frozenset(c) for c in nx.strongly_connected_components(g.subgraph(some.tolist()))}


def test_parallel_edges_keep_the_smallest_action_and_routes_are_shortest() -> None:
    nodes = np.array([2, 4, 6, 8])
    src = np.array([2, 2, 4, 6, 2, 8, 4])
    dst = np.array([4, 4, 6, 8, 8, 2, 2])
    act = np.array([3, 1, 0, 0, 9, 0, 5])
    h = Digraph.of(nodes, src, dst, act)
    assert h.action(2, 4) == 1
    assert h.route(2, {8}, {2, 4, 6, 8}) == [2, 8]
    assert h.route(2, {6}, {2, 4, 6}) == [2, 4, 6]
    with pytest.raises(GraphError):
        h.route(4, {8}, {4})
    assert not h.has_loop(np.array([2, 4])) and Digraph.of(nodes, src[:1], src[:1], act[:1]).has_loop(np.array([2]))
