"""The external (S-EPT) page table as the TDX module holds it, and the TD's side of it.

Kernel: arch/x86/kvm/vmx/tdx.c and the TDX module ABI. KVM never reads the S-EPT; it
learns its state only from SEAMCALL results. The model keeps the module's view so that
the module can act as an oracle: each SEAMCALL checks the preconditions of the TDX module
specification and returns TDX_SUCCESS, TDX_OPERAND_BUSY or an error (which KVM treats as
a bug: KVM_BUG_ON, and the VM is marked bugged).

Abstractions: one S-EPT entry per 2M region (free, a non-leaf, or with huge pages a 2M
leaf) and one per GFN; a leaf's pfn is its GFN's guest_memfd page (a 2M leaf maps the
region's pages, contiguous by construction); the TD epoch is kept relative (how many
TDH.MEM.TRACKs ago an entry was blocked) instead of as a counter.
"""

from __future__ import annotations

from typing import Protocol

import z3

from model.lang import BOOL, Family, Field, ModelBuilder

from ..sizes import Sizes
from ..values import BLOCK_AGE, SEPT_2M, SEPT_4K

MODULE = "TDX module"  # the actor of every SEAMCALL result


class TdView(Protocol):
    """What the TDX module needs to know about the TD's vCPUs (the guest component)."""

    def any_in_guest(self) -> z3.BoolRef: ...
    def any_in_previous_epoch(self) -> z3.BoolRef: ...
    def kick(self) -> dict[Field, object]: ...
    def track(self) -> dict[Field, object]: ...
    def discard(self, gfn: int) -> dict[Field, object]: ...


class NoGuest:
    """No guest component: no vCPU ever runs in the TD, so nothing contends or caches."""

    def any_in_guest(self) -> z3.BoolRef:
        return z3.BoolVal(False)

    def any_in_previous_epoch(self) -> z3.BoolRef:
        return z3.BoolVal(False)

    def kick(self) -> dict[Field, object]:
        return {}

    def track(self) -> dict[Field, object]:
        return {}

    def discard(self, gfn: int) -> dict[Field, object]:
        return {}


