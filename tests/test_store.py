"""The visited store: exact, deterministic, growing; and searches on several threads."""

from __future__ import annotations

import numpy as np
import pytest

import checker.explicit as engine
from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch
from checker.store import StateStore, key_order
from examples import counter, twophase

from .shipped import shipped_model


def _add(store: StateStore, states: list[list[int]], parent: list[int], action: list[int]) -> None:
    store.add(np.array(states, np.uint64), np.array(parent, np.uint32), np.array(action, np.uint16))


def test_states_are_told_apart_by_every_bit_of_every_word() -> None:
    store = StateStore(3, np.uint16)
    top = 1 << 63
    states = [[0, 0, 0], [0, 0, top], [0, top, 0], [top, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, top]]
    _add(store, states, list(range(7)), [0] * 7)
    assert len(store) == 5
    found = store.find(np.array([*states, [1, 1, 1]], np.uint64)).tolist()
    assert found == [0, 1, 2, 3, 4, 0, 1, -1]
    assert store.seen(np.array([[0, 0, 1], [0, 1, 0]], np.uint64)).tolist() == [True, False]


def test_a_state_found_twice_in_a_level_keeps_the_smallest_parent_and_action() -> None:
    store = StateStore(1, np.uint16)
    store.begin_level()
    _add(store, [[7], [7], [7], [9]], [5, 3, 3, 8], [1, 2, 1, 0])
    start, end = store.end_level()
    assert (start, end) == (0, 2)
    assert store.states[:2, 0].tolist() == [7, 9]
    assert store.parent[:2].tolist() == [3, 8] and store.action[:2].tolist() == [1, 0]
    store.begin_level()
    _add(store, [[7], [11]], [0, 0], [0, 0])  # 7 is of an earlier level: its parent stays
    assert store.parent[0] == 3 and len(store) == 3


def test_the_store_grows_and_agrees_with_a_python_set() -> None:
    rng = np.random.default_rng(7)
    store = StateStore(2, np.uint16, capacity=16)
    seen: set[tuple[int, int]] = set()
    for _ in range(20):
        store.begin_level()
        batch = rng.integers(0, 64, size=(500, 2), dtype=np.uint64)  # many repeats, many probe chains
        store.add(batch, np.zeros(len(batch), np.uint32), np.zeros(len(batch), np.uint16))
        seen.update(map(tuple, batch.tolist()))
        store.end_level()
        assert len(store) == len(seen)
    stored = store.states[:len(store)]
    assert set(map(tuple, stored.tolist())) == seen
    assert store.find(stored).tolist() == list(range(len(store)))  # every slot points at its state


def test_levels_are_sorted_by_the_bytes_of_their_words() -> None:
    """Level order decides which of several shortest counterexamples is shown: it is the
    memory order of the packed words (and the number itself for one-word states)."""
    rng = np.random.default_rng(3)
    states = rng.integers(0, 1 << 62, size=(2000, 2), dtype=np.uint64)
    states[:100, 0] = 5  # ties on the first word
    by_bytes = np.argsort(states.view(np.dtype((np.void, 16))).reshape(-1), kind="stable")
    assert key_order(states).tolist() == by_bytes.tolist()
    one = states[:, :1].copy()
    assert np.array_equal(one[key_order(one), 0], np.sort(one[:, 0]))


def test_counter_has_three_to_the_n_times_k_states() -> None:
    model = counter.build(5, 4)
    r = ExplicitSearch(compile_model(model), [], Budget()).run()
    assert (r.distinct, r.complete) == (3**5 * 4, True)


def _same_search(a, b) -> None:  # type: ignore[no-untyped-def]
    assert (a.distinct, a.generated, a.depth, a.stop) == (b.distinct, b.generated, b.depth, b.stop)
    assert [(h.bound.name, h.depth, h.index) for h in a.violations] == \
        [(h.bound.name, h.depth, h.index) for h in b.violations]
    for x, y in zip(a.levels, b.levels, strict=True):
        assert np.array_equal(x.states, y.states)
        assert np.array_equal(x.parent, y.parent) and np.array_equal(x.action, y.action)


@pytest.mark.parametrize("workers", [2, 3])
def test_threads_give_the_same_search_state_for_state(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks, so that every level is expanded by several threads at once."""
    monkeypatch.setattr(engine, "BLOCK", 5)
    model = twophase.build(3)
    compiled = compile_model(model)
    bounds = [twophase.TC_CONSISTENT.bind(model)]
    one = ExplicitSearch(compiled, bounds, Budget()).run()
    many = ExplicitSearch(compiled, bounds, Budget(), workers=workers).run()
    _same_search(one, many)
    capped = [ExplicitSearch(compiled, bounds, Budget(max_states=100), workers=w).run() for w in (1, workers)]
    _same_search(*capped)
    assert capped[0].stop == "max-states" and capped[0].distinct == 100


def test_threads_find_the_same_counterexample_on_an_mmu_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BLOCK", 64)
    model, bounds = shipped_model("fault-vs-conversion-stale-attr__no-seq-check")
    compiled = compile_model(model)
    one = ExplicitSearch(compiled, bounds, Budget()).run()
    two = ExplicitSearch(compiled, bounds, Budget(), workers=2).run()
    assert one.stop == "violation"
    _same_search(one, two)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ExplicitSearch(compile_model(twophase.build(2)), [], Budget(), workers=0)


def test_a_refused_reservation_starts_small_and_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    """With overcommit off the kernel refuses to reserve memory's worth of states: the
    store then starts small and grows by copying, with the same contents."""
    import checker.store as store_module

    real = store_module._lazy

    def strict(shape: tuple[int, ...], dtype: type) -> np.ndarray:
        if shape[0] > 1 << 20:  # more than this machine would commit
            raise OSError(12, "Cannot allocate memory")
        return real(shape, dtype)

    monkeypatch.setattr(store_module, "_lazy", strict)
    store = StateStore(2, np.uint16)
    assert len(store.states) == store_module._SMALL
    states = np.arange(2 * 3 * store_module._SMALL, dtype=np.uint64).reshape(-1, 2)
    store.add(states, np.zeros(len(states), np.uint32), np.zeros(len(states), np.uint16))
    assert len(store) == len(states) and store.find(states).tolist() == list(range(len(states)))
