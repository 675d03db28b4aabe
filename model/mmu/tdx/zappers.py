"""Zaps that must never reach the mirror root: atomic (read-lock) zaps and fast zaps.

Kernel (~6.16): NX huge page recovery (kvm_nx_huge_page_recovery_worker ->
kvm_tdp_mmu_zap_possible_nx_huge_page) zaps a 4K table under mmu_lock held for read with
tdp_mmu_set_spte_atomic() and handle_removed_pt(shared=true); for a mirror SPTE
__tdp_mmu_set_spte_atomic() and handle_removed_pt() KVM_BUG_ON instead, because such a
zap cannot call remove_external_spte(). kvm_mmu_zap_all_fast() (a memslot update with
KVM_X86_QUIRK_SLOT_ZAP_ALL, an MMIO generation wrap) invalidates only KVM_DIRECT_ROOTS:
"External page tables don't support fast zapping".
"""

from __future__ import annotations

import z3

from model.lang import Family, Field, IntDomain, ModelBuilder, Step, kernel

from ..locks import MmuLock
from ..set_memory_attributes import ACTOR, IOCTL_STEP, SetMemoryAttributes
from ..tdp import Root
from ..values import SPTE_2M, SPTE_4K
from .propagation import CENTRAL, CentralPropagation
from .teardown import SeptTeardown

NX_RECOVERY = "NX recovery"  # the kvm-nx-lpage-recovery kthread


# what keeps zaps under the read lock off the mirror root, by tdx.propagation
DIRECT_ONLY = {
    "link-and-remove-hooks": (
        "zaps under mmu_lock held for read never write a mirror SPTE: "
        "__tdp_mmu_set_spte_atomic() refuses a non-present value for a mirror SPTE and "
        "handle_removed_pt() refuses shared=true for a mirror page table",
        "KVM_BUG_ON()s in __tdp_mmu_set_spte_atomic() and handle_removed_pt(), tdp_mmu.c",
    ),
    CENTRAL: (
        "zaps under mmu_lock held for read never reach a mirror root: no caller does one "
        "(the MMU's KVM_BUG_ON()s are gone; the zap would be propagated and bug the VM in TDX code)",
        "tdx_sept_set_private_spte() in arch/x86/kvm/vmx/tdx.c: \"(3) must be under write mmu_lock\"; "
        "41367d77ee4e, 6b1280a738f9",
    ),
}


class AtomicZaps:
    def __init__(self, b: ModelBuilder, direct: Root, mirror: Root, dirty: Family,
                 propagation: str, central: CentralPropagation | None) -> None:
        self.direct, self.mirror, self.dirty = direct, mirror, dirty
        self.central = central
        self.sizes = direct.sizes
        self.direct_only = b.guard("atomic-zap-direct-only", *DIRECT_ONLY[propagation])

    def bind(self, lock: MmuLock) -> None:
        self.lock = lock

    def define(self, b: ModelBuilder) -> None:
        roots = [self.direct] if self.direct_only else [self.direct, self.mirror]
        for root in roots:
            for r in range(self.sizes.huge_pages):
                b.action(self.kvm_tdp_mmu_zap_possible_nx_huge_page, NX_RECOVERY, root=root.name, region=r)

    @kernel("kvm_tdp_mmu_zap_possible_nx_huge_page")
    def kvm_tdp_mmu_zap_possible_nx_huge_page(self, root: str, region: int) -> Step:
        """The NX recovery worker's kvm_tdp_mmu_zap_possible_nx_huge_page(), under the read
        lock, zaps the 4K table of a region:
        tdp_mmu_set_spte_atomic(SHADOW_NONPRESENT_VALUE) of the 2M-level non-leaf, then
        handle_removed_pt(shared=true) writes every child non-present. With the hooks of
        tdx.propagation = link-and-remove-hooks nothing is told to the TDX module; with
        set_external_spte(old, new) the zap is propagated (CentralPropagation.zap_table).
        Left out: which tables the NX mitigation marks (any table may be picked), a child
        frozen by a fault (the worker waits; here it skips), the propagated SEAMCALLs as
        steps of their own."""
        r = self.direct if root == "direct" else self.mirror
        top = r.spte_2m[region]
        gfns = self.sizes.region_gfns(region)
        guard = z3.And(
            self.lock.read_lockable(),
            top.var == SPTE_2M.NONLEAF,
            *[r.spte_4k[g].var != SPTE_4K.FROZEN for g in gfns],
        )
        effect: dict[Field, object] = {top: SPTE_2M.NONPRESENT}
        effect |= {r.spte_4k[g]: SPTE_4K.NONPRESENT for g in gfns}
        told = ""
        if r is self.mirror:
            effect |= {self.dirty[g]: False for g in gfns}
            if self.central is not None:
                sept, told = self.central.zap_table(region)
                effect |= sept
                guard = z3.And(guard, z3.Not(self.central.sept.td.any_in_previous_epoch()))
        label = self.sizes.region_labels()[region]
        return Step(f"kvm_tdp_mmu_zap_possible_nx_huge_page({root}, 2M@{label}) under read_lock{told}",
                    guard, effect)


class FastZap:
    def __init__(self, b: ModelBuilder, direct: Root, max_changes: int) -> None:
        self.direct = direct
        self.sizes = direct.sizes
        self.max_changes = max_changes
        self.changes: Field = b.field(
            "memslot_updates", IntDomain(0, max_changes), 0,
            "memslot updates (of another slot) made so far, bounded by the scenario",
        )
        self.direct_only = b.guard(
            "fast-zap-direct-only",
            "kvm_mmu_zap_all_fast() invalidates only KVM_DIRECT_ROOTS; a TDX VM zaps only the "
            "leaves of the memslot being changed (no KVM_X86_QUIRK_SLOT_ZAP_ALL)",
            "kvm_mmu_zap_all_fast() and kvm_memslot_flush_zap_all() in arch/x86/kvm/mmu/mmu.c",
        )

    def bind(self, ioctl: SetMemoryAttributes, lock: MmuLock, teardown: SeptTeardown) -> None:
        self.ioctl, self.lock, self.teardown = ioctl, lock, teardown

    def define(self, b: ModelBuilder) -> None:
        if self.max_changes:
            b.action(self.kvm_mmu_zap_all_fast, ACTOR)

    @kernel("kvm_mmu_zap_all_fast")
    def kvm_mmu_zap_all_fast(self) -> Step:
        """A memslot update of another slot (or an MMIO generation wrap) calls
        kvm_mmu_zap_all_fast() under mmu_lock for write: the direct root is invalidated
        and all its SPTEs go. Without guard `fast-zap-direct-only` the mirror root goes
        too: its leaves are torn down (BLOCK, TRACK, REMOVE) although none of them is in
        the slot being changed. Left out: the obsolete-root generation, the slot itself."""
        io = self.ioctl
        n = self.sizes.gfns
        guard = z3.And(io.step.var == IOCTL_STEP.IDLE, self.changes.var < self.max_changes,
                       self.lock.write_lockable())
        effect: dict[Field, object] = {self.changes: self.changes.var + 1}
        effect |= {t: SPTE_2M.NONPRESENT for t in self.direct.spte_2m}
        effect |= {s: SPTE_4K.NONPRESENT for s in self.direct.spte_4k}
        if not self.direct_only:
            effect |= self.teardown.start(0, n, "SLOT_ZAP")
        roots = "direct roots" if self.direct_only else "direct and mirror roots"
        return Step(f"kvm_mmu_zap_all_fast(): invalidate {roots}", guard, effect)
