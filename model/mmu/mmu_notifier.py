"""The primary MMU's invalidations of shared memory: an independent invalidating thread.

Kernel: kvm_mmu_notifier_invalidate_range_start() and _end() in virt/kvm/kvm_main.c. When
the host's mm changes the userspace mapping that backs shared guest memory (a THP split,
migration, munmap), it calls the notifier, which under mmu_lock held for write runs
kvm_mmu_invalidate_begin() (on_lock), kvm_mmu_invalidate_range_add() and
kvm_unmap_gfn_range() with KVM_FILTER_SHARED (only the direct root: the mirror and the
S-EPT map guest_memfd, not the host's mapping); _end() runs kvm_mmu_invalidate_end().
It takes neither slots_lock nor filemap_invalidate_lock, so it overlaps the ioctl
thread's conversions and punch-holes: mmu_invalidate_in_progress counts both and the
range is their union.

Abstractions: one invalidation in flight at a time (the mm's own serialisation is not
modelled, and two of its invalidations could overlap each other too); its ranges are
every [start, end) of the scenario's GFNs. Left out: the HVA-to-GFN translation across
memslots, the change_pte/age notifiers, guest_memfd's shared memory (in-place conversion
has no host mapping for the notifier to invalidate, so the scenario should not combine
them).
"""

from __future__ import annotations

import z3

from model.lang import EnumDomain, Field, IntDomain, ModelBuilder, Step, kernel

from .kvm import Kvm

ACTOR = "mm"
STEP = EnumDomain("mmu_notifier_step", ["IDLE", "STARTED"])


class MmuNotifier:
    def __init__(self, b: ModelBuilder, kvm: Kvm, invalidations: int) -> None:
        self.sizes, self.inval, self.lock, self.direct = kvm.sizes, kvm.inval, kvm.lock, kvm.direct
        self.invalidations = invalidations
        self.step: Field = b.field("mmu_notifier.step", STEP, "IDLE",
                                   "between invalidate_range_start() and _end()")
        self.count: Field = b.field("mmu_notifier.count", IntDomain(0, invalidations), 0,
                                    "invalidations the mm has started")

    def active(self) -> z3.BoolRef:
        """The notifier is between its start and its end: one invalidation in progress."""
        return self.step.var == STEP.STARTED

    def ended(self) -> z3.ArithRef:
        """The invalidations the notifier has ended (mmu_invalidate_seq bumps of its own)."""
        return self.count.var - z3.If(self.active(), 1, 0)

    def define(self, b: ModelBuilder) -> None:
        for start in range(self.sizes.gfns):
            for end in range(start + 1, self.sizes.gfns + 1):
                b.action(self.kvm_mmu_notifier_invalidate_range_start, ACTOR, start=start, end=end)
        b.action(self.kvm_mmu_notifier_invalidate_range_end, ACTOR)

    @kernel("kvm_mmu_notifier_invalidate_range_start")
    def kvm_mmu_notifier_invalidate_range_start(self, start: int, end: int) -> Step:
        """kvm_mmu_notifier_invalidate_range_start() for the shared GFNs [start, end):
        under mmu_lock for write, kvm_mmu_invalidate_begin() (in_progress++), the range
        added to the one in progress, and the direct root's leaves zapped. Left out:
        the TLB flush."""
        guard = z3.And(self.step.var == STEP.IDLE, self.count.var < self.invalidations,
                       self.lock.write_lockable())
        effect: dict[Field, object] = {**self.inval.begin_with_range(start, end), **self.direct.zap_leafs(start, end),
                                       self.step: STEP.STARTED, self.count: self.count.var + 1}
        return Step(f"mm: kvm_mmu_notifier_invalidate_range_start([g{start},g{end}))", guard, effect)

    @kernel("kvm_mmu_notifier_invalidate_range_end")
    def kvm_mmu_notifier_invalidate_range_end(self) -> Step:
        """kvm_mmu_notifier_invalidate_range_end(): kvm_mmu_invalidate_end() under mmu_lock
        for write (seq++, in_progress--)."""
        guard = z3.And(self.active(), self.lock.write_lockable())
        return Step("mm: kvm_mmu_notifier_invalidate_range_end()", guard,
                    {**self.inval.end(), self.step: STEP.IDLE})
