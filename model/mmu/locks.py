"""kvm->mmu_lock, the MMU's rwlock.

Most write-side critical sections of the model are single atomic steps: such a step is
enabled only when no thread holds the lock at all. A thread that keeps the write lock
across several steps (the TDX tear-down, which makes SEAMCALLs between its steps) is a
registered writer. Holders are not a field of their own: each thread's step field says
whether it is inside its critical section, and registers that term here.

The kernel's rwlock_t is a queued rwlock (kernel/locking/qrwlock.c): a writer that waits
makes new readers wait behind it, so readers coming and going cannot starve it. The
model's lock does that only when `queued` (option `[attributes] queued_rwlock`): a thread
registers the steps at which it waits for the write lock (`add_waiter`), and read_lock()
blocks while one does. Without it a reader may overtake a waiting writer: fewer states,
and a writer starved by readers is the model's, not the kernel's.
"""

from __future__ import annotations

import z3


class MmuLock:
    def __init__(self, queued: bool = False) -> None:
        self.queued = queued
        self._readers: list[z3.BoolRef] = []
        self._writers: list[z3.BoolRef] = []
        self._waiters: list[z3.BoolRef] = []
        self._sealed = False

    def add_reader(self, holds_for_read: z3.BoolRef) -> None:
        self._add(self._readers, holds_for_read)

    def add_writer(self, holds_for_write: z3.BoolRef) -> None:
        self._add(self._writers, holds_for_write)

    def add_waiter(self, waits_for_write: z3.BoolRef) -> None:
        """A thread at a step whose next step takes the lock for write (queued: readers
        wait behind it)."""
        self._add(self._waiters, waits_for_write)

    def _add(self, holders: list[z3.BoolRef], term: z3.BoolRef) -> None:
        if self._sealed:
            raise RuntimeError("lock holders must be registered before any lock step is built")
        holders.append(term)

    def write_lockable(self) -> z3.BoolRef:
        """write_lock(&kvm->mmu_lock) would not block: nobody holds the lock."""
        self._sealed = True
        return _none_of(self._readers + self._writers)

    def read_lockable(self) -> z3.BoolRef:
        """read_lock(&kvm->mmu_lock) would not block: no thread holds it for write (nor,
        queued, waits for it)."""
        self._sealed = True
        return _none_of(self._writers + (self._waiters if self.queued else []))

    def read_held(self) -> z3.BoolRef:
        """Some thread holds the lock for read."""
        return z3.Or(*self._readers) if self._readers else z3.BoolVal(False)

    def write_held(self) -> z3.BoolRef:
        """A thread holds the lock for write across steps."""
        return z3.Or(*self._writers) if self._writers else z3.BoolVal(False)


def _none_of(holders: list[z3.BoolRef]) -> z3.BoolRef:
    return z3.And(*[z3.Not(h) for h in holders]) if holders else z3.BoolVal(True)
