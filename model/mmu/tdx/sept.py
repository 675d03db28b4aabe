"""The external (S-EPT) page table as the TDX module holds it, and the TD's side of it.

Kernel: arch/x86/kvm/vmx/tdx.c and the TDX module ABI. KVM never reads the S-EPT; it
learns its state only from SEAMCALL results. The model keeps the module's view so that
the module can act as an oracle: each SEAMCALL checks the preconditions of the TDX module
specification and returns TDX_SUCCESS, TDX_OPERAND_BUSY or an error (which KVM treats as
a bug: KVM_BUG_ON, and the VM is marked bugged).

Abstractions: one S-EPT entry per 2M region (free or a non-leaf) and one per GFN; a
leaf's pfn is its GFN's guest_memfd page; the TD epoch is kept relative (how many
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
    def __init__(self, b: ModelBuilder, sizes: Sizes) -> None:
        self.sizes = sizes
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

    def leaf_present(self, gfn: int) -> z3.BoolRef:
        """A leaf the hardware walks: PENDING or MAPPED under a present table."""
        s = self.sept_4k[gfn].var
        return z3.And(self.table_present(gfn), z3.Or(s == SEPT_4K.PENDING, s == SEPT_4K.MAPPED))

    def leaf_exists(self, gfn: int) -> z3.BoolRef:
        """The module holds a leaf for gfn in any state (it still maps the page)."""
        return self.sept_4k[gfn].var != SEPT_4K.FREE

    def blocked(self, gfn: int) -> z3.BoolRef:
        s = self.sept_4k[gfn].var
        return z3.Or(s == SEPT_4K.BLOCKED, s == SEPT_4K.PENDING_BLOCKED)

    def tracked(self, gfn: int) -> z3.BoolRef:
        """is_tlb_tracked(bepoch): the TD epoch moved past the blocking epoch and no vCPU
        still runs at an epoch as old as it."""
        age = self.bepoch[gfn].var
        return z3.Or(
            age == BLOCK_AGE.OLDER,
            z3.And(age == BLOCK_AGE.PREVIOUS, z3.Not(self.td.any_in_previous_epoch())),
        )

    def bug(self) -> dict[Field, object]:
        """KVM_BUG_ON(err, kvm): kvm_vm_bugged()."""
        return {self.vm_bugged: True}

    def age_blocked_entries(self) -> dict[Field, object]:
        """TDH.MEM.TRACK advanced the TD epoch: every blocking epoch is one older."""
        out: dict[Field, object] = {}
        for g in range(self.sizes.gfns):
            age = self.bepoch[g].var
            out[self.bepoch[g]] = z3.If(
                self.blocked(g),
                z3.If(age == BLOCK_AGE.CURRENT, BLOCK_AGE.PREVIOUS, BLOCK_AGE.OLDER),
                age,
            )
        return out
