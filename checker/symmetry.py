"""Symmetry reduction for the explicit engine: one state per orbit, and real traces back.

With `--symmetry`, the model's declared symmetric index sets (model/lang/symmetry.py) are
first proved to be symmetries of the model and of every predicate the search checks.
The search then stores, for every state it reaches, only its canonical form: each set's
members sorted by their own fields (a member's fields read as one key). Because the
initial state is fixed by every permutation and every permutation maps steps onto
steps, a state's images are all at the same breadth-first depth, so the reduced search
meets each orbit at the depth the full search meets its states: every verdict and every
shortest counterexample length is the same, and the full space's count is the sum of the
orbits' sizes (|G| / the number of permutations fixing the state: those rearranging
members whose fields are equal).

A counterexample is found among canonical states; the trace rebuilder (checker/trace.py)
turns it back into steps of the model from the initial state, permuting each step by
what the canonical forms before it were permuted by, so every trace replays as printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from math import factorial

import numpy as np
import z3

from invariants.core import Bound, Kind
from model.lang import Model
from model.lang.symmetry import Group, Permutation, prove

from .store import loops

Permute = Callable[[np.ndarray], np.ndarray]

__all__ = ["Reduction", "reduction", "wanted"]


class Reduction:
    """The proved group of a model acting on packed states: the canonical form (each
    symmetric set's members sorted by their own fields), orbit sizes, and any element
    applied (for turning a path through canonical forms back into real steps)."""

    def __init__(self, model: Model, group: Group) -> None:
        self.model = model
        self.group = group
        self._sets = [_Members(model, group.blocks(i)) for i in range(len(group.sets))]
        self._permute: dict[Permutation, Permute] = {}

    @property
    def order(self) -> int:
        return self.group.order

    def permute(self, states: np.ndarray, p: Permutation) -> np.ndarray:
        """The images of `states` under the element p of the group."""
        if p not in self._permute:
            self._permute[p] = _compile(self.model, self.group.field_map(p))
        return self._permute[p](states)

    def canonical(self, states: np.ndarray) -> np.ndarray:
        """Each state with every set's members sorted by their own fields (the key of a
        member: its fields' bits, in schema order); two states have the same canonical
        form exactly when some element of the group maps one to the other."""
        for members in self._sets:
            states = members.sort(states)
        return states

    def orbit_sizes(self, states: np.ndarray) -> np.ndarray:
        """How many distinct states each state's orbit holds: |G| / |its stabiliser|, the
        stabiliser being the rearrangements of members with equal fields."""
        sizes = np.ones(len(states), dtype=np.int64)
        for members in self._sets:
            sizes *= members.orbit_sizes(states)
        return sizes

    def element_to(self, state: tuple[int, ...], target: tuple[int, ...]) -> Permutation | None:
        """An element of the group that maps `state` to `target` (its canonical form), or
        None when target is not its canonical form."""
        s = np.array([state], dtype=np.uint64)
        p = tuple(members.order(s) for members in self._sets)
        return p if tuple(int(w) for w in self.permute(s, p)[0]) == tuple(target) else None


class _Members:
    """One symmetric set over packed states: each member's fields (its block) read as one
    key of a few words; the members sorted by key and written back position by position
    (compiled: checker/loops.py `sort_members`)."""

    def __init__(self, model: Model, blocks: list[list[int]]) -> None:
        slots = model.schema.slots
        self.n = len(blocks)
        # per member: (source word, key word, shift from source to key, source mask);
        # fields next to each other in a word move together
        plan: list[list[tuple[int, int, int, int]]] = []
        clear = [0] * model.schema.words
        offset = 0  # the key's width, the same for every member
        for block in blocks:
            moves: dict[tuple[int, int, int], int] = {}
            offset = 0
            for f in block:
                slot = slots[f]
                if slot.width == 0:
                    continue
                if offset % 64 + slot.width > 64:
                    offset += 64 - offset % 64  # a field never straddles two key words
                key = (slot.word, offset // 64, offset % 64 - slot.shift)
                moves[key] = moves.get(key, 0) | (slot.mask << slot.shift)
                clear[slot.word] |= slot.mask << slot.shift
                offset += slot.width
            plan.append([(w, kw, d, mask) for (w, kw, d), mask in moves.items()])
        flat = [move for moves in plan for move in moves]
        self.word = np.array([m[0] for m in flat], np.int64)
        self.kw = np.array([m[1] for m in flat], np.int64)
        self.shift = np.array([m[2] for m in flat], np.int64)
        self.mask = np.array([m[3] for m in flat], np.uint64)
        self.start = np.cumsum([0] + [len(moves) for moves in plan]).astype(np.int64)
        self.key_words = max(1, -(-offset // 64))
        self.keep = np.array([~c & (2**64 - 1) for c in clear], np.uint64)

    def _run(self, states: np.ndarray, details: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted states, the member at each position, each state's stabiliser size);
        without `details` the last two are empty (the search needs only the first)."""
        out = np.empty_like(states)
        rows = len(states) if details else 0
        at = np.empty((rows, self.n), np.int64)
        stabiliser = np.empty(rows, np.int64)
        loops().sort_members(np.ascontiguousarray(states), self.word, self.kw, self.shift, self.mask, self.start,
                             self.key_words, self.keep, out, at, stabiliser)
        return out, at, stabiliser

    def sort(self, states: np.ndarray) -> np.ndarray:
        return self._run(states, details=False)[0]

    def orbit_sizes(self, states: np.ndarray) -> np.ndarray:
        return factorial(self.n) // self._run(states)[2]

    def order(self, state: np.ndarray) -> tuple[int, ...]:
        """The permutation sorting one state's members: the member at position q goes to q."""
        at = self._run(state)[1][0]
        p = [0] * self.n
        for q, m in enumerate(at):
            p[int(m)] = q
        return tuple(p)


def wanted(model: Model, bounds: Iterable[Bound], asked: bool) -> Reduction | None:
    """The reduction a run asked for (`--symmetry`, a spec's `symmetry = true`), proved for
    the model and its safety properties; None when not asked or the model declares no
    symmetric set (then the search is of the full space, as asked in effect)."""
    if not asked or not model.symmetric:
        return None
    return reduction(model, {b.name: b.term for b in bounds if b.kind is not Kind.PROGRESS})


def reduction(model: Model, predicates: Mapping[str, z3.BoolRef]) -> Reduction:
    """The model's symmetry group, proved for the model and `predicates` (name -> term)."""
    group = Group(model, model.symmetric)
    prove(group, {**predicates, **{f"fact {f.name}": f.term for f in model.facts}})
    return Reduction(model, group)


def _shift(bits: np.ndarray, d: int) -> np.ndarray:
    """`bits` shifted left by d (right by -d)."""
    return bits << np.uint64(d) if d >= 0 else bits >> np.uint64(-d)


def _compile(model: Model, image: list[int]) -> Permute:
    """The permutation moving each field to `image[field]`, as a few masked shifts per word:
    the bits that move from one word to another by the same distance move together."""
    slots = model.schema.slots
    words = model.schema.words
    keep = [0] * words
    moves: dict[tuple[int, int, int], int] = {}  # (to word, from word, shift left) -> source mask
    for f, slot in enumerate(slots):
        if slot.width == 0:
            continue
        to = slots[image[f]]
        if image[f] == f:
            keep[slot.word] |= slot.mask << slot.shift
        else:
            key = (to.word, slot.word, to.shift - slot.shift)
            moves[key] = moves.get(key, 0) | (slot.mask << slot.shift)
    plan = [(w, np.uint64(keep[w]), [(src, np.uint64(mask), d) for (to, src, d), mask in sorted(moves.items())
                                    if to == w]) for w in range(words)]

    def permute(states: np.ndarray) -> np.ndarray:
        out = np.empty_like(states)
        for w, kept, moved in plan:
            acc = states[:, w] & kept
            for src, mask, d in moved:
                acc |= _shift(states[:, src] & mask, d)
            out[:, w] = acc
        return out

    return permute