class ExternalSept:
    def __init__(self, b: ModelBuilder, sizes: Sizes, huge: bool = False) -> None:
        self.sizes = sizes
        self.huge = huge
        self.td: TdView = NoGuest()
        self.sept_2m: Family = b.family(
            "sept_2m", sizes.region_labels(), SEPT_2M, "FREE",
            "the S-EPT entry at the 2M level (TDH.MEM.SEPT.ADD makes it a non-leaf)",
        )
        self.sept_4k: Family = b.family(
            "sept_4k", sizes.gfn_labels(), SEPT_4K, "FREE", "the S-EPT leaf of each GFN",
        )
        self.bepoch: Family = b.family(
            "sept_bepoch", sizes.gfn_labels(), BLOCK_AGE, "CURRENT",
            "the blocking epoch of a blocked leaf, relative to the TD epoch",
        )
        self.bepoch_2m: Family | None = None
        if huge:
            self.bepoch_2m = b.family(
                "sept_bepoch_2m", sizes.region_labels(), BLOCK_AGE, "CURRENT",
                "the blocking epoch of a blocked 2M entry, relative to the TD epoch",
            )
        self.vm_bugged: Field = b.field(
            "kvm->vm_bugged", BOOL, False,
            "KVM_BUG_ON() fired: a SEAMCALL failed in a way KVM does not handle",
        )
        self.wait_for_sept_zap: Field = b.field(
            "kvm_tdx->wait_for_sept_zap", BOOL, False,
            "set by tdx_no_vcpus_enter_start(): tdx_vcpu_run() refuses to enter the TD",
        )

    # -- the module's view -------------------------------------------------------------

    def table_present(self, gfn: int) -> z3.BoolRef:
        return self.sept_2m[self.sizes.region_of(gfn)].var == SEPT_2M.NONLEAF

    def entry_2m(self, gfn: int) -> z3.ArithRef:
        return self.sept_2m[self.sizes.region_of(gfn)].var

    def huge_leaf(self, region: int) -> z3.BoolRef:
        """A 2M leaf the hardware walks (PENDING or MAPPED)."""
        s = self.sept_2m[region].var
        return z3.Or(s == SEPT_2M.PENDING, s == SEPT_2M.MAPPED)

    def huge_leaf_exists(self, region: int) -> z3.BoolRef:
        """The module holds a 2M leaf for the region in any state."""
        s = self.sept_2m[region].var
        return z3.Or(*[s == SEPT_2M.code(x) for x in ("PENDING", "MAPPED", "BLOCKED", "PENDING_BLOCKED")])

    def leaf_present(self, gfn: int) -> z3.BoolRef:
        """A leaf the hardware walks: PENDING or MAPPED, at 4K under a present table or at 2M."""
        s = self.sept_4k[gfn].var
        small = z3.And(self.table_present(gfn), z3.Or(s == SEPT_4K.PENDING, s == SEPT_4K.MAPPED))
        return z3.Or(small, self.huge_leaf(self.sizes.region_of(gfn))) if self.huge else small

    def state(self, gfn: int, small: str, huge: str) -> z3.BoolRef:
        """gfn is mapped by a 4K leaf in state `small` or by a 2M leaf in state `huge`."""
        at_4k = z3.And(self.table_present(gfn), self.sept_4k[gfn].var == SEPT_4K.code(small))
        if not self.huge:
            return at_4k
        return z3.Or(at_4k, self.entry_2m(gfn) == SEPT_2M.code(huge))

    def keeps_accepted(self, gfn: int) -> z3.BoolRef:
        """The module still holds gfn's accepted contents: a MAPPED or BLOCKED leaf at 4K
        (under a table, blocked or not) or at 2M."""
        s = self.sept_4k[gfn].var
        table = self.table_present(gfn)
        if self.huge:
            table = z3.Or(table, self.entry_2m(gfn) == SEPT_2M.NONLEAF_BLOCKED)
        small = z3.And(table, z3.Or(s == SEPT_4K.MAPPED, s == SEPT_4K.BLOCKED))
        if not self.huge:
            return small
        big = self.entry_2m(gfn)
        return z3.Or(small, big == SEPT_2M.MAPPED, big == SEPT_2M.BLOCKED)

    def leaf_exists(self, gfn: int) -> z3.BoolRef:
        """The module holds a leaf for gfn in any state (it still maps the page)."""
        small = self.sept_4k[gfn].var != SEPT_4K.FREE
        return z3.Or(small, self.huge_leaf_exists(self.sizes.region_of(gfn))) if self.huge else small

    def blocked(self, gfn: int) -> z3.BoolRef:
        s = self.sept_4k[gfn].var
        return z3.Or(s == SEPT_4K.BLOCKED, s == SEPT_4K.PENDING_BLOCKED)

    def blocked_2m(self, region: int) -> z3.BoolRef:
        s = self.sept_2m[region].var
        return z3.Or(*[s == SEPT_2M.code(x) for x in ("BLOCKED", "PENDING_BLOCKED", "NONLEAF_BLOCKED")])

    def _tracked(self, age: z3.ArithRef) -> z3.BoolRef:
        return z3.Or(
            age == BLOCK_AGE.OLDER,
            z3.And(age == BLOCK_AGE.PREVIOUS, z3.Not(self.td.any_in_previous_epoch())),
        )

    def tracked(self, gfn: int) -> z3.BoolRef:
        """is_tlb_tracked(bepoch): the TD epoch moved past the blocking epoch and no vCPU
        still runs at an epoch as old as it."""
        return self._tracked(self.bepoch[gfn].var)

    def tracked_2m(self, region: int) -> z3.BoolRef:
        assert self.bepoch_2m is not None
        return self._tracked(self.bepoch_2m[region].var)

    def bug(self) -> dict[Field, object]:
        """KVM_BUG_ON(err, kvm): kvm_vm_bugged()."""
        return {self.vm_bugged: True}

    def age_blocked_entries(self) -> dict[Field, object]:
        """TDH.MEM.TRACK advanced the TD epoch: every blocking epoch is one older."""
        out: dict[Field, object] = {}
        entries = [(self.bepoch[g], self.blocked(g)) for g in range(self.sizes.gfns)]
        if self.bepoch_2m is not None:
            entries += [(self.bepoch_2m[r], self.blocked_2m(r)) for r in range(self.sizes.huge_pages)]
        for field, blocked in entries:
            age = field.var
            out[field] = z3.If(blocked, z3.If(age == BLOCK_AGE.CURRENT, BLOCK_AGE.PREVIOUS, BLOCK_AGE.OLDER), age)
        return out
