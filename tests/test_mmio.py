"""The mmio component: bit-level predicates, each action's cases, each invariant on hand-built states."""

from __future__ import annotations

import pytest
import z3

from checker.compile import compile_model
from checker.spec import parse
from model.lang import Model, decide, solver, word
from model.mmu.mmio import spte as bits

from .helpers import check, labels, state, step

SPEC = """
components = ["mmio"]
[sizes]
vcpus = 1
pages_per_huge = 2
[mmio]
vms = {vms}
memslots = "R-"
{extra}
"""


def build(vms: str = '["vmx"]', extra: str = "", guards: dict[str, bool] | None = None) -> Model:
    return parse(SPEC.format(vms=vms, extra=extra), "<test>", "t").build(guards)


# -- the words and predicates ----------------------------------------------------------


def test_words_are_the_kernel_constants() -> None:
    assert bits.SHADOW_NONPRESENT_VALUE == 1 << 63
    assert bits.FROZEN_SPTE == (1 << 63) | 0x5A0
    assert bits.mmio_mask(True) == 0x7 | (1 << 63) and bits.mmio_mask(False) == 0x7
    assert bits.SPTE_MMIO_ALLOWED_MASK & bits.SPTE_MMU_PRESENT_MASK == 0


@pytest.mark.parametrize("value", [bits.VMX_EPT_MISCONFIG_WX_VALUE, 0])
def test_no_word_make_spte_can_build_is_mmio(value: int) -> None:
    """IO-Inv1 over every 64-bit word with SPTE_MMU_PRESENT_MASK and shadow_present_mask set
    (what make_spte() builds), proved by z3 for each VM type's value. is_mmio_spte() ignores
    bit 11, so it is the suppress-#VE bit, in both masks, that keeps them apart."""
    s = z3.BitVec("spte", 64)
    built = z3.And(bits.is_shadow_present_pte(s), s & bits.SHADOW_PRESENT_MASK == bits.SHADOW_PRESENT_MASK)
    assert solver.satisfiable([built, bits.is_mmio_spte(s, word(value), word(bits.mmio_mask(True)))]) is None
    # with the RWX-only mask a present word with RWX equal to the value (none for a TD) is MMIO
    assert solver.satisfiable([built, bits.is_mmio_spte(s, word(value), word(bits.mmio_mask(False)))])


def test_special_values_are_mmio_for_a_td_only_without_the_suppress_ve_bit_in_the_mask() -> None:
    for special in (bits.SHADOW_NONPRESENT_VALUE, bits.FROZEN_SPTE):
        for value in (bits.VMX_EPT_MISCONFIG_WX_VALUE, 0):
            assert not decide(bits.is_mmio_spte, special, value, bits.mmio_mask(True))
        assert decide(bits.is_mmio_spte, special, 0, bits.mmio_mask(False))
        assert not decide(bits.is_mmio_spte, special, bits.VMX_EPT_MISCONFIG_WX_VALUE, bits.mmio_mask(False))


def test_present_checks_with_the_suppress_ve_bit_in_the_present_mask() -> None:
    assert decide(bits.no_effective_present, 0)  # drops an SPTE with no access
    assert not decide(bits.no_effective_present_unmasked, 0)  # never true: the D3 bug
    assert not decide(bits.no_effective_present, bits.VMX_EPT_RWX_MASK)


def test_hardware_reaction_to_each_pattern() -> None:
    w = bits.SPTE_WORD
    assert decide(bits.ept_misconfig, w["MMIO_WX"])
    assert decide(bits.ept_not_present, w["MMIO_ZERO"]) and not decide(bits.suppress_ve, w["MMIO_ZERO"])
    for name in ("SHADOW_NONPRESENT_VALUE", "FROZEN_SPTE", "PRESENT_NO_ACCESS"):
        assert decide(bits.ept_not_present, w[name]) and decide(bits.suppress_ve, w[name])
    assert decide(bits.has_access, w["PRESENT"])
    assert decide(bits.is_ept_ve_possible, w["MMIO_ZERO"]) and not decide(bits.is_ept_ve_possible, w["MMIO_WX"])


# -- actions ---------------------------------------------------------------------------


