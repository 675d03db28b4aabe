"""3d626ce5a8cc KVM: TDX: Add macro to retry SEAMCALLs when forcing vCPUs out of guest (6.19), against v6.16.

With its neighbours in the series (v3 <20251017003244.186495-1-seanjc@google.com>): 14c9938619be and b836503300dc
fold tdx_sept_zap_private_spte() and tdx_sept_drop_private_spte() into tdx_sept_remove_private_spte(), 597d7068702f
brings TDX_BUG_ON(), 2ff14116982c asserts mmu_lock held for write on every removal. A TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK
or TDH.MEM.PAGE.REMOVE that returns TDX_OPERAND_BUSY is retried once inside tdh_do_no_vcpus() (wait_for_sept_zap set,
every vCPU kicked, one retry, cleared) instead of between tdx_no_vcpus_enter_start() and _stop(): the same steps,
renamed. Its one functional change (Rick Edgecombe, <9e55a0e767317d20fc45575c4ed6dafa863e1ca0.camel@intel.com>):
lockdep_assert_held_write(&kvm->mmu_lock) runs on every call, not only on the BUSY path (at v6.16 only tdx_track()
asserted on every call). The model has no lockdep: `tdh_do_no_vcpus_held_write` checks the assertion where it runs,
in every state in which the tear-down is about to issue BLOCK, TRACK or REMOVE.
"""

import z3

from invariants import Invariant, Kind
from model.lang import Extension, Model, ModelBuilder
from model.mmu.tdx.teardown import BUSY_TEXT

BUSY = ("tdh_mem_range_block_busy", "tdh_mem_track_busy", "tdh_mem_page_remove_busy")


def _held_write(m: Model) -> z3.BoolRef:
    """At BLOCK, TRACK or REMOVE (the call tdh_do_no_vcpus() wraps) mmu_lock is held for write."""
    t = m.parts["tdx"]
    z = t.teardown
    calling = z3.Or(*[z.step.var == z.steps.code(s) for s in ("BLOCK", "TRACK", "REMOVE")])
    return z3.Implies(calling, t.kvm.lock.write_held())


class TdhDoNoVcpus(Extension):
    name = "tdh_do_no_vcpus"
    summary = "3d626ce5a8cc KVM: TDX: Add macro to retry SEAMCALLs when forcing vCPUs out of guest"
    requires = ("tdx",)
    properties = (Invariant(
        "tdh_do_no_vcpus_held_write", Kind.ALWAYS,
        "every tear-down SEAMCALL (BLOCK, TRACK, REMOVE) is issued with mmu_lock held for write",
        "lockdep_assert_held_write(&kvm->mmu_lock) in tdh_do_no_vcpus(), arch/x86/kvm/vmx/tdx.c (3d626ce5a8cc)",
        ("tdx",), _held_write), Invariant(
        "tdh_do_no_vcpus_retried", Kind.SOMETIMES,
        "a tear-down SEAMCALL returned TDX_OPERAND_BUSY: wait_for_sept_zap is set and the call is retried",
        "tdh_do_no_vcpus(), arch/x86/kvm/vmx/tdx.c (3d626ce5a8cc)",
        ("tdx",), lambda m: m.parts["tdx"].sept.wait_for_sept_zap.var))

    def define(self, b: ModelBuilder) -> None:
        old, new = BUSY_TEXT["tdx_no_vcpus_enter"], BUSY_TEXT["tdh_do_no_vcpus"]
        busy = b.actions(*BUSY, missing_ok=True)  # no tdh_mem_track_busy without guard track-before-remove
        b.refine(busy, "the single retry after TDX_OPERAND_BUSY is tdh_do_no_vcpus(), folded into "
                 "tdx_sept_remove_private_spte() and tdx_track()", text=lambda a: a.text.replace(old, new))
