"""kvm->mmu_lock, the MMU's rwlock.

Every write-side critical section of the model is a single atomic step, so between steps
the lock is never held for write: a writer step is enabled only when no thread holds the
lock for read. Readers are not a field of their own: each thread's step field says
whether it is inside its read-side section, and registers that term here.
"""

from __future__ import annotations

import z3


class MmuLock:
    def __init__(self) -> None:
        self._readers: list[z3.BoolRef] = []
        self._sealed = False

    def add_reader(self, holds_for_read: z3.BoolRef) -> None:
        if self._sealed:
            raise RuntimeError("readers must be registered before any writer step is built")
        self._readers.append(holds_for_read)

    def write_lockable(self) -> z3.BoolRef:
        """write_lock(&kvm->mmu_lock) would not block: no thread holds it for read."""
        self._sealed = True
        return z3.And(*[z3.Not(r) for r in self._readers])

    def read_held(self) -> z3.BoolRef:
        """Some thread holds the lock for read."""
        return z3.Or(*self._readers) if self._readers else z3.BoolVal(False)
