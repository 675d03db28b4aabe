"""The `mmio` component: MMIO SPTEs of one or more VMs (VMX and TDX) side by side.

Kernel: arch/x86/kvm/mmu/mmu.c (kvm_handle_noslot_fault, handle_mmio_page_fault,
check_mmio_spte, kvm_mmu_init_vm), arch/x86/kvm/x86.h (vcpu_cache_mmio_info,
vcpu_match_mmio_gen), arch/x86/kvm/mmu/spte.c (make_mmio_spte, make_spte),
arch/x86/kvm/mmu/tdp_mmu.c (tdp_mmu_map_handle_target_level, tdp_mmu_zap_spte_atomic),
virt/kvm/kvm_main.c (kvm_swap_active_memslots), arch/x86/kvm/vmx/tdx.c (tdx_vm_init,
tdx_bringup, tdx_emulate_mmio) and vmx/main.c (vt_check_emulate_instruction).

The world: each VM has its own GFNs (all shared: MMIO lives in the direct/shared EPT),
each with a memslot or none, one leaf SPTE per GFN (a named bit pattern, spte.py) and
the MMIO generation stored in it; the memslots generation and its update-in-progress
bit; its vCPUs, each running in the guest or handling one access; one ioctl thread
that creates the VM and then memslots over GFNs that had none; one NX-recovery thread
that zaps a present leaf atomically (the only source of FROZEN_SPTE here).

Abstractions:
- One address space, so the generation moves by 1 per update; it never wraps (so
  kvm_mmu_invalidate_mmio_sptes() never zaps). Memslots are only created.
- mmu_lock and the invalidation sequence are left out: nothing here invalidates, and a
  leaf write is one atomic step.
- An emulated access completes in the step that decides it is MMIO; userspace's
  KVM_EXIT_MMIO round trip is not modelled.
- FNAME(sync_spte) (shadow EPT, a nested guest revoking access) is a step of a VMX vCPU
  between accesses; the rest of shadow paging is left out.
- A VMX vCPU never gets #VE (CONFIG_KVM_INTEL_PROVE_VE off): an SPTE that would raise
  one is caught by `ve_only_where_intended` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import z3

from model.lang import (
    BOOL,
    Component,
    EnumDomain,
    Family,
    Field,
    IntDomain,
    ModelBuilder,
    Option,
    OptionError,
    Step,
    case_split,
    choose,
    decide,
    kernel,
    resolve,
    shown,
    word,
)

from ..sizes import Sizes
from . import spte as bits
from .spte import MMIO_VALUE, MMIO_VALUE_WORD, SPTE, SPTE_WORD

VM_TYPES = ("vmx", "tdx")

# Where a vCPU is in handling one access to `vcpu_gfn`.
MMIO_PC = EnumDomain("vcpu_pc", [
    "IN_GUEST",  # running, no access outstanding
    "ACCESS",  # the access instruction is (re-)executing in the guest
    "PAGE_FAULT",  # kvm_mmu_page_fault() after an EPT violation
    "MAP",  # kvm_faultin_pfn() done: tdp_mmu_map_handle_target_level() next
    "EMULATE",  # RET_PF_EMULATE: x86_emulate_instruction() next
    "TDVMCALL_MMIO",  # the TD took #VE and asked for TDG.VP.VMCALL<MMIO>
])

# kvm_swap_active_memslots() in two halves.
MEMSLOT_UPDATE = EnumDomain("memslot_update", ["IDLE", "HALFWAY"])

# tdp_mmu_zap_spte_atomic() in two halves.
ZAP = EnumDomain("nx_recovery", ["IDLE", "FROZEN"])


@dataclass(frozen=True)
class Vm:
    index: int
    type: str  # "vmx" | "tdx"

    @property
    def label(self) -> str:
        return f"{self.type}{self.index}"

    @property
    def is_td(self) -> bool:
        return self.type == "tdx"

    def __str__(self) -> str:
        return self.label


class MmioComponent(Component):
    """MMIO SPTEs, generations and per-VM MMIO values of VMX and TDX VMs."""

    name = "mmio"
    summary = (
        "per-VM shadow_mmio_value (VMX misconfig value, 0 for a TD), MMIO SPTEs at the bit level, "
        "memslot generations with the update-in-progress bit, the vCPU MMIO cache, "
        "enable_mmio_caching, #VE and TDVMCALL<MMIO>; several VMs of different types side by side"
    )
    options = (
        Option("vms", list, ["vmx"], "the VMs, one type each: 'vmx' or 'tdx' (e.g. ['vmx', 'tdx'])"),
        Option("memslots", str, "",
               "one letter per GFN of each VM: R (a memslot: RAM) or - (none: MMIO); default R then -"),
        Option("memslot_creations", list, [],
               "memslots userspace creates later, one integer per VM (0..2); default 1 per VMX VM, 0 per TD"),
        Option("mmio_caching", bool, True, "the kvm module parameter mmio_caching (enable_mmio_caching)"),
        Option("nx_recovery_zaps", int, 1, "atomic zaps of a present leaf per VM (FROZEN_SPTE)",
               minimum=0, maximum=2),
        Option("sync_spte", int, 1, "resyncs, per VMX VM, of a leaf whose nested guest entry grants nothing",
               minimum=0, maximum=2),
    )

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        c = self.config = resolve(self.options, options)
        vms = c["vms"]
        if not vms or len(vms) > 2 or any(t not in VM_TYPES for t in vms):
            raise OptionError("vms", f"{shown(vms)} is not a list of one or two VM types",
                              "['vmx'], ['tdx'], ['vmx', 'tdx'], ['tdx', 'tdx'], ...")
        self.vms = [Vm(i, t) for i, t in enumerate(vms)]
        n = sizes.gfns
        slots = c["memslots"] or "R" + "-" * (n - 1)
        if len(slots) != n or set(slots) - {"R", "-"}:
            raise OptionError("memslots", f"{shown(slots)} does not describe {n} GFNs", f"{n} letters R or -")
        self.initial_slots = [ch == "R" for ch in slots]
        creations = c["memslot_creations"] or [0 if vm.is_td else 1 for vm in self.vms]
        if len(creations) != len(self.vms) or any(
            isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 2 for k in creations
        ):
            raise OptionError("memslot_creations", f"{shown(creations)} is not one integer 0..2 per VM",
                              f"a list of {len(self.vms)} integers in 0..2")
        self.creations = list(creations)

    # -- declare ------------------------------------------------------------------

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        n = self.sizes.gfns
        self.per_vm_value = b.guard(
            "per-vm-mmio-value", "each VM has its own shadow_mmio_value, copied from the global one by "
            "kvm_mmu_init_vm() and set to 0 by tdx_vm_init(); off: one global value that a TD overwrites",
            "949019b98289 KVM: x86/mmu: Track shadow MMIO value on a per-VM basis",
        )
        self.inprogress_bit = b.guard(
            "memslot-update-in-progress", "KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS is set across the memslot "
            "swap and check_mmio_spte()/vcpu_cache_mmio_info() refuse while it is; off: the generation "
            "is bumped before the new memslots are published",
            "include/linux/kvm_host.h; kvm_swap_active_memslots(); D1 mmio-generation-update-window",
        )
        self.mask_has_sve = b.guard(
            "mmio-mask-suppress-ve", "shadow_mmio_mask includes VMX_EPT_SUPPRESS_VE_BIT, so a word with bit 63 "
            "(SHADOW_NONPRESENT_VALUE, FROZEN_SPTE) is never MMIO, even for a TD's value 0",
            "7fa5e2929198 KVM: x86/mmu: Add Suppress VE bit to EPT shadow_mmio_mask/shadow_present_mask",
        )
        self.masked_present_check = b.guard(
            "nonpresent-value-check", "FNAME(sync_spte) and make_spte() test (pte_access | shadow_present_mask) "
            "== SHADOW_NONPRESENT_VALUE; off: !(pte_access | shadow_present_mask), which the suppress-#VE "
            "bit in shadow_present_mask makes never true",
            "D3 present-mask-includes-suppress-ve; lore CABgObfaV416+wRoRLJzEU6q5D4CJcLh=Ja-K_OBrf6LBnU=KiA",
        )
        self.tdx_needs_caching = b.guard(
            "tdx-requires-mmio-caching", "tdx_bringup() disables TDX unless enable_mmio_caching (\"TDP MMU and "
            "MMIO caching and EPT A/D bit is required for TDX\"); off: a TD runs without MMIO caching",
            "arch/x86/kvm/vmx/tdx.c tdx_bringup(); D4 tdx-without-mmio-caching",
        )
        self.mask = bits.mmio_mask(self.mask_has_sve)
        vms = [vm.label for vm in self.vms]
        cells = [f"{vm.label}.g{g}" for vm in self.vms for g in range(n)]
        self.vcpus = [(vm, j) for vm in self.vms for j in range(self.sizes.vcpus)]
        vlabels = [f"{vm.label}.vcpu{j}" for vm, j in self.vcpus]
        for vm in self.vms if self.sizes.vcpus > 1 else ():  # a VM's vCPUs run the same code
            b.symmetric(f"{vm.label}.vCPU", "vcpu", {v: (vlabels[v],) for v, (w, _) in enumerate(self.vcpus)
                                                     if w is vm})
        top = max(1, *self.creations)  # 0..1 at least: a generation that can differ
        self.created: Family = b.family("vm_created", vms, BOOL, False, "KVM_CREATE_VM has returned")
        if self.per_vm_value:
            self.value_family: Family | None = b.family(
                "kvm.arch.shadow_mmio_value", vms, MMIO_VALUE, "VMX_EPT_MISCONFIG_WX_VALUE",
                "the VM's MMIO SPTE value (kvm_mmu_init_vm copies the global one)")
            self.value_global: Field | None = None
        else:
            self.value_family = None
            self.value_global = b.field("shadow_mmio_value", MMIO_VALUE, "VMX_EPT_MISCONFIG_WX_VALUE",
                                        "the one global MMIO SPTE value every VM uses")
        self.memslot: Family = b.family(
            "memslot", cells, BOOL, [self.initial_slots[g] for _ in self.vms for g in range(n)],
            "a memslot covers the GFN in the active memslots")
        self.generation: Family = b.family(
            "memslots.generation", vms, IntDomain(0, top), 0, "kvm_memslots(kvm)->generation (bit 63 apart)")
        self.in_progress: Family = b.family(
            "memslots.update_in_progress", vms, BOOL, False, "KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS")
        self.update: Family = b.family("memslot_update", vms, MEMSLOT_UPDATE, "IDLE",
                                       "kvm_swap_active_memslots() half done")
        self.update_gfn: Family = b.family("memslot_update.gfn", vms, IntDomain(0, n - 1), 0,
                                           "the GFN the memslot being created covers")
        self.spte: Family = b.family("spte", cells, SPTE, "SHADOW_NONPRESENT_VALUE", "the GFN's leaf SPTE")
        self.spte_gen: Family = b.family("spte.mmio_gen", cells, IntDomain(0, top), 0,
                                         "the MMIO generation bits of an MMIO SPTE")
        self.syncs: Family = b.family("sync_spte.count", vms, IntDomain(0, self.config["sync_spte"]), 0,
                                      "FNAME(sync_spte) calls done")
        self.zap: Family = b.family("nx_recovery", vms, ZAP, "IDLE", "tdp_mmu_zap_spte_atomic() half done")
        self.zap_gfn: Family = b.family("nx_recovery.gfn", vms, IntDomain(0, n - 1), 0, "the GFN being zapped")
        self.zaps: Family = b.family("nx_recovery.zaps", vms, IntDomain(0, self.config["nx_recovery_zaps"]), 0,
                                     "atomic zaps done")
        self.pc: Family = b.family("vcpu_pc", vlabels, MMIO_PC, "IN_GUEST", "where the vCPU is in one access")
        self.gfn: Family = b.family("vcpu_gfn", vlabels, IntDomain(0, n - 1), 0, "the GFN being accessed")
        self.noslot: Family = b.family("fault.noslot", vlabels, BOOL, False,
                                       "kvm_mmu_faultin_pfn() found no memslot (KVM_PFN_NOSLOT)")
        self.cache_gfn: Family = b.family(
            "vcpu.arch.mmio_gfn", vlabels, IntDomain(0, n, {n: "none"}), n, "the vCPU's MMIO cache: GFN")
        self.cache_gen: Family = b.family("vcpu.arch.mmio_gen", vlabels, IntDomain(0, top), 0,
                                          "the vCPU's MMIO cache: generation")
        if self.inprogress_bit:
            for vm in self.vms:
                i = vm.index
                b.fact(f"memslot_update_within_budget[{vm.label}]",
                       "a memslot update half done has not bumped the generation yet",
                       z3.Implies(self.update[i].var == MEMSLOT_UPDATE.HALFWAY,
                                  self.generation[i].var < self.creations[i]))
        self.emulated_ram: Family = b.family(
            "emulated_mmio_over_memslot", vms, BOOL, False,
            "history: the VM emulated an access as MMIO, by generation or cache, to a GFN with a memslot")

    # -- helpers ------------------------------------------------------------------

    def cell(self, vm: Vm, g: int) -> int:
        return vm.index * self.sizes.gfns + g

    def value(self, vm: Vm) -> z3.ExprRef:
        """The shadow_mmio_value this VM's code reads."""
        if self.value_family is not None:
            return self.value_family[vm.index].var
        assert self.value_global is not None
        return self.value_global.var

    def spte_cases(self, vm: Vm, g: int) -> list[tuple[z3.BoolRef, int]]:
        f = self.spte[self.cell(vm, g)]
        return [(f.var == getattr(SPTE, p), w) for p, w in SPTE_WORD.items()]

    def value_cases(self, vm: Vm) -> list[tuple[z3.BoolRef, int]]:
        v = self.value(vm)
        return [(v == getattr(MMIO_VALUE, name), w) for name, w in MMIO_VALUE_WORD.items()]

    def is_mmio(self, vm: Vm, cases: list[tuple[z3.BoolRef, int]]) -> z3.BoolRef:
        """is_mmio_spte(kvm, spte) for the SPTE words in `cases`."""
        if not self.config["mmio_caching"]:
            return z3.BoolVal(False)
        return case_split(lambda s, v: bits.is_mmio_spte(s, v, word(self.mask)), cases, self.value_cases(vm))

    def made_by_make_mmio_spte(self, vm: Vm, g: int) -> z3.BoolRef:
        """The SPTE holds one of the patterns make_mmio_spte() writes (whatever it is judged to be)."""
        s = self.spte[self.cell(vm, g)].var
        return z3.Or(s == SPTE.MMIO_WX, s == SPTE.MMIO_ZERO)

    def spte_is(self, vm: Vm, g: int, predicate: Any) -> z3.BoolRef:
        return case_split(predicate, self.spte_cases(vm, g))

    def mmio_spte(self, vm: Vm, g: int) -> z3.BoolRef:
        return self.is_mmio(vm, self.spte_cases(vm, g))

    # -- define -------------------------------------------------------------------

    def define(self, b: ModelBuilder) -> None:
        for vm in self.vms:
            b.action(self.kvm_create_vm, f"{vm.label}.ioctl", vm=vm)
            for g in range(self.sizes.gfns):
                if self.creations[vm.index] and not self.initial_slots[g]:
                    b.action(self.kvm_set_memory_region, f"{vm.label}.ioctl", vm=vm, gfn=g)
                if self.config["nx_recovery_zaps"]:
                    b.action(self.tdp_mmu_zap_spte_atomic, f"{vm.label}.nx", vm=vm, gfn=g)
            if self.creations[vm.index]:
                b.action(self.kvm_swap_active_memslots_done, f"{vm.label}.ioctl", vm=vm)
            if self.config["nx_recovery_zaps"]:
                b.action(self.tdp_mmu_zap_spte_atomic_done, f"{vm.label}.nx", vm=vm)
        for v, (vm, j) in enumerate(self.vcpus):
            actor = f"{vm.label}.vcpu{j}"
            for g in range(self.sizes.gfns):
                b.action(self.guest_access, actor, vcpu=v, gfn=g)
                if not vm.is_td and self.config["sync_spte"] > 0:
                    b.action(self.sync_spte, actor, vcpu=v, gfn=g)
            b.action(self.access_completes, actor, vcpu=v)
            b.action(self.handle_ept_violation, actor, vcpu=v)
            if vm.is_td:
                b.action(self.tdx_handle_ve, actor, vcpu=v)
                b.action(self.tdx_emulate_mmio, actor, vcpu=v)
            else:
                b.action(self.handle_ept_misconfig, actor, vcpu=v)
            b.action(self.kvm_faultin_pfn, actor, vcpu=v)
            b.action(self.tdp_mmu_map_handle_target_level, actor, vcpu=v)
            b.action(self.x86_emulate_instruction, actor, vcpu=v)

    # -- userspace ----------------------------------------------------------------

    @kernel("kvm_dev_ioctl_create_vm")
    def kvm_create_vm(self, vm: Vm) -> Step:
        """KVM_CREATE_VM: kvm_dev_ioctl_create_vm() -> kvm_arch_init_vm() -> kvm_mmu_init_vm()
        copies the global shadow_mmio_value; for a TD, tdx_vm_init() then calls
        kvm_mmu_set_mmio_spte_value(kvm, 0) (RWX=0 so the access faults, suppress-#VE clear
        so the TD gets #VE). Without the per-VM guard the TD's 0 overwrites the one global
        value. A TD cannot be created if tdx_bringup() disabled TDX (no MMIO caching).
        Leaves out everything else VM creation does."""
        i = vm.index
        allowed = z3.BoolVal(not (vm.is_td and self.tdx_needs_caching and not self.config["mmio_caching"]))
        effect: dict[Field, object] = {self.created[i]: True}
        if vm.is_td:
            target = self.value_family[i] if self.value_family is not None else self.value_global
            assert target is not None
            effect[target] = MMIO_VALUE.ZERO
        return Step(f"KVM_CREATE_VM ({'KVM_X86_TDX_VM' if vm.is_td else 'KVM_X86_DEFAULT_VM'})",
                    z3.And(z3.Not(self.created[i].var), allowed), effect)

    @kernel("kvm_swap_active_memslots")
    def kvm_set_memory_region(self, vm: Vm, gfn: int) -> Step:
        """KVM_SET_USER_MEMORY_REGION creating a memslot over a GFN that had none, first half
        of kvm_swap_active_memslots(). With the in-progress guard: the new memslots are
        published with KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS set in their generation. Without
        it: the generation is bumped first and the memslots are published in the second
        half (the order the kvm_host.h comment warns about). Leaves out slots_lock, SRCU
        and the arch prepare/commit hooks (nothing in them zaps on creation)."""
        i, c = vm.index, self.cell(vm, gfn)
        guard = z3.And(self.created[i].var, self.update[i].var == MEMSLOT_UPDATE.IDLE,
                       z3.Not(self.memslot[c].var), self.generation[i].var < self.creations[vm.index])
        effect: dict[Field, object] = {self.update[i]: MEMSLOT_UPDATE.HALFWAY, self.update_gfn[i]: gfn}
        if self.inprogress_bit:
            effect |= {self.memslot[c]: True, self.in_progress[i]: True}
            text = f"KVM_SET_USER_MEMORY_REGION(g{gfn}): publish memslots, generation |= UPDATE_IN_PROGRESS"
        else:
            effect |= {self.generation[i]: self.generation[i].var + 1}
            text = f"KVM_SET_USER_MEMORY_REGION(g{gfn}): generation += 1 before the memslots are published"
        return Step(text, guard, effect)

    @kernel("kvm_swap_active_memslots")
    def kvm_swap_active_memslots_done(self, vm: Vm) -> Step:
        """Second half of kvm_swap_active_memslots(): with the guard, wait out SRCU readers
        (synchronize_srcu_expedited: no vCPU of the VM between an exit and its re-entry),
        then clear the in-progress bit and store generation + 1 (kvm_arch_memslots_updated()
        -> kvm_mmu_invalidate_mmio_sptes() zaps only on a wrap, which the model's generation
        never reaches); without it, publish the new memslots."""
        i = vm.index
        guard = self.update[i].var == MEMSLOT_UPDATE.HALFWAY
        effect: dict[Field, object] = {self.update[i]: MEMSLOT_UPDATE.IDLE}
        if self.inprogress_bit:
            # synchronize_srcu_expedited(): every vCPU that may have looked at the old
            # memslots (it holds kvm->srcu outside the guest) is back in the guest
            guard = z3.And(guard, *[z3.Or(self._at(v, "IN_GUEST"), self._at(v, "ACCESS"))
                                    for v, (other, _) in enumerate(self.vcpus) if other == vm])
            effect |= {self.in_progress[i]: False, self.generation[i]: self.generation[i].var + 1}
            text = "kvm_swap_active_memslots: generation = (generation & ~UPDATE_IN_PROGRESS) + 1"
        else:
            for g in range(self.sizes.gfns):
                c = self.cell(vm, g)
                effect[self.memslot[c]] = z3.Or(self.memslot[c].var, self.update_gfn[i].var == g)
            text = "kvm_swap_active_memslots: publish the new memslots"
        return Step(text, guard, effect)

    @kernel("kvm_tdp_mmu_zap_possible_nx_huge_page")
    def tdp_mmu_zap_spte_atomic(self, vm: Vm, gfn: int) -> Step:
        """NX recovery (kvm_recover_nx_huge_pages -> kvm_tdp_mmu_zap_possible_nx_huge_page)
        zapping a present leaf under the read lock: the SPTE is first frozen (FROZEN_SPTE).
        Leaves out the TLB flush."""
        i, c = vm.index, self.cell(vm, gfn)
        guard = z3.And(self.zap[i].var == ZAP.IDLE, self.spte[c].var == SPTE.PRESENT,
                       self.zaps[i].var < self.config["nx_recovery_zaps"])
        return Step(f"tdp_mmu_zap_spte_atomic(g{gfn}): spte := FROZEN_SPTE", guard, {
            self.spte[c]: SPTE.FROZEN_SPTE, self.zap[i]: ZAP.FROZEN, self.zap_gfn[i]: gfn,
            self.zaps[i]: self.zaps[i].var + 1})

    @kernel("kvm_tdp_mmu_zap_possible_nx_huge_page")
    def tdp_mmu_zap_spte_atomic_done(self, vm: Vm) -> Step:
        """Second half of the atomic zap in kvm_tdp_mmu_zap_possible_nx_huge_page(): the
        frozen SPTE becomes SHADOW_NONPRESENT_VALUE."""
        i = vm.index
        effect: dict[Field, object] = {self.zap[i]: ZAP.IDLE}
        for g in range(self.sizes.gfns):
            c = self.cell(vm, g)
            effect[self.spte[c]] = z3.If(self.zap_gfn[i].var == g, SPTE.SHADOW_NONPRESENT_VALUE, self.spte[c].var)
        return Step("tdp_mmu_zap_spte_atomic: spte := SHADOW_NONPRESENT_VALUE",
                    self.zap[i].var == ZAP.FROZEN, effect)

    # -- the vCPU -----------------------------------------------------------------

    def _at(self, v: int, pc: str) -> z3.BoolRef:
        return self.pc[v].var == getattr(MMIO_PC, pc)

    def _current(self, v: int, fn: Any) -> z3.BoolRef:
        """`fn(vm, g)` for the GFN the vCPU is accessing."""
        vm = self.vcpus[v][0]
        return z3.Or([z3.And(self.gfn[v].var == g, fn(vm, g)) for g in range(self.sizes.gfns)])

    def _spte_now(self, v: int, predicate: Any) -> z3.BoolRef:
        return self._current(v, lambda vm, g: self.spte_is(vm, g, predicate))

    def _cell_effect(self, v: int, family: Family, value: Any) -> dict[Field, object]:
        """Write `value` to the accessed GFN's member of a per-GFN family."""
        vm = self.vcpus[v][0]
        out: dict[Field, object] = {}
        for g in range(self.sizes.gfns):
            f = family[self.cell(vm, g)]
            out[f] = z3.If(self.gfn[v].var == g, value, f.var)
        return out

    def _cache_hit(self, v: int) -> z3.BoolRef:
        """vcpu_match_mmio_gpa(): the cached GFN and generation match; the generation compared
        includes the in-progress bit, which a cached generation never has."""
        vm = self.vcpus[v][0]
        i = vm.index
        return z3.And(self.cache_gfn[v].var == self.gfn[v].var, self.cache_gen[v].var == self.generation[i].var,
                      z3.Not(self.in_progress[i].var))

    def _cache_fill(self, v: int) -> dict[Field, object]:
        """vcpu_cache_mmio_info(): skipped while the update-in-progress bit is set."""
        i = self.vcpus[v][0].index
        skip = self.in_progress[i].var
        return {self.cache_gfn[v]: z3.If(skip, self.cache_gfn[v].var, self.gfn[v].var),
                self.cache_gen[v]: z3.If(skip, self.cache_gen[v].var, self.generation[i].var)}

    def _emulated_over_memslot(self, v: int, by_generation: z3.BoolRef) -> dict[Field, object]:
        vm = self.vcpus[v][0]
        i = vm.index
        slot = self._current(v, lambda vm, g: self.memslot[self.cell(vm, g)].var)
        return {self.emulated_ram[i]: z3.Or(self.emulated_ram[i].var, z3.And(by_generation, slot))}

    def _running(self, v: int) -> z3.BoolRef:
        return self.created[self.vcpus[v][0].index].var

    @kernel("guest")
    def guest_access(self, vcpu: int, gfn: int) -> Step:
        """The guest starts an access to a shared GFN (guest code, no kernel function): the
        instruction runs until it completes through the SPTE or is emulated. Leaves out
        what is accessed and how."""
        return Step(f"guest accesses g{gfn}", z3.And(self._running(vcpu), self._at(vcpu, "IN_GUEST")),
                    {self.pc[vcpu]: MMIO_PC.ACCESS, self.gfn[vcpu]: gfn})

    @kernel("guest")
    def access_completes(self, vcpu: int) -> Step:
        """The access goes through the SPTE (guest and hardware, no kernel function): some of
        R/W/X is set. Leaves out which of R/W/X the access needs."""
        return Step("the access completes through the SPTE",
                    z3.And(self._at(vcpu, "ACCESS"), self._spte_now(vcpu, bits.has_access)),
                    {self.pc[vcpu]: MMIO_PC.IN_GUEST})

    @kernel("handle_ept_violation")
    def handle_ept_violation(self, vcpu: int) -> Step:
        """The SPTE has no R/W/X and #VE is suppressed (bit 63) or the VM is not a TD: an EPT
        violation exits to KVM, handle_ept_violation() -> kvm_mmu_page_fault() (for a TD,
        tdx_handle_ept_violation()). Leaves out the exit qualification."""
        td = self.vcpus[vcpu][0].is_td
        exits = self._spte_now(vcpu, lambda s: z3.And(bits.ept_not_present(s),
                                                      z3.Or(bits.suppress_ve(s), z3.BoolVal(not td))))
        return Step("EPT violation -> kvm_mmu_page_fault", z3.And(self._at(vcpu, "ACCESS"), exits),
                    {self.pc[vcpu]: MMIO_PC.PAGE_FAULT})

    @kernel("tdx_handle_exit")
    def tdx_handle_ve(self, vcpu: int) -> Step:
        """The TD's SPTE has no R/W/X and suppress-#VE clear: the TDX module injects #VE, and
        the guest's #VE handler issues TDG.VP.VMCALL<MMIO>, which exits to KVM
        (tdx_handle_exit() -> tdx_emulate_mmio()). Leaves out the guest's instruction decode."""
        ve = self._spte_now(vcpu, lambda s: z3.And(bits.ept_not_present(s), z3.Not(bits.suppress_ve(s))))
        return Step("#VE -> TDG.VP.VMCALL<MMIO>", z3.And(self._at(vcpu, "ACCESS"), ve),
                    {self.pc[vcpu]: MMIO_PC.TDVMCALL_MMIO})

    @kernel("tdx_emulate_mmio")
    def tdx_emulate_mmio(self, vcpu: int) -> Step:
        """tdx_emulate_mmio(): the GPA is shared, so KVM performs the MMIO (in-kernel bus or
        KVM_EXIT_MMIO). No generation and no memslot is checked. Leaves out the size and
        direction checks."""
        effect: dict[Field, object] = {self.pc[vcpu]: MMIO_PC.IN_GUEST}
        effect |= self._emulated_over_memslot(vcpu, z3.BoolVal(True))
        return Step("tdx_emulate_mmio: emulate the MMIO access", self._at(vcpu, "TDVMCALL_MMIO"), effect)

    @kernel("handle_mmio_page_fault")
    def handle_ept_misconfig(self, vcpu: int) -> Step:
        """An EPT misconfiguration (W without R, the VMX MMIO value) exits to
        handle_ept_misconfig() -> kvm_mmu_page_fault(PFERR_RSVD_MASK) -> handle_mmio_page_fault():
        a vCPU MMIO cache hit emulates; an SPTE that is_mmio_spte(kvm, spte) and passes
        check_mmio_spte() (generation equal, no update in progress) is cached
        (vcpu_cache_mmio_info) and emulated; a stale one returns RET_PF_INVALID (the page
        fault path); an SPTE that is not MMIO returns RET_PF_RETRY (re-enter the guest).
        Leaves out the lockless walk (get_mmio_spte) and the reserved-bit check."""
        vm = self.vcpus[vcpu][0]
        i = vm.index
        misconfig = self._spte_now(vcpu, bits.ept_misconfig)
        hit = self._cache_hit(vcpu)
        mmio = self._current(vcpu, self.mmio_spte)
        fresh = self._current(vcpu, lambda vm, g: self.spte_gen[self.cell(vm, g)].var == self.generation[i].var)
        if self.inprogress_bit:
            fresh = z3.And(fresh, z3.Not(self.in_progress[i].var))
        emulate = z3.Or(hit, z3.And(mmio, fresh))
        then: dict[Field, object] = {self.pc[vcpu]: MMIO_PC.IN_GUEST}
        then |= self._emulated_over_memslot(vcpu, z3.BoolVal(True))
        then |= {f: z3.If(hit, f.var, value) for f, value in self._cache_fill(vcpu).items()}  # type: ignore[misc]
        otherwise = {self.pc[vcpu]: z3.If(mmio, MMIO_PC.PAGE_FAULT, MMIO_PC.ACCESS)}
        return Step("EPT misconfig -> handle_mmio_page_fault: emulate if cached, or MMIO and fresh; "
                    "stale: RET_PF_INVALID; not MMIO: RET_PF_RETRY",
                    z3.And(self._at(vcpu, "ACCESS"), misconfig), choose(emulate, then, otherwise))

    @kernel("kvm_mmu_faultin_pfn")
    def kvm_faultin_pfn(self, vcpu: int) -> Step:
        """kvm_mmu_faultin_pfn(): look the GFN up in the active memslots. No memslot:
        kvm_handle_noslot_fault() caches the MMIO info (vcpu_cache_mmio_info, skipped while
        an update is in progress) and, without enable_mmio_caching, returns RET_PF_EMULATE
        at once. Leaves out the mmu_invalidate_seq snapshot (nothing here invalidates)."""
        noslot = self._current(vcpu, lambda vm, g: z3.Not(self.memslot[self.cell(vm, g)].var))
        caching = self.config["mmio_caching"]
        then: dict[Field, object] = {self.noslot[vcpu]: True,
                                     self.pc[vcpu]: MMIO_PC.MAP if caching else MMIO_PC.EMULATE}
        then |= self._cache_fill(vcpu)
        otherwise: dict[Field, object] = {self.noslot[vcpu]: False, self.pc[vcpu]: MMIO_PC.MAP}
        return Step("kvm_mmu_faultin_pfn: memslot lookup" + ("" if caching else "; no slot: RET_PF_EMULATE"),
                    self._at(vcpu, "PAGE_FAULT"), choose(noslot, then, otherwise))

    @kernel("tdp_mmu_map_handle_target_level")
    def tdp_mmu_map_handle_target_level(self, vcpu: int) -> Step:
        """kvm_tdp_mmu_map() -> tdp_mmu_map_handle_target_level(): a FROZEN_SPTE makes the fault
        retry; otherwise the leaf is written atomically: make_mmio_spte() (the VM's
        shadow_mmio_value, the current generation without the in-progress bit; RET_PF_EMULATE)
        for no memslot, make_spte() of the RAM page for a memslot (the vCPU re-executes the
        access). Leaves out the read lock, the cmpxchg failure path and the walk above the leaf."""
        vm = self.vcpus[vcpu][0]
        frozen = self._current(vcpu, lambda vm, g: self.spte[self.cell(vm, g)].var == SPTE.FROZEN_SPTE)
        v = self.value(vm)
        mmio_pattern = z3.If(v == MMIO_VALUE.ZERO, SPTE.MMIO_ZERO, SPTE.MMIO_WX)
        new = z3.If(self.noslot[vcpu].var, mmio_pattern, SPTE.PRESENT)
        write = self._cell_effect(vcpu, self.spte, new)
        # only an MMIO SPTE carries a generation; 0 elsewhere keeps states canonical
        gen = z3.If(self.noslot[vcpu].var, self.generation[vm.index].var, 0)
        write |= self._cell_effect(vcpu, self.spte_gen, gen)
        write[self.pc[vcpu]] = z3.If(self.noslot[vcpu].var, MMIO_PC.EMULATE, MMIO_PC.ACCESS)
        effect = choose(frozen, {self.pc[vcpu]: MMIO_PC.ACCESS}, write)
        return Step("tdp_mmu_map_handle_target_level: FROZEN_SPTE: retry; no slot: make_mmio_spte, "
                    "RET_PF_EMULATE; else make_spte", self._at(vcpu, "MAP"), effect)

    @kernel("x86_emulate_instruction")
    def x86_emulate_instruction(self, vcpu: int) -> Step:
        """RET_PF_EMULATE -> x86_emulate_instruction(). A TD's instructions cannot be decoded:
        vt_check_emulate_instruction() returns X86EMUL_RETRY_INSTR and the guest re-executes
        the access (expecting #VE from the MMIO SPTE just installed). A VMX vCPU emulates: the
        GPA is MMIO if the vCPU's MMIO cache matches (vcpu_match_mmio_gpa) or no memslot
        covers it now. Leaves out the instruction decode and the KVM_EXIT_MMIO round trip."""
        vm = self.vcpus[vcpu][0]
        if vm.is_td:
            return Step("x86_emulate_instruction: X86EMUL_RETRY_INSTR (a TD cannot be emulated)",
                        self._at(vcpu, "EMULATE"), {self.pc[vcpu]: MMIO_PC.ACCESS})
        effect: dict[Field, object] = {self.pc[vcpu]: MMIO_PC.IN_GUEST}
        effect |= self._emulated_over_memslot(vcpu, self._cache_hit(vcpu))
        return Step("x86_emulate_instruction: emulate the access (MMIO if cached or no memslot)",
                    self._at(vcpu, "EMULATE"), effect)

    @kernel("FNAME(sync_spte)")
    def sync_spte(self, vcpu: int, gfn: int) -> Step:
        """FNAME(sync_spte) for a present leaf whose nested guest entry now grants nothing
        (pte_access = 0): the SPTE is dropped if the present check says "no effective present
        bit", else make_spte() rebuilds it with no access. The check is evaluated at the bit
        level with the suppress-#VE bit in shadow_present_mask. Leaves out the rest of shadow
        paging (unsync pages, the gfn-changed case)."""
        vm = self.vcpus[vcpu][0]
        c = self.cell(vm, gfn)
        check = bits.no_effective_present if self.masked_present_check else bits.no_effective_present_unmasked
        drops = decide(check, 0)
        new = SPTE.SHADOW_NONPRESENT_VALUE if drops else SPTE.PRESENT_NO_ACCESS
        text = ("drop_spte" if drops else "make_spte with no access")
        i = vm.index
        guard = z3.And(self._at(vcpu, "IN_GUEST"), self.spte[c].var == SPTE.PRESENT,
                       self.syncs[i].var < self.config["sync_spte"])
        return Step(f"FNAME(sync_spte)(g{gfn}, pte_access=0): {text}", guard,
                    {self.spte[c]: new, self.syncs[i]: self.syncs[i].var + 1})
