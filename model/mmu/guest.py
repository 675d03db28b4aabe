"""What the TD itself does: enter and leave, cache translations, accept pages, fault.

Kernel side: tdx_vcpu_run() (TDH.VP.ENTER, refused while wait_for_sept_zap is set),
tdx_handle_ept_violation(); TDX module side: the TD epoch and TLB flush on entry,
TDG.MEM.PAGE.ACCEPT. Guest side: a Linux TD accepts private memory before it relies on
its contents.

Abstractions:
- A vCPU in the TD runs at the current TD epoch or at the previous one; TDH.MEM.TRACK
  moves the first to the second and refuses while any vCPU is at the second. A vCPU that
  left the TD before a TRACK flushes its TLB when it enters again; the model flushes it
  at once (at the TRACK, or when a vCPU at the previous epoch leaves).
- The TLB holds the private translations a vCPU used (one bit per GFN).
- The guest touches (reads or writes) or accepts private GFNs freely (option
  `touch_unaccepted = false`: only pages it accepted), but never touches a PENDING page
  it has not accepted (that kills the TD: the guest's bug, not KVM's).
- A vCPU leaves the TD only on an EPT violation or a kick; other exits are left out.
- TDX treats every S-EPT violation as a write (tdx_handle_ept_violation() sets
  exit_qual = EPT_VIOLATION_ACC_WRITE: private pages are always mapped writable), so a
  private fault from the TD always makes a dirty, accessed leaf. A leaf made otherwise
  comes from KVM_PRE_FAULT_MEMORY (option `pre_faults`): kvm_tdp_map_page() faults with
  prefetch = true and no PFERR_WRITE_MASK, and make_spte() leaves the A/D bits clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import z3

from model.lang import BOOL, Component, Family, Field, IntDomain, ModelBuilder, Option, Step, kernel, resolve

from .fault import FaultPath, vcpu_actor
from .sizes import Sizes
from .tdp import Root
from .tdx.component import TdxComponent
from .tdx.sept import ExternalSept
from .values import SEPT_4K, VCPU_MODE


class Td:
    """The TD's vCPUs as the TDX module and KVM see them (implements sept.TdView)."""

    def __init__(self, b: ModelBuilder, sept: ExternalSept, fault: FaultPath, direct: Root,
                 touch_unaccepted: bool = True, max_pre_faults: int = 0) -> None:
        self.sept, self.fault, self.direct = sept, fault, direct
        self.touch_unaccepted = touch_unaccepted
        self.max_pre_faults = max_pre_faults
        self.pre_faults: Field | None = None
        if max_pre_faults:
            self.pre_faults = b.field("pre_faults", IntDomain(0, max_pre_faults), 0,
                                      "KVM_PRE_FAULT_MEMORY calls made so far, bounded by the scenario")
        self.accepting: Family | None = None  # set by the huge-page component
        self.accepting_4k: Family | None = None  # set by the huge-page component (accept_until_done)
        self.sizes = fault.sizes
        vcpus, gfns = self.sizes.vcpu_labels(), self.sizes.gfn_labels()
        self.mode: Family = b.family(
            "td.vcpu_mode", vcpus, VCPU_MODE, "OUTSIDE_GUEST_MODE",
            "whether the vCPU runs in the TD, and at which TD epoch it entered",
        )
        self.tlb: list[Family] = [
            b.family(f"td.tlb.vcpu{v}", gfns, BOOL, False,
                     f"vCPU{v}'s TLB holds a private translation of the GFN")
            for v in range(self.sizes.vcpus)
        ]
        self.accepted: Family = b.family(
            "td.accepted", gfns, BOOL, False,
            "the guest accepted the page (TDG.MEM.PAGE.ACCEPT) and relies on its contents",
        )

    # -- sept.TdView ----------------------------------------------------------------

    def in_guest(self, v: int) -> z3.BoolRef:
        return self.mode[v].var != VCPU_MODE.OUTSIDE_GUEST_MODE

    def any_in_guest(self) -> z3.BoolRef:
        return z3.Or(*[self.in_guest(v) for v in range(self.sizes.vcpus)])

    def any_in_previous_epoch(self) -> z3.BoolRef:
        return z3.Or(*[self.mode[v].var == VCPU_MODE.IN_GUEST_PREVIOUS for v in range(self.sizes.vcpus)])

    def leave(self, v: int) -> dict[Field, object]:
        """The vCPU leaves the TD; a TLB from before the last TRACK is flushed."""
        old = self.mode[v].var == VCPU_MODE.IN_GUEST_PREVIOUS
        out: dict[Field, object] = {self.mode[v]: VCPU_MODE.OUTSIDE_GUEST_MODE}
        out |= {t: z3.If(old, False, t.var) for t in self.tlb[v]}
        return out

    def kick(self) -> dict[Field, object]:
        out: dict[Field, object] = {}
        for v in range(self.sizes.vcpus):
            out |= self.leave(v)
        return out

    def track(self) -> dict[Field, object]:
        out: dict[Field, object] = {}
        for v in range(self.sizes.vcpus):
            inside = self.in_guest(v)
            out[self.mode[v]] = z3.If(inside, VCPU_MODE.IN_GUEST_PREVIOUS, self.mode[v].var)
            out |= {t: z3.If(inside, t.var, False) for t in self.tlb[v]}
        return out

    def discard(self, gfn: int) -> dict[Field, object]:
        return {self.accepted[gfn]: False}

    def runs(self, v: int) -> z3.BoolRef:
        """vCPU v runs guest code of its choice: it is in the TD and not re-executing a
        TDG.MEM.PAGE.ACCEPT that exited (the huge-page component tracks those)."""
        busy = [f[v].var != 0 for f in (self.accepting, self.accepting_4k) if f is not None]
        return z3.And(self.in_guest(v), *[z3.Not(b) for b in busy])

    def accepts(self, v: int, gfn: int) -> z3.BoolRef:
        """vCPU v's guest code is at TDG.MEM.PAGE.ACCEPT(gfn, 4K): a fresh one, or the one
        it re-executes after an EPT violation."""
        if self.accepting_4k is None:
            return self.runs(v)
        again = z3.And(self.in_guest(v), self.accepting_4k[v].var == gfn + 1,
                       *([self.accepting[v].var == 0] if self.accepting is not None else []))
        return z3.Or(self.runs(v), again)

    def accepted_4k(self, v: int) -> dict[Field, object]:
        """The vCPU's 4K ACCEPT is done: it runs guest code of its choice again."""
        return {self.accepting_4k[v]: 0} if self.accepting_4k is not None else {}

    def untouched(self, region: int) -> z3.BoolRef:
        """Nothing of the region is mapped in the S-EPT or accepted by the guest."""
        gfns = self.sizes.region_gfns(region)
        return z3.And(*[z3.And(z3.Not(self.sept.leaf_present(g)), z3.Not(self.accepted[g].var)) for g in gfns])

    # -- actions --------------------------------------------------------------------

    def define(self, b: ModelBuilder, write: Family) -> None:
        self.write = write
        for v in range(self.sizes.vcpus):
            actor = vcpu_actor(v)
            b.action(self.tdh_vp_enter, actor, vcpu=v)
            for g in range(self.sizes.gfns):
                b.action(self.tdg_mem_page_accept, actor, vcpu=v, gfn=g)
                b.action(self.tlb_fill, actor, vcpu=v, gfn=g)
                b.action(self.tdx_handle_ept_violation, actor, vcpu=v, gfn=g, private=True, write=True)
                b.action(self.tdx_handle_ept_violation, actor, vcpu=v, gfn=g, private=False, write=False)
                if self.pre_faults is not None:
                    b.action(self.kvm_arch_vcpu_pre_fault_memory, actor, vcpu=v, gfn=g)

    @kernel("tdh_vp_enter")
    def tdh_vp_enter(self, vcpu: int) -> Step:
        """tdx_vcpu_run() -> tdh_vp_enter(): TDH.VP.ENTER: the vCPU enters the TD at the current epoch.
        tdx_vcpu_run() refuses while wait_for_sept_zap is set. Left out: a BUSY from
        TDH.VP.ENTER itself, pending events."""
        guard = z3.And(
            self.mode[vcpu].var == VCPU_MODE.OUTSIDE_GUEST_MODE,
            self.fault.idle(vcpu),
            z3.Not(self.sept.wait_for_sept_zap.var),
        )
        return Step("TDH.VP.ENTER", guard, {self.mode[vcpu]: VCPU_MODE.IN_GUEST_CURRENT})

    @kernel("try_accept_one")
    def tdg_mem_page_accept(self, vcpu: int, gfn: int) -> Step:
        """The guest's try_accept_one() -> TDG.MEM.PAGE.ACCEPT of a PENDING page: the module zeroes it and
        marks it MAPPED; the guest now relies on its contents. (On a page the S-EPT does
        not map, the module reports an EPT violation instead: see
        tdx_handle_ept_violation.)"""
        s = self.sept.sept_4k[gfn]
        guard = z3.And(self.accepts(vcpu, gfn), z3.Not(self.accepted[gfn].var),
                       self.sept.table_present(gfn), s.var == SEPT_4K.PENDING)
        return Step(f"TD: TDG.MEM.PAGE.ACCEPT(g{gfn}) -> TDX_SUCCESS", guard,
                    {s: SEPT_4K.MAPPED, self.accepted[gfn]: True, **self.accepted_4k(vcpu)})

    @kernel("TLB fill")
    def tlb_fill(self, vcpu: int, gfn: int) -> Step:
        """TLB fill: the guest uses an accepted page through the S-EPT and the vCPU's
        TLB caches the translation, which it keeps using until a flush."""
        tlb = self.tlb[vcpu][gfn]
        guard = z3.And(self.runs(vcpu), self.accepted[gfn].var, z3.Not(tlb.var),
                       self.sept.state(gfn, "MAPPED", "MAPPED"))
        return Step(f"TD: access g{gfn} (TLB fill)", guard, {tlb: True})

    @kernel("tdx_handle_ept_violation")
    def tdx_handle_ept_violation(self, vcpu: int, gfn: int, private: bool, write: bool) -> Step:
        """The guest touches or accepts a GFN the hardware does not map (the S-EPT for a
        private GPA, the shared EPT for a shared one): the vCPU leaves the TD with an EPT
        violation and tdx_handle_ept_violation() -> kvm_mmu_faultin_pfn() snapshots
        fault->mmu_seq. A private one is always a write ("Always treat SEPT violations as
        write faults"). Left out: the local retry loop (the vCPU enters and faults again
        instead), the access type of a shared one (a read here)."""
        if private:
            unmapped = z3.Not(self.sept.leaf_present(gfn))
            if not self.touch_unaccepted:  # a Linux TD touches only what it accepted
                unmapped = z3.And(unmapped, self.accepted[gfn].var)
        else:
            unmapped = z3.Not(self.direct.maps(gfn))
        effect = {**self.leave(vcpu), **self.fault.begin(vcpu, gfn, private), self.write[vcpu]: write}
        access = "write" if write else "read"
        kind = "private" if private else "shared"
        return Step(f"TD exit: EPT violation g{gfn} ({kind} {access}); kvm_mmu_faultin_pfn(): fault->mmu_seq",
                    z3.And(self.runs(vcpu), unmapped), effect)


    @kernel("kvm_arch_vcpu_pre_fault_memory")
    def kvm_arch_vcpu_pre_fault_memory(self, vcpu: int, gfn: int) -> Step:
        """Userspace calls KVM_PRE_FAULT_MEMORY on a vCPU outside the TD (allowed once the
        TD is finalized): kvm_arch_vcpu_pre_fault_memory() -> kvm_tdp_map_page() runs a
        private fault with prefetch = true and no PFERR_WRITE_MASK, so the leaf it makes
        has its A/D bits clear. Left out: a shared GFN (a shared fault on the direct
        root), the loop that retries on RET_PF_RETRY (userspace calls again)."""
        assert self.pre_faults is not None
        guard = z3.And(self.mode[vcpu].var == VCPU_MODE.OUTSIDE_GUEST_MODE, self.fault.idle(vcpu),
                       self.fault.attrs.is_private(gfn), self.pre_faults.var < self.max_pre_faults)
        effect = {**self.fault.begin(vcpu, gfn, True), self.write[vcpu]: False,
                  self.pre_faults: self.pre_faults.var + 1}
        return Step(f"KVM_PRE_FAULT_MEMORY(g{gfn}): kvm_tdp_map_page(prefetch, read); kvm_mmu_faultin_pfn()",
                    guard, effect)


