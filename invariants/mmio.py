"""MMIO SPTEs: what is_mmio_spte(kvm, spte) may and may not say, per VM (CATALOGUE.md: IO-Inv1..IO-Inv5).

The bit-level predicates come from model/mmu/mmio/spte.py; each invariant applies them
to every SPTE of every VM, with that VM's shadow_mmio_value (or the global one).
"""

from __future__ import annotations

import z3

from model.lang import Model
from model.mmu.mmio import spte as bits
from model.mmu.mmio.component import MMIO_PC, MmioComponent, Vm

from .core import Invariant, Kind, progress


def _mmio(m: Model) -> MmioComponent:
    part = m.parts["mmio"]
    assert isinstance(part, MmioComponent)
    return part


def _cells(c: MmioComponent) -> list[tuple[Vm, int]]:
    return [(vm, g) for vm in c.vms for g in range(c.sizes.gfns)]


def _mmio_never_present(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    return z3.And([
        z3.Implies(c.mmio_spte(vm, g), z3.Not(c.spte_is(vm, g, bits.is_shadow_present_pte)))
        for vm, g in _cells(c)
    ])


def _special_values_not_mmio(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    special = [(z3.BoolVal(True), bits.SHADOW_NONPRESENT_VALUE), (z3.BoolVal(True), bits.FROZEN_SPTE)]
    terms = []
    for vm in c.vms:
        for case in special:
            terms.append(z3.Implies(c.created[vm.index].var, z3.Not(c.is_mmio(vm, [case]))))
    return z3.And(terms)


def _mmio_spte_recognised(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    return z3.And([
        z3.Implies(c.made_by_make_mmio_spte(vm, g), c.mmio_spte(vm, g))
        for vm, g in _cells(c)
    ])


def _ve_only_where_intended(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    terms = []
    for vm, g in _cells(c):
        ve = c.spte_is(vm, g, bits.is_ept_ve_possible)
        terms.append(z3.Implies(ve, c.mmio_spte(vm, g)) if vm.is_td else z3.Not(ve))
    return z3.And(terms)


def _present_spte_has_access(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    return z3.And([
        c.spte_is(vm, g, lambda s: z3.Implies(bits.is_shadow_present_pte(s), bits.has_access(s)))
        for vm, g in _cells(c)
    ])


def _mmio_emulation_fresh(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    return z3.And([z3.Not(c.emulated_ram[vm.index].var) for vm in c.vms])


def _waiting(m: Model) -> list[tuple[str, z3.BoolRef]]:
    c = _mmio(m)
    return [(f"{vm.label}.vcpu{j}", c.pc[v].var != MMIO_PC.IN_GUEST) for v, (vm, j) in enumerate(c.vcpus)]


def _mmio_spte_installed(m: Model) -> z3.BoolRef:
    c = _mmio(m)
    return z3.Or([c.made_by_make_mmio_spte(vm, g) for vm, g in _cells(c)])


def _stale_mmio_spte_refaulted(m: Model) -> z3.BoolRef:
    """A vCPU is back in the page-fault path over an MMIO SPTE of an older generation."""
    c = _mmio(m)
    return z3.Or([
        z3.And(c.pc[v].var == MMIO_PC.PAGE_FAULT, c.gfn[v].var == g,
               c.made_by_make_mmio_spte(vm, g),
               c.spte_gen[c.cell(vm, g)].var != c.generation[vm.index].var)
        for v, (vm, _) in enumerate(c.vcpus) for g in range(c.sizes.gfns)
    ])


REF = "arch/x86/kvm/mmu/spte.h is_mmio_spte(); "

INVARIANTS = (
    Invariant(
        "mmio_never_present", Kind.ALWAYS,
        "an SPTE that is_mmio_spte(kvm, spte) is never is_shadow_present_pte(spte) (IO-Inv1)",
        REF + "SPTE_MMIO_ALLOWED_MASK excludes SPTE_MMU_PRESENT_MASK",
        ("mmio",), _mmio_never_present, constant=True,
    ),
    Invariant(
        "special_values_not_mmio", Kind.ALWAYS,
        "SHADOW_NONPRESENT_VALUE and FROZEN_SPTE are never MMIO SPTEs, whatever the VM's "
        "shadow_mmio_value (IO-Inv2)",
        REF + "kvm_mmu_set_mmio_spte_mask(); 7fa5e2929198",
        ("mmio",), _special_values_not_mmio, constant=True,
    ),
    Invariant(
        "mmio_spte_recognised", Kind.ALWAYS,
        "an MMIO SPTE a VM installed (make_mmio_spte) is still MMIO to is_mmio_spte(kvm, spte) "
        "of that VM: the value it was made with is the value it is checked against",
        REF + "949019b98289 (per-VM shadow_mmio_value)",
        ("mmio",), _mmio_spte_recognised,
    ),
    Invariant(
        "ve_only_where_intended", Kind.ALWAYS,
        "only a TD's MMIO SPTEs can raise #VE (suppress-#VE clear, no RWX); no SPTE of a VMX VM "
        "can (IO-Inv3)",
        "spte.h is_ept_ve_possible(); tdx_vm_init(); 8131cf5b4fd8 (CONFIG_KVM_INTEL_PROVE_VE)",
        ("mmio",), _ve_only_where_intended,
    ),
    Invariant(
        "present_spte_has_access", Kind.ALWAYS,
        "a shadow-present SPTE has some of R/W/X: a present check must not mistake the "
        "non-present value's bits in shadow_present_mask for access (IO-Inv5)",
        "spte.c make_spte(), paging_tmpl.h FNAME(sync_spte): (pte_access | shadow_present_mask) "
        "== SHADOW_NONPRESENT_VALUE",
        ("mmio",), _present_spte_has_access,
    ),
    Invariant(
        "mmio_emulation_fresh", Kind.ALWAYS,
        "an access is never emulated as MMIO, on the strength of an MMIO SPTE, the vCPU's MMIO "
        "cache or a TDVMCALL<MMIO>, while a memslot covers its GFN (IO-Inv4)",
        "mmu.c check_mmio_spte(), x86.h vcpu_match_mmio_gen(); KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS",
        ("mmio",), _mmio_emulation_fresh,
    ),
    progress(
        "mmio_access_completes",
        "every access a vCPU starts eventually completes, through the SPTE or emulated: no vCPU "
        "keeps faulting forever",
        "tdx_bringup() (\"MMIO caching ... is required for TDX\"); vt_check_emulate_instruction()",
        ("mmio",), _waiting,
    ),
    Invariant(
        "mmio_spte_installed", Kind.SOMETIMES,
        "some VM has an MMIO SPTE in its EPT (make_mmio_spte)",
        "tdp_mmu_map_handle_target_level() -> make_mmio_spte()",
        ("mmio",), _mmio_spte_installed,
    ),
    Invariant(
        "stale_mmio_spte_refaulted", Kind.SOMETIMES,
        "a vCPU found an MMIO SPTE of an older generation (check_mmio_spte() false) and "
        "is back in the page-fault path",
        "mmu.c handle_mmio_page_fault() -> RET_PF_INVALID",
        ("mmio",), _stale_mmio_spte_refaulted,
    ),
)