def running(model: Model, **changes: object) -> dict[str, int]:
    vm = model.parts["mmio"].vms[0].label
    return state(model, {f"vm_created[{vm}]": True, **changes})


def test_misconfig_emulates_a_fresh_mmio_spte_and_refaults_a_stale_one() -> None:
    model = build(extra="memslot_creations = [1]")
    c = compile_model(model)
    key = "handle_ept_misconfig(vcpu=0)"
    at = {"vcpu_pc[vmx0.vcpu0]": "ACCESS", "vcpu_gfn[vmx0.vcpu0]": 1, "spte[vmx0.g1]": "MMIO_WX"}
    fresh = step(c, running(model, **at), key)
    assert fresh is not None and labels(model, fresh, "vcpu_pc[vmx0.vcpu0]", "vcpu.arch.mmio_gfn[vmx0.vcpu0]") == (
        "IN_GUEST", "1")
    stale = step(c, running(model, **at, **{"memslots.generation[vmx0]": 1}), key)
    assert stale is not None and labels(model, stale, "vcpu_pc[vmx0.vcpu0]") == ("PAGE_FAULT",)
    updating = step(c, running(model, **at, **{"memslots.update_in_progress[vmx0]": True}), key)
    assert updating is not None and labels(model, updating, "vcpu_pc[vmx0.vcpu0]") == ("PAGE_FAULT",)
    # without the in-progress guard, the same generation passes
    off = build(extra="memslot_creations = [1]", guards={"memslot-update-in-progress": False})
    assert step(compile_model(off), running(off, **at), key) is not None


def test_misconfig_on_an_spte_that_is_not_mmio_retries() -> None:
    model = build(vms='["vmx", "tdx"]', guards={"per-vm-mmio-value": False})
    c = compile_model(model)
    st = running(model, **{"vcpu_pc[vmx0.vcpu0]": "ACCESS", "vcpu_gfn[vmx0.vcpu0]": 1,
                           "spte[vmx0.g1]": "MMIO_WX", "shadow_mmio_value": "ZERO"})
    after = step(c, st, "handle_ept_misconfig(vcpu=0)")
    assert after == st  # RET_PF_RETRY: nothing changes, the guest re-executes


def test_a_cache_hit_over_a_new_memslot_is_recorded() -> None:
    model = build(extra="memslot_creations = [1]")
    c = compile_model(model)
    st = running(model, **{"vcpu_pc[vmx0.vcpu0]": "EMULATE", "vcpu_gfn[vmx0.vcpu0]": 1,
                           "vcpu.arch.mmio_gfn[vmx0.vcpu0]": 1, "memslot[vmx0.g1]": True})
    after = step(c, st, "x86_emulate_instruction(vcpu=0)")
    assert after is not None and not check(model, "mmio_emulation_fresh", after)
    miss = step(c, st | {"vcpu.arch.mmio_gfn[vmx0.vcpu0]": 2}, "x86_emulate_instruction(vcpu=0)")
    assert miss is not None and check(model, "mmio_emulation_fresh", miss)  # a RAM access


def test_noslot_fault_without_mmio_caching_emulates_at_once() -> None:
    for caching, after_pc in ((True, "MAP"), (False, "EMULATE")):
        model = build(extra=f"mmio_caching = {str(caching).lower()}")
        st = running(model, **{"vcpu_pc[vmx0.vcpu0]": "PAGE_FAULT", "vcpu_gfn[vmx0.vcpu0]": 1})
        after = step(compile_model(model), st, "kvm_faultin_pfn(vcpu=0)")
        assert after is not None and labels(model, after, "vcpu_pc[vmx0.vcpu0]") == (after_pc,)


def test_mmio_info_is_not_cached_while_an_update_is_in_progress() -> None:
    model = build(extra="memslot_creations = [1]")
    st = running(model, **{"vcpu_pc[vmx0.vcpu0]": "PAGE_FAULT", "vcpu_gfn[vmx0.vcpu0]": 1,
                           "memslots.update_in_progress[vmx0]": True})
    after = step(compile_model(model), st, "kvm_faultin_pfn(vcpu=0)")
    assert after is not None and labels(model, after, "vcpu.arch.mmio_gfn[vmx0.vcpu0]") == ("none",)