class GuestComponent(Component):
    """The TD's vCPUs: enter/leave with the TD epoch, TLBs, ACCEPT, EPT violations."""

    name = "guest"
    summary = (
        "TD vCPUs entering and leaving the TD at a TD epoch, per-vCPU TLBs of private "
        "translations, TDG.MEM.PAGE.ACCEPT, and EPT violations that start faults"
    )
    requires = ("tdx",)
    options = (
        Option("touch_unaccepted", bool, True,
               "the guest may touch private pages it has not accepted (false: a Linux TD, "
               "which accepts before it touches)"),
        Option("pre_faults", int, 0,
               "KVM_PRE_FAULT_MEMORY calls allowed (each maps a private GFN with its A/D bits clear)",
               minimum=0, maximum=2),
    )

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)

    def configure(self, enabled: Mapping[str, Component]) -> None:
        attrs = enabled["attributes"]
        attrs.fault_refinement.entry_elsewhere = True  # type: ignore[attr-defined]

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        tdx = deps["tdx"]
        assert isinstance(tdx, TdxComponent)
        kvm = tdx.kvm
        self.td = Td(b, tdx.sept, tdx.fault, kvm.direct, self.config["touch_unaccepted"], self.config["pre_faults"])
        tdx.sept.td = self.td
        self.write = tdx.mirror_fault.write

    def define(self, b: ModelBuilder) -> None:
        self.td.define(b, self.write)
