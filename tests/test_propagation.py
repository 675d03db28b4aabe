"""tdx.propagation under v7.3 (set_external_spte(old, new)) and KVM_PRE_FAULT_MEMORY, one
step at a time: each would fail if the step it checks changed meaning."""

from __future__ import annotations

from checker.compile import compile_model
from model.mmu import Sizes, build
from model.mmu.profiles import load as profile

from .helpers import Lazy, check, labels, state, step

OPTIONS = {"attributes": {"initial_attributes": "private"}, "guest": {"pre_faults": 1}}
MODEL = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), OPTIONS, frozenset({"spurious-check"}),
                           profile=profile("v7.3")))
C = Lazy(lambda: compile_model(MODEL.get()))
MAPPED = {"sept_2m[g0]": "NONLEAF", "mirror_spte_2m[g0]": "NONLEAF", "sept_4k[g0]": "MAPPED",
          "mirror_spte_4k[g0]": "LEAF", "mirror_spte_dirty[g0]": True, "td.accepted[g0]": True}


def mapping(v: int, at: str, **changes: object) -> dict[str, int]:
    """vCPU v in a private fault on g0 at fault step `at`, g0 mapped and accepted."""
    return state(MODEL, {**MAPPED, f"fault.step[vcpu{v}]": at, "fault.gfn[vcpu0]": 0,
                         f"fault.is_private[vcpu{v}]": True, "fault.goal_level[vcpu0]": "PG_LEVEL_4K", **changes})


def test_a_private_ept_violation_is_always_a_write() -> None:
    keys = set(MODEL.get().by_key)
    assert "tdx_handle_ept_violation(vcpu=0, gfn=0, private=True, write=True)" in keys
    assert "tdx_handle_ept_violation(vcpu=0, gfn=0, private=True, write=False)" not in keys


def test_a_pre_fault_runs_outside_the_td_on_a_private_gfn_and_writes_nothing() -> None:
    idle = state(MODEL)
    after = step(C, idle, "kvm_arch_vcpu_pre_fault_memory(vcpu=0, gfn=1)")
    assert after is not None
    assert labels(MODEL, after, "fault.step[vcpu0]", "fault.is_private[vcpu0]", "fault.write[vcpu0]", "pre_faults") \
        == ("SEQ_SNAPSHOT", "true", "false", "1")
    assert step(C, after | {"fault.step[vcpu0]": 0}, "kvm_arch_vcpu_pre_fault_memory(vcpu=0, gfn=1)") is None  # bound
    in_td = state(MODEL, {"td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})
    assert step(C, in_td, "kvm_arch_vcpu_pre_fault_memory(vcpu=0, gfn=1)") is None
    shared = state(MODEL, {"mem_attr_array[g1]": "SHARED"})
    assert step(C, shared, "kvm_arch_vcpu_pre_fault_memory(vcpu=0, gfn=1)") is None


def test_a_write_over_a_present_leaf_with_other_ad_bits_freezes_it() -> None:
    clean = mapping(0, "MAP", **{"fault.write[vcpu0]": False})
    after = step(C, clean, "tdp_mmu_set_spte_atomic(vcpu=0, gfn=0)")
    assert after is not None
    assert labels(MODEL, after, "mirror_spte_4k[g0]", "fault.step[vcpu0]") == ("FROZEN", "FROZEN_PRESENT")
    same = mapping(0, "MAP", **{"fault.write[vcpu0]": True})
    assert step(C, same, "tdp_mmu_set_spte_atomic(vcpu=0, gfn=0)") is None  # equal SPTE: spurious


def test_tdx_reads_a_present_old_spte_as_a_removal_and_the_mirror_maps_it_again() -> None:
    frozen = mapping(0, "FROZEN_PRESENT", **{"mirror_spte_4k[g0]": "FROZEN", "td.vcpu_mode[vcpu1]": "IN_GUEST_CURRENT",
                                             "td.tlb.vcpu1[g0]": True})
    removed = step(C, frozen, "tdx_sept_remove_leaf_spte(vcpu=0, gfn=0)")
    assert removed is not None
    assert labels(MODEL, removed, "sept_4k[g0]", "fault.step[vcpu0]", "td.vcpu_mode[vcpu1]", "td.tlb.vcpu1[g0]") \
        == ("FREE", "REMOVED_PRESENT", "OUTSIDE_GUEST_MODE", "false")  # TRACK and the kick flushed vCPU1
    assert step(C, frozen, "tdx_sept_remove_leaf_spte_busy(vcpu=0, gfn=0)") is None  # no other SEAMCALL runs
    written = step(C, removed, "write_new_leaf(vcpu=0, gfn=0)")
    assert written is not None and labels(MODEL, written, "mirror_spte_4k[g0]", "fault.step[vcpu0]") == ("LEAF", "IDLE")
    assert not check(MODEL, "external_mirrors_mirror", written)
    assert not check(MODEL, "no_lost_accepted_data", written)
    assert check(MODEL, "no_kvm_bug", written)


def test_a_removal_under_the_read_lock_meets_another_faults_seamcall() -> None:
    racing = mapping(0, "FROZEN_PRESENT", **{"mirror_spte_4k[g0]": "FROZEN", "fault.step[vcpu1]": "FROZEN_LEAF",
                                             "fault.gfn[vcpu1]": 1, "fault.is_private[vcpu1]": True,
                                             "mirror_spte_4k[g1]": "FROZEN"})
    bugged = step(C, racing, "tdx_sept_remove_leaf_spte_busy(vcpu=0, gfn=0)")
    assert bugged is not None
    assert labels(MODEL, bugged, "kvm->vm_bugged", "fault.step[vcpu0]") == ("true", "RESTORE_PRESENT")
    restored = step(C, bugged, "restore_old_leaf(vcpu=0, gfn=0)")
    assert restored is not None and labels(MODEL, restored, "mirror_spte_4k[g0]", "sept_4k[g0]") == ("LEAF", "MAPPED")


def test_the_frozen_present_leaf_belongs_to_its_vcpu() -> None:
    frozen = mapping(0, "FROZEN_PRESENT", **{"mirror_spte_4k[g0]": "FROZEN"})
    assert check(MODEL, "frozen_owned", frozen)
    assert check(MODEL, "external_mirrors_mirror", frozen)  # the owner is between its two writes