def test_the_generation_is_stored_only_after_srcu_readers_are_gone() -> None:
    model = build(extra="memslot_creations = [1]")
    c = compile_model(model)
    half = running(model, **{"memslot_update[vmx0]": "HALFWAY", "memslots.update_in_progress[vmx0]": True,
                             "memslot[vmx0.g1]": True, "memslot_update.gfn[vmx0]": 1})
    assert step(c, half | {"vcpu_pc[vmx0.vcpu0]": 3}, "kvm_swap_active_memslots_done(vm=vmx0)") is None  # MAP
    done = step(c, half, "kvm_swap_active_memslots_done(vm=vmx0)")
    assert done is not None and labels(model, done, "memslots.generation[vmx0]",
                                       "memslots.update_in_progress[vmx0]") == ("1", "false")


def test_a_td_gets_ve_from_its_mmio_spte_and_an_ept_violation_from_a_nonpresent_one() -> None:
    model = build(vms='["tdx"]')
    c = compile_model(model)
    at = {"vcpu_pc[tdx0.vcpu0]": "ACCESS", "vcpu_gfn[tdx0.vcpu0]": 1}
    mmio = state(model, {"vm_created[tdx0]": True, **at, "spte[tdx0.g1]": "MMIO_ZERO"})
    assert step(c, mmio, "tdx_handle_ve(vcpu=0)") is not None
    assert step(c, mmio, "handle_ept_violation(vcpu=0)") is None
    empty = state(model, {"vm_created[tdx0]": True, **at})
    assert step(c, empty, "handle_ept_violation(vcpu=0)") is not None
    assert step(c, empty, "tdx_handle_ve(vcpu=0)") is None
    emulate = state(model, {"vm_created[tdx0]": True, **at, "vcpu_pc[tdx0.vcpu0]": "EMULATE"})
    after = step(c, emulate, "x86_emulate_instruction(vcpu=0)")
    assert after is not None and labels(model, after, "vcpu_pc[tdx0.vcpu0]") == ("ACCESS",)  # RETRY_INSTR


def test_a_td_is_not_created_without_mmio_caching_unless_the_guard_is_off() -> None:
    on = build(vms='["tdx"]', extra="mmio_caching = false")
    assert step(compile_model(on), state(on), "kvm_create_vm(vm=tdx0)") is None
    off = build(vms='["tdx"]', extra="mmio_caching = false", guards={"tdx-requires-mmio-caching": False})
    after = step(compile_model(off), state(off), "kvm_create_vm(vm=tdx0)")
    assert after is not None and labels(off, after, "kvm.arch.shadow_mmio_value[tdx0]") == ("ZERO",)


def test_td_creation_changes_the_global_value_only_without_the_per_vm_guard() -> None:
    per_vm = build(vms='["vmx", "tdx"]')
    after = step(compile_model(per_vm), state(per_vm), "kvm_create_vm(vm=tdx1)")
    assert after is not None and labels(per_vm, after, "kvm.arch.shadow_mmio_value[vmx0]") == (
        "VMX_EPT_MISCONFIG_WX_VALUE",)
    glob = build(vms='["vmx", "tdx"]', guards={"per-vm-mmio-value": False})
    after = step(compile_model(glob), state(glob), "kvm_create_vm(vm=tdx1)")
    assert after is not None and labels(glob, after, "shadow_mmio_value") == ("ZERO",)


def test_a_frozen_spte_makes_the_fault_retry() -> None:
    model = build()
    st = running(model, **{"vcpu_pc[vmx0.vcpu0]": "MAP", "spte[vmx0.g0]": "FROZEN_SPTE"})
    after = step(compile_model(model), st, "tdp_mmu_map_handle_target_level(vcpu=0)")
    assert after is not None and labels(model, after, "vcpu_pc[vmx0.vcpu0]", "spte[vmx0.g0]") == (
        "ACCESS", "FROZEN_SPTE")


