"""tdx.propagation under v7.3 (set_external_spte(old, new)) and KVM_PRE_FAULT_MEMORY, one
step at a time: each would fail if the step it checks changed meaning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checker.compile import compile_model
from invariants import CATALOGUE
from model.lang import ModelError
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
    clean = mapping(0, "READ_PRESENT", **{"fault.write[vcpu0]": False})  # the walk read the leaf
    after = step(C, clean, "tdp_mmu_set_spte_atomic(vcpu=0, gfn=0)")
    assert after is not None
    assert labels(MODEL, after, "mirror_spte_4k[g0]", "fault.step[vcpu0]") == ("FROZEN", "FROZEN_PRESENT")
    same = mapping(0, "MAP", **{"fault.write[vcpu0]": True})
    assert step(C, same, "walk_present(vcpu=0, gfn=0)") is None  # equal SPTE: spurious


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


def _walking(at: str, **changes: object) -> dict[str, int]:
    """vCPU0 in a private write fault on g0 at fault step `at` (g0 not mapped unless `changes` map it)."""
    return state(MODEL, {"fault.step[vcpu0]": at, "fault.gfn[vcpu0]": 0, "fault.is_private[vcpu0]": True,
                         "fault.goal_level[vcpu0]": "PG_LEVEL_4K", "fault.write[vcpu0]": True, **changes})


def test_the_walk_reads_iter_old_spte_before_the_cmpxchg_that_compares_against_it() -> None:
    """tdx.walk = iter-old-spte: the read is a step, the cmpxchg another."""
    walk = _walking("MAP")
    assert step(C, walk, "tdp_mmu_link_sp(vcpu=0, gfn=0)") is None  # no cmpxchg at the walk itself
    read = step(C, walk, "walk_top(vcpu=0, gfn=0)")
    assert read is not None
    assert labels(MODEL, read, "fault.step[vcpu0]", "mirror_spte_2m[g0]") == ("READ_TOP", "NONPRESENT")
    linked = step(C, read, "tdp_mmu_link_sp(vcpu=0, gfn=0)")
    assert linked is not None and labels(MODEL, linked, "mirror_spte_2m[g0]") == ("FROZEN",)
    assert step(C, read, "tdp_mmu_link_sp_busy(vcpu=0, gfn=0)") is None  # the copy is current


def test_a_stale_iter_old_spte_fails_the_cmpxchg_and_the_fault_retries() -> None:
    """Another vCPU froze the 2M-level SPTE, or installed the 4K leaf, after vCPU0's walk
    read it: vCPU0's cmpxchg fails (-EBUSY) and the fault ends (RET_PF_RETRY)."""
    top = _walking("READ_TOP", **{"mirror_spte_2m[g0]": "FROZEN"})
    assert step(C, top, "tdp_mmu_link_sp(vcpu=0, gfn=0)") is None
    retried = step(C, top, "tdp_mmu_link_sp_busy(vcpu=0, gfn=0)")
    assert retried is not None and labels(MODEL, retried, "fault.step[vcpu0]", "mirror_spte_2m[g0]") \
        == ("IDLE", "FROZEN")
    leaf = _walking("READ_LEAF", **{"mirror_spte_2m[g0]": "NONLEAF", "sept_2m[g0]": "NONLEAF",
                                    "mirror_spte_4k[g0]": "LEAF"})
    assert check(MODEL, "stale_iter_old_spte", leaf)  # the witness's state
    assert not check(MODEL, "stale_iter_old_spte", _walking("READ_LEAF", **{"mirror_spte_2m[g0]": "NONLEAF"}))
    assert step(C, leaf, "map_target_level(vcpu=0, gfn=0)") is None
    retried = step(C, leaf, "map_target_level_busy(vcpu=0, gfn=0)")
    assert retried is not None and labels(MODEL, retried, "fault.step[vcpu0]", "mirror_spte_4k[g0]") == ("IDLE", "LEAF")
    fresh = _walking("READ_LEAF", **{"mirror_spte_2m[g0]": "NONLEAF", "sept_2m[g0]": "NONLEAF"})
    assert step(C, fresh, "map_target_level_busy(vcpu=0, gfn=0)") is None
    assert labels(MODEL, step(C, fresh, "map_target_level(vcpu=0, gfn=0)") or {}, "mirror_spte_4k[g0]") == ("FROZEN",)


def test_a_present_to_present_write_compares_against_the_leaf_it_read() -> None:
    """Guard spurious-check off: the walk reads the leaf with the other A/D state; if
    another vCPU rewrote it since (now with the access's A/D state), the cmpxchg fails."""
    walk = mapping(0, "MAP", **{"fault.write[vcpu0]": False})
    read = step(C, walk, "walk_present(vcpu=0, gfn=0)")
    assert read is not None and labels(MODEL, read, "fault.step[vcpu0]") == ("READ_PRESENT",)
    assert step(C, read, "tdp_mmu_set_spte_atomic_busy(vcpu=0, gfn=0)") is None
    rewritten = read | {"mirror_spte_dirty[g0]": 0}
    assert step(C, rewritten, "tdp_mmu_set_spte_atomic(vcpu=0, gfn=0)") is None
    retried = step(C, rewritten, "tdp_mmu_set_spte_atomic_busy(vcpu=0, gfn=0)")
    assert retried is not None and labels(MODEL, retried, "fault.step[vcpu0]") == ("IDLE",)


def test_v6_19_walks_and_compares_in_one_step() -> None:
    """tdx.walk = read-at-cmpxchg: no read steps, and the cmpxchg is taken at the walk."""
    coarse = build(["tdx", "guest"], Sizes(2, 1, 2), OPTIONS, frozenset({"spurious-check"}), profile=profile("v6.19"))
    keys = set(coarse.by_key)
    assert "tdp_mmu_link_sp(vcpu=0, gfn=0)" in keys and "map_target_level(vcpu=0, gfn=0)" in keys
    for key in ("walk_top", "walk_leaf", "walk_present", "tdp_mmu_link_sp_busy", "map_target_level_busy"):
        assert f"{key}(vcpu=0, gfn=0)" not in keys, key
    f = coarse.field("fault.step[vcpu0]")
    assert "READ_LEAF" not in {f.label(v) for v in f.domain.values()}
    stale = next(i for i in CATALOGUE if i.name == "stale_iter_old_spte")  # a witness of one design only
    assert stale.applies_to(MODEL.get()) and not stale.applies_to(coarse)
    with pytest.raises(ModelError, match="no value 'iter_old_spte'"):
        replace(stale, when=("tdx.walk=iter_old_spte",)).applies_to(coarse)