@pytest.mark.parametrize(("on", "result"), [(True, "SHADOW_NONPRESENT_VALUE"), (False, "PRESENT_NO_ACCESS")])
def test_sync_spte_drops_or_rebuilds_a_leaf_with_no_access(on: bool, result: str) -> None:
    model = build(guards={"nonpresent-value-check": on})
    st = running(model, **{"spte[vmx0.g0]": "PRESENT"})
    after = step(compile_model(model), st, "sync_spte(vcpu=0, gfn=0)")
    assert after is not None and labels(model, after, "spte[vmx0.g0]") == (result,)


# -- invariants on hand-built states -----------------------------------------------------


def test_special_values_not_mmio() -> None:
    for on in (True, False):
        model = build(vms='["tdx"]', guards={"mmio-mask-suppress-ve": on})
        created = state(model, {"vm_created[tdx0]": True, "kvm.arch.shadow_mmio_value[tdx0]": "ZERO"})
        assert check(model, "special_values_not_mmio", created) is on


def test_mmio_never_present_on_every_pattern() -> None:
    model = build(vms='["vmx", "tdx"]')
    for pattern in bits.SPTE_WORD:
        for value in bits.MMIO_VALUE_WORD:
            st = state(model, {"spte[tdx1.g1]": pattern, "kvm.arch.shadow_mmio_value[tdx1]": value})
            assert check(model, "mmio_never_present", st)


def test_mmio_spte_recognised() -> None:
    glob = build(vms='["vmx", "tdx"]', guards={"per-vm-mmio-value": False})
    wx = {"spte[vmx0.g1]": "MMIO_WX"}
    assert check(glob, "mmio_spte_recognised", state(glob, wx))
    assert not check(glob, "mmio_spte_recognised", state(glob, wx | {"shadow_mmio_value": "ZERO"}))
    per_vm = build(vms='["vmx", "tdx"]')
    assert check(per_vm, "mmio_spte_recognised", state(per_vm, wx | {"kvm.arch.shadow_mmio_value[tdx1]": "ZERO"}))


def test_ve_only_where_intended() -> None:
    model = build(vms='["vmx", "tdx"]')
    td = {"kvm.arch.shadow_mmio_value[tdx1]": "ZERO"}
    assert check(model, "ve_only_where_intended", state(model, td | {"spte[tdx1.g1]": "MMIO_ZERO"}))
    assert not check(model, "ve_only_where_intended", state(model, td | {"spte[vmx0.g1]": "MMIO_ZERO"}))
    assert check(model, "ve_only_where_intended", state(model, td | {"spte[vmx0.g1]": "MMIO_WX"}))


def test_present_spte_has_access() -> None:
    model = build()
    assert check(model, "present_spte_has_access", state(model, {"spte[vmx0.g0]": "PRESENT"}))
    assert not check(model, "present_spte_has_access", state(model, {"spte[vmx0.g0]": "PRESENT_NO_ACCESS"}))


def test_mmio_emulation_fresh() -> None:
    model = build()
    assert check(model, "mmio_emulation_fresh", state(model))
    assert not check(model, "mmio_emulation_fresh", state(model, {"emulated_mmio_over_memslot[vmx0]": True}))


def test_a_tdvmcall_over_a_memslot_is_not_fresh() -> None:
    model = build(vms='["tdx"]', extra="memslot_creations = [1]")
    st = state(model, {"vm_created[tdx0]": True, "vcpu_pc[tdx0.vcpu0]": "TDVMCALL_MMIO",
                       "vcpu_gfn[tdx0.vcpu0]": 1, "memslot[tdx0.g1]": True})
    after = step(compile_model(model), st, "tdx_emulate_mmio(vcpu=0)")
    assert after is not None and not check(model, "mmio_emulation_fresh", after)


def test_bad_options_name_the_key() -> None:
    from checker.spec import SpecError

    for extra, key in (('vms = ["svm"]', "mmio.vms"), ('memslots = "RX"', "mmio.memslots"),
                       ("memslot_creations = [3]", "mmio.memslot_creations")):
        text = SPEC.replace("vms = {vms}\n", "").replace('memslots = "R-"\n', "").format(extra=extra)
        with pytest.raises(SpecError, match=key):
            parse(text, "<test>", "t")
