"""The TDX module oracle, the mirror walk, the tear-down and the guest, one step at a time."""

from __future__ import annotations

import pytest

from checker.compile import compile_model
from model.mmu import Sizes, build
from model.mmu.profiles import load as profile

from .helpers import Lazy, labels, state, step

PROFILE = Lazy(lambda: profile("v6.16"))
MODEL = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), {"attributes": {"initial_attributes": "private"}},
                    profile=PROFILE.get()))
C = Lazy(lambda: compile_model(MODEL.get()))

TABLE = {"sept_2m[g0]": "NONLEAF", "mirror_spte_2m[g0]": "NONLEAF"}


def faulting(v: int, at: str, gfn: int = 0, **changes: object) -> dict[str, int]:
    """vCPU v inside a private fault on gfn, at fault step `at`."""
    return state(MODEL, {f"fault.step[vcpu{v}]": at, f"fault.gfn[vcpu{v}]": gfn,
                         f"fault.is_private[vcpu{v}]": True, **changes})


def zapping(at: str, gfn: int = 0, **changes: object) -> dict[str, int]:
    """The ioctl thread tearing down gfn's leaf for a conversion, at tear-down step `at`."""
    return state(MODEL, {"ioctl.step": "CONVERT_ZAP", "sept_zap.step": at, "sept_zap.gfn": gfn,
                         "sept_zap.end": 2, "ioctl.start": 0, "ioctl.end": 2,
                         "mmu_invalidate_in_progress": 1, **changes})


# -- TDH.MEM.SEPT.ADD -----------------------------------------------------------------

def test_sept_add_succeeds_on_a_free_entry_and_fails_on_a_table() -> None:
    st = faulting(0, "FROZEN_TOP", **{"mirror_spte_2m[g0]": "FROZEN"})
    after = step(C, st, "tdh_mem_sept_add(vcpu=0, gfn=0)")
    assert after is not None and labels(MODEL, after, "sept_2m[g0]", "fault.step[vcpu0]") == ("NONLEAF", "LINKED_TOP")
    assert step(C, st, "tdh_mem_sept_add_error(vcpu=0, gfn=0)") is None
    twice = {**st, "sept_2m[g0]": MODEL.field("sept_2m[g0]").domain.code("NONLEAF")}
    assert step(C, twice, "tdh_mem_sept_add(vcpu=0, gfn=0)") is None
    bugged = step(C, twice, "tdh_mem_sept_add_error(vcpu=0, gfn=0)")
    assert bugged is not None and bugged["kvm->vm_bugged"] == 1


# -- TDH.MEM.PAGE.AUG -----------------------------------------------------------------

def test_aug_needs_a_table_and_a_free_entry() -> None:
    st = faulting(0, "FROZEN_LEAF", **TABLE, **{"mirror_spte_4k[g0]": "FROZEN"})
    after = step(C, st, "tdh_mem_page_aug(vcpu=0, gfn=0)")
    assert after is not None
    assert labels(MODEL, after, "sept_4k[g0]", "tdx_pinned[g0]", "fault.step[vcpu0]") == ("PENDING", "true", "AUGED")
    for bad in ("walk_failed", "state_incorrect"):
        assert step(C, st, f"tdh_mem_page_aug_{bad}(vcpu=0, gfn=0)") is None

    no_table = faulting(0, "FROZEN_LEAF", **{"mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g0]": "FROZEN"})
    assert step(C, no_table, "tdh_mem_page_aug(vcpu=0, gfn=0)") is None
    assert step(C, no_table, "tdh_mem_page_aug_walk_failed(vcpu=0, gfn=0)")["kvm->vm_bugged"] == 1  # type: ignore[index]

    taken = {**st, "sept_4k[g0]": MODEL.field("sept_4k[g0]").domain.code("PENDING")}
    assert step(C, taken, "tdh_mem_page_aug(vcpu=0, gfn=0)") is None
    assert step(C, taken, "tdh_mem_page_aug_state_incorrect(vcpu=0, gfn=0)")["kvm->vm_bugged"] == 1  # type: ignore[index]


def test_busy_only_while_a_vcpu_runs_in_the_td() -> None:
    st = faulting(0, "FROZEN_LEAF", **TABLE, **{"mirror_spte_4k[g0]": "FROZEN"})
    assert step(C, st, "tdh_mem_page_aug_busy(vcpu=0, gfn=0)") is None
    inside = {**st, "td.vcpu_mode[vcpu1]": 1}
    after = step(C, inside, "tdh_mem_page_aug_busy(vcpu=0, gfn=0)")
    assert after is not None and labels(MODEL, after, "sept_4k[g0]", "fault.step[vcpu0]") == ("FREE", "RESTORE_LEAF")
    restored = step(C, after, "restore_leaf(vcpu=0, gfn=0)")
    assert restored is not None and labels(MODEL, restored, "mirror_spte_4k[g0]", "fault.step[vcpu0]") == (
        "NONPRESENT", "IDLE")


# -- the mirror walk ------------------------------------------------------------------

def test_a_frozen_spte_makes_other_vcpus_retry() -> None:
    st = faulting(1, "MAP", **{"mirror_spte_2m[g0]": "FROZEN", "fault.step[vcpu0]": "FROZEN_TOP",
                               "fault.is_private[vcpu0]": True})
    assert step(C, st, "tdp_mmu_link_sp(vcpu=1, gfn=0)") is None
    after = step(C, st, "retry_frozen(vcpu=1, gfn=0)")
    assert after is not None and labels(MODEL, after, "fault.step[vcpu1]") == ("IDLE",)


def test_freeze_then_publish() -> None:
    st = faulting(0, "MAP", **TABLE)
    frozen = step(C, st, "map_target_level(vcpu=0, gfn=0)")
    assert frozen is not None and labels(MODEL, frozen, "mirror_spte_4k[g0]") == ("FROZEN",)
    frozen["fault.write[vcpu0]"] = 1
    aug = step(C, frozen, "tdh_mem_page_aug(vcpu=0, gfn=0)")
    done = step(C, aug, "write_leaf(vcpu=0, gfn=0)")  # type: ignore[arg-type]
    assert done is not None
    assert labels(MODEL, done, "mirror_spte_4k[g0]", "mirror_spte_dirty[g0]", "fault.step[vcpu0]") == (
        "LEAF", "true", "IDLE")


def test_a_present_leaf_is_spurious_whatever_its_ad_state() -> None:
    st = faulting(0, "MAP", **TABLE, **{"mirror_spte_4k[g0]": "LEAF", "mirror_spte_dirty[g0]": True})
    assert step(C, st, "map_spurious(vcpu=0, gfn=0)") is not None  # a read fault, a dirty leaf
    unguarded = build(["tdx", "guest"], Sizes(2, 1, 2), {"attributes": {"initial_attributes": "private"}},
                      guards_off=["spurious-check"], profile=PROFILE.get())
    cu = compile_model(unguarded)
    assert step(cu, st, "map_spurious(vcpu=0, gfn=0)") is None
    bugged = step(cu, st, "set_external_spte_present_was_present(vcpu=0, gfn=0)")
    assert bugged is not None and bugged["kvm->vm_bugged"] == 1


# -- the tear-down --------------------------------------------------------------------

def test_block_needs_a_present_leaf() -> None:
    st = zapping("BLOCK", **TABLE, **{"sept_4k[g0]": "MAPPED"})
    after = step(C, st, "tdh_mem_range_block(gfn=0)")
    assert after is not None
    assert labels(MODEL, after, "sept_4k[g0]", "sept_bepoch[g0]", "sept_zap.step") == ("BLOCKED", "CURRENT", "TRACK")
    free = zapping("BLOCK", **TABLE)
    assert step(C, free, "tdh_mem_range_block(gfn=0)") is None
    assert step(C, free, "tdh_mem_range_block_error(gfn=0)")["kvm->vm_bugged"] == 1  # type: ignore[index]


def test_busy_in_the_zap_path_kicks_and_blocks_entry_then_the_retry_succeeds() -> None:
    st = zapping("BLOCK", **TABLE, **{"sept_4k[g0]": "MAPPED", "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})
    busy = step(C, st, "tdh_mem_range_block_busy(gfn=0)")
    assert busy is not None
    assert labels(MODEL, busy, "kvm_tdx->wait_for_sept_zap", "td.vcpu_mode[vcpu0]") == ("true", "OUTSIDE_GUEST_MODE")
    assert step(C, busy, "tdh_vp_enter(vcpu=0)") is None  # tdx_vcpu_run() refuses
    assert step(C, busy, "tdh_mem_range_block_busy(gfn=0)") is None  # nobody left to contend
    retried = step(C, busy, "tdh_mem_range_block(gfn=0)")
    assert retried is not None and labels(MODEL, retried, "kvm_tdx->wait_for_sept_zap") == ("false",)


def test_track_refuses_while_a_vcpu_runs_at_the_previous_epoch() -> None:
    st = zapping("TRACK", **TABLE, **{"sept_4k[g0]": "BLOCKED", "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT",
                                      "td.tlb.vcpu1[g1]": True})
    tracked = step(C, st, "tdh_mem_track()")
    assert tracked is not None
    assert labels(MODEL, tracked, "sept_bepoch[g0]", "td.vcpu_mode[vcpu0]", "td.tlb.vcpu1[g1]") == (
        "PREVIOUS", "IN_GUEST_PREVIOUS", "false")  # vCPU1 was outside: it flushes on entry
    again = {**tracked, "sept_zap.step": st["sept_zap.step"]}
    assert step(C, again, "tdh_mem_track()") is None
    assert step(C, again, "tdh_mem_track_busy()") is not None


@pytest.mark.parametrize(("age", "vcpu0", "ok"), [
    ("CURRENT", "OUTSIDE_GUEST_MODE", False),  # never tracked: TDX_TLB_TRACKING_NOT_DONE
    ("PREVIOUS", "IN_GUEST_PREVIOUS", False),  # tracked, but a vCPU still runs at the old epoch
    ("PREVIOUS", "OUTSIDE_GUEST_MODE", True),
    ("PREVIOUS", "IN_GUEST_CURRENT", True),
    ("OLDER", "OUTSIDE_GUEST_MODE", True),
])
def test_remove_needs_a_tracked_blocking_epoch(age: str, vcpu0: str, ok: bool) -> None:
    st = zapping("REMOVE", **TABLE, **{"sept_4k[g0]": "BLOCKED", "sept_bepoch[g0]": age,
                                       "td.vcpu_mode[vcpu0]": vcpu0, "tdx_pinned[g0]": True,
                                       "td.accepted[g0]": True})
    after = step(C, st, "tdh_mem_page_remove(gfn=0)")
    error = step(C, st, "tdh_mem_page_remove_error(gfn=0)")
    assert (after is not None) is ok and (error is not None) is (not ok)
    if ok:
        assert labels(MODEL, after, "sept_4k[g0]", "tdx_pinned[g0]", "td.accepted[g0]") == (  # type: ignore[arg-type]
            "FREE", "false", "false")
    else:
        assert error["kvm->vm_bugged"] == 1  # type: ignore[index]


def test_remove_of_an_unblocked_leaf_is_an_error() -> None:
    st = zapping("REMOVE", **TABLE, **{"sept_4k[g0]": "MAPPED", "sept_bepoch[g0]": "OLDER"})
    assert step(C, st, "tdh_mem_page_remove(gfn=0)") is None
    assert step(C, st, "tdh_mem_page_remove_error(gfn=0)") is not None


def test_remove_keeps_accepted_data_only_for_a_memslot_zap() -> None:
    st = zapping("REMOVE", **TABLE, **{"sept_4k[g0]": "BLOCKED", "sept_bepoch[g0]": "OLDER",
                                       "td.accepted[g0]": True, "ioctl.step": "SLOT_ZAP",
                                       "mmu_invalidate_in_progress": 0})
    after = step(C, st, "tdh_mem_page_remove(gfn=0)")
    assert after is not None and labels(MODEL, after, "td.accepted[g0]") == ("true",)


def test_the_zap_clears_every_mirror_leaf_then_releases_the_lock() -> None:
    leaves = {**TABLE, "mirror_spte_4k[g0]": "LEAF", "mirror_spte_4k[g1]": "LEAF",
              "sept_4k[g0]": "PENDING", "sept_4k[g1]": "PENDING",
              "mem_attr_array[g0]": "PRIVATE"}
    st = state(MODEL, leaves)
    key = next(k for k in MODEL.by_key if k.startswith("kvm_pre_set_memory_attributes")
               and "start=0, end=2, attributes='SHARED'" in k)
    pre = step(C, st, key)
    assert pre is not None
    assert labels(MODEL, pre, "ioctl.step", "sept_zap.step", "mirror_spte_4k[g0]", "mirror_spte_4k[g1]") == (
        "CONVERT_ZAP", "BLOCK", "NONPRESENT", "LEAF")
    nxt = {**pre, "sept_zap.step": MODEL.field("sept_zap.step").domain.code("NEXT")}
    second = step(C, nxt, "tdp_mmu_zap_leafs()")
    assert second is not None and labels(MODEL, second, "sept_zap.gfn", "mirror_spte_4k[g1]") == ("g1", "NONPRESENT")
    last = {**second, "sept_zap.step": MODEL.field("sept_zap.step").domain.code("NEXT")}
    done = step(C, last, "tdp_mmu_zap_leafs()")
    assert done is not None and labels(MODEL, done, "ioctl.step", "sept_zap.step") == ("STORE", "IDLE")


def test_faults_wait_while_the_zap_holds_the_write_lock() -> None:
    st = zapping("TRACK", **{"fault.step[vcpu0]": "PFN", "fault.is_private[vcpu0]": True})
    assert step(C, st, "read_lock(vcpu=0, gfn=0, private=True)") is None
    free = {**st, "ioctl.step": 0, "sept_zap.step": 0, "mmu_invalidate_in_progress": 0}
    assert step(C, free, "read_lock(vcpu=0, gfn=0, private=True)") is not None


YIELDS = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), {"attributes": {"initial_attributes": "private"},
                                                                 "tdx": {"zap_yields": True}}, profile=PROFILE.get()))
C_YIELDS = Lazy(lambda: compile_model(YIELDS.get()))


def test_a_zap_may_yield_the_lock_between_leaves_and_walks_on_after() -> None:
    """Option zap_yields: at NEXT, tdp_mmu_iter_cond_resched() drops mmu_lock (a fault may
    take it for read, the zap may not go on) and takes it again; never in the middle of a
    leaf's SEAMCALLs. Without the option there is no such step."""
    m, c = YIELDS, C_YIELDS
    between = state(m, {"ioctl.step": "CONVERT_ZAP", "sept_zap.step": "NEXT", "sept_zap.gfn": 1, "sept_zap.end": 2,
                        "ioctl.start": 0, "ioctl.end": 2, "mmu_invalidate_in_progress": 1,
                        "fault.step[vcpu0]": "PFN", "fault.is_private[vcpu0]": True})
    assert step(c, between, "read_lock(vcpu=0, gfn=0, private=True)") is None
    yielded = step(c, between, "tdp_mmu_iter_cond_resched()")
    assert yielded is not None and labels(m, yielded, "ioctl.zap_yield") == ("YIELDED",)
    assert step(c, yielded, "tdp_mmu_zap_leafs()") is None
    reader = step(c, yielded, "read_lock(vcpu=0, gfn=0, private=True)")
    assert reader is not None
    queued = step(c, reader, "tdp_mmu_iter_cond_resched_requeue()")
    assert queued is not None
    assert step(c, queued, "tdp_mmu_iter_cond_resched_relock()") is None  # the fault holds it for read
    relocked = step(c, step(c, yielded, "tdp_mmu_iter_cond_resched_requeue()"), "tdp_mmu_iter_cond_resched_relock()")
    assert relocked is not None and labels(m, relocked, "ioctl.zap_yield") == ("RESUMED",)
    assert step(c, relocked, "tdp_mmu_iter_cond_resched()") is None  # no second yield before progress
    assert step(c, relocked, "tdp_mmu_zap_leafs()") is not None
    mid_leaf = {**between, "sept_zap.step": m.get().field("sept_zap.step").domain.code("TRACK")}
    assert step(c, mid_leaf, "tdp_mmu_iter_cond_resched()") is None
    assert "tdp_mmu_iter_cond_resched()" not in MODEL.get().by_key


def test_a_yielded_zap_keeps_its_range_invalidated() -> None:
    """invalidation_covers_yielded_zap: while the zap has dropped mmu_lock, every GFN of its
    range is in the invalidation in progress; a range that lost a GFN (what another
    invalidation without guard range-union does) breaks it, and a zap that holds the lock
    is not judged."""
    from .helpers import check

    m = YIELDS
    base = {"ioctl.step": "CONVERT_ZAP", "sept_zap.step": "NEXT", "sept_zap.gfn": 1, "sept_zap.end": 2,
            "ioctl.start": 0, "ioctl.end": 2, "mmu_invalidate_in_progress": 1, "ioctl.zap_yield": "YIELDED",
            "mmu_invalidate_range_start": 0, "mmu_invalidate_range_end": 2}
    assert check(m, "invalidation_covers_yielded_zap", state(m, base))
    lost = state(m, {**base, "mmu_invalidate_range_start": 1})
    assert not check(m, "invalidation_covers_yielded_zap", lost)
    assert check(m, "invalidation_covers_yielded_zap", state(m, {**base, "mmu_invalidate_range_start": 1,
                                                                 "ioctl.zap_yield": "RESUMED"}))


# -- the guest --------------------------------------------------------------------------

def test_accept_moves_a_pending_page_to_mapped() -> None:
    st = state(MODEL, {**TABLE, "sept_4k[g0]": "PENDING", "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})
    after = step(C, st, "tdg_mem_page_accept(vcpu=0, gfn=0)")
    assert after is not None and labels(MODEL, after, "sept_4k[g0]", "td.accepted[g0]") == ("MAPPED", "true")
    free = state(MODEL, {**TABLE, "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})
    assert step(C, free, "tdg_mem_page_accept(vcpu=0, gfn=0)") is None
    violation = step(C, free, "tdx_handle_ept_violation(vcpu=0, gfn=0, private=True, write=True)")
    assert violation is not None
    assert labels(MODEL, violation, "td.vcpu_mode[vcpu0]", "fault.step[vcpu0]", "fault.write[vcpu0]") == (
        "OUTSIDE_GUEST_MODE", "SEQ_SNAPSHOT", "true")


def test_the_kick_flushes_only_translations_from_before_the_track() -> None:
    st = zapping("KICK", **{"td.vcpu_mode[vcpu0]": "IN_GUEST_PREVIOUS", "td.tlb.vcpu0[g0]": True,
                            "td.vcpu_mode[vcpu1]": "IN_GUEST_CURRENT", "td.tlb.vcpu1[g1]": True})
    after = step(C, st, "kvm_make_all_cpus_request()")
    assert after is not None
    assert labels(MODEL, after, "td.vcpu_mode[vcpu0]", "td.vcpu_mode[vcpu1]", "td.tlb.vcpu0[g0]",
                  "td.tlb.vcpu1[g1]") == ("OUTSIDE_GUEST_MODE", "OUTSIDE_GUEST_MODE", "false", "true")


def test_punch_hole_frees_only_unpinned_pages() -> None:
    st = state(MODEL, {"ioctl.step": "TRUNCATE", "ioctl.start": 0, "ioctl.end": 2, "tdx_pinned[g1]": True,
                       "mmu_invalidate_in_progress": 1})
    after = step(C, st, "truncate_inode_pages_range()")
    assert after is not None and labels(MODEL, after, "gmem_page[g0]", "gmem_page[g1]") == ("FREED", "ALLOCATED")


def test_tdx_without_a_guest_keeps_every_invariant() -> None:
    """The tdx component alone (vCPUs fault at will, nobody runs in the TD): no BUSY,
    TRACK never waits, and every applicable invariant holds in every reachable state."""
    from checker.explicit import Budget, ExplicitSearch
    from invariants import CATALOGUE, select

    model = build(["tdx"], Sizes(2, 1, 2), {"attributes": {"initial_attributes": "private", "max_conversions": 1},
                                             "tdx": {"max_memslot_updates": 0}}, profile=PROFILE.get())
    assert "guest" not in model.parts and "td.vcpu_mode[vcpu0]" not in model.schema.by_name
    bounds = select(CATALOGUE, model, None)
    assert {"no_kvm_bug", "no_orphan_external"} <= {b.name for b in bounds}
    result = ExplicitSearch(compile_model(model), bounds, Budget()).run()
    assert result.complete and not result.violations
    assert result.distinct > 1000


@pytest.mark.parametrize(("spec", "old", "new", "key", "allowed"), [
    ("tdx-default", "punch_holes = [{ start = 2, end = 3 }]", "punch_holes = [{ start = 3, end = 9 }]",
     "tdx.punch_holes[0].start/end", "0 <= start < end <= 4"),
    ("tdx-memory-failure", "memory_failures = [1]", "memory_failures = [7]", "tdx.memory_failures[0]", "0 <= GFN < 2"),
])
def test_a_bad_tdx_option_names_its_key(tmp_path, capsys, spec: str, old: str, new: str, key: str,  # type: ignore[no-untyped-def]
                                        allowed: str) -> None:
    from checker.cli import main

    from .shipped import ROOT

    text = (ROOT / "specs" / f"{spec}.toml").read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new))
    assert main(["--spec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert key in err and allowed in err


THREAD_OPTIONS = {"attributes": {"initial_attributes": "private", "max_conversions": 1,
                                 "conversions": [{"start": 1, "end": 2, "attributes": "shared"}]},
                  "tdx": {"max_punch_holes": 1, "punch_holes": [{"start": 0, "end": 1}], "max_memslot_updates": 0,
                          "nx_recovery": False, "punch_hole_thread": True}}
THREAD = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), THREAD_OPTIONS, profile=PROFILE.get()))
C_THREAD = Lazy(lambda: compile_model(THREAD.get()))
CONVERT_G1 = "kvm_pre_set_memory_attributes(conversion=Conversion(start=1, end=2, attributes='SHARED'))"
PUNCH_G0 = "kvm_gmem_punch_hole(hole=PunchHole(start=0, end=1))"


def test_a_punch_hole_thread_overlaps_a_conversion_and_zaps_for_itself() -> None:
    """[tdx] punch_hole_thread: a fallocate() thread punches while the ioctl thread is in the
    middle of its conversion (its stores run under slots_lock only): both invalidations are
    in progress, the range is their union; the tear-down of g0 is the fallocate thread's,
    which then truncates and ends its invalidation alone."""
    m, c = THREAD, C_THREAD
    mapped = state(m, {**TABLE, "mirror_spte_4k[g0]": "LEAF", "sept_4k[g0]": "MAPPED"})
    converting = step(c, mapped, CONVERT_G1)
    assert converting is not None and labels(m, converting, "ioctl.step") == ("STORE",)
    both = step(c, converting, PUNCH_G0)
    assert both is not None
    assert labels(m, both, "fallocate.step", "ioctl.step", "mmu_invalidate_in_progress", "mmu_invalidate_range_start",
                  "mmu_invalidate_range_end", "sept_zap.step", "sept_zap.gfn") == (
        "PUNCH_ZAP", "STORE", "2", "g0", "g2", "BLOCK", "g0")
    assert [a.actor for a in m.get().actions if a.name == "kvm_gmem_punch_hole"] == ["fallocate"]
    # the machine's REMOVE of g0 ends the fallocate thread's zap, not the ioctl thread's
    removed = step(c, {**both, **{k: v for k, v in state(m, {"sept_zap.step": "NEXT", "sept_zap.gfn": 1,
                                                              "sept_zap.end": 1}).items()
                                  if k.startswith("sept_zap")}}, "tdp_mmu_zap_leafs()")
    assert removed is not None
    assert labels(m, removed, "fallocate.step", "ioctl.step", "sept_zap.step") == ("TRUNCATE", "STORE", "IDLE")
    truncated = step(c, removed, "truncate_inode_pages_range()")
    assert truncated is not None and labels(m, truncated, "gmem_page[g0]", "gmem_page[g1]") == ("FREED", "ALLOCATED")
    ended = step(c, truncated, "kvm_gmem_invalidate_end()")
    assert ended is not None
    assert labels(m, ended, "fallocate.step", "mmu_invalidate_in_progress", "mmu_invalidate_seq",
                  "mmu_invalidate_range_start") == ("IDLE", "1", "1", "g0")
    # the punch-hole's seq bump does not use up the conversion the scenario allows
    assert step(c, ended, "kvm_arch_post_set_memory_attributes()") is None  # g1 is not stored yet
    idle = state(m, {"mmu_invalidate_seq": 1, "gmem.punch_holes": 1})
    assert step(c, idle, CONVERT_G1) is not None


def test_a_punch_hole_thread_is_refused_where_the_model_cannot_have_one(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from model.lang import OptionError

    for extra, profile_name, problem in (({"zap_yields": True}, "v7.3", "one tear-down iterator"),
                                         ({}, "gmem-inplace-v8", "filemap_invalidate_lock for write too")):
        options = {**THREAD_OPTIONS, "tdx": {**THREAD_OPTIONS["tdx"], **extra}}
        with pytest.raises(OptionError, match=problem):
            build(["tdx", "guest"], Sizes(2, 1, 2), options, profile=profile(profile_name))
    from checker.cli import main

    from .shipped import ROOT

    text = (ROOT / "specs" / "tdx-punch-hole-thread.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('profile = "v7.3"', 'profile = "gmem-inplace-v8"').split("[expect]")[0])
    assert main(["--spec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: tdx.punch_hole_thread: " in err and "one thread's work" in err


MF_OPTIONS = {"attributes": {"initial_attributes": "private", "max_conversions": 0},
              "tdx": {"max_punch_holes": 0, "max_memslot_updates": 0, "nx_recovery": False, "memory_failures": [1]}}
MF = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), MF_OPTIONS, profile=profile("v7.3")))
C_MF = Lazy(lambda: compile_model(MF.get()))


def test_a_memory_failure_zaps_the_folio_and_poisons_the_page() -> None:
    """kvm_gmem_error_folio(): PG_hwpoison, the invalidation of the (order-0) folio and the
    zap of its private mapping; the guest's data at the poisoned page is meant to go, so
    its REMOVE discards it; a later private fault there gets -EHWPOISON, not a pfn."""
    m, c = MF, C_MF
    mapped = state(m, {**TABLE, "mirror_spte_4k[g1]": "LEAF", "sept_4k[g1]": "MAPPED", "td.accepted[g1]": True})
    failed = step(c, mapped, "kvm_gmem_error_folio(gfn=1)")
    assert failed is not None
    assert labels(m, failed, "gmem_hwpoison[g1]", "ioctl.step", "mmu_invalidate_range_start",
                  "mmu_invalidate_range_end", "sept_zap.step", "sept_zap.gfn", "mirror_spte_4k[g1]") == (
        "true", "ERROR_ZAP", "g1", "g2", "BLOCK", "g1", "NONPRESENT")
    assert step(c, failed, "kvm_gmem_error_folio(gfn=1)") is None  # once
    blocked = {"sept_zap.step": "REMOVE", "sept_4k[g1]": "BLOCKED", "sept_bepoch[g1]": "OLDER"}
    removing = {**failed, **{k: v for k, v in state(m, blocked).items() if k in blocked}}
    removed = step(c, removing, "tdh_mem_page_remove(gfn=1)")
    assert removed is not None and labels(m, removed, "td.accepted[g1]") == ("false",)
    poisoned = state(m, {"gmem_hwpoison[g1]": True, "fault.step[vcpu0]": "SEQ_SNAPSHOT", "fault.gfn[vcpu0]": 1,
                         "fault.is_private[vcpu0]": True})
    assert step(c, poisoned, "faultin_pfn(vcpu=0, gfn=1, private=True)") is None
    signalled = step(c, poisoned, "kvm_send_hwpoison_signal(vcpu=0, gfn=1)")
    assert signalled is not None and labels(m, signalled, "fault.step[vcpu0]") == ("IDLE",)


def test_a_memory_failure_in_a_huge_folio_zaps_all_of_it() -> None:
    """With the huge-page series the folio may be 2M: the invalidation and the zap cover
    the whole region (the 2M leaf goes), though only g1 is poisoned."""
    m = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), MF_OPTIONS, profile=profile("tdx-hugepage-rfc-v5")))
    c = Lazy(lambda: compile_model(m.get()))
    huge = state(m, {"mirror_spte_2m[g0]": "LEAF", "sept_2m[g0]": "MAPPED", "td.accepted[g0]": True,
                     "td.accepted[g1]": True})
    failed = step(c, huge, "kvm_gmem_error_folio(gfn=1)")
    assert failed is not None
    assert labels(m, failed, "mmu_invalidate_range_start", "mmu_invalidate_range_end", "sept_zap.op",
                  "sept_zap.gfn") == ("g0", "g2", "REMOVE_2M", "g0")
    order0 = state(m, {"gmem_max_level[g0]": "PG_LEVEL_4K"})
    small = step(c, order0, "kvm_gmem_error_folio(gfn=1)")
    assert small is not None and labels(m, small, "mmu_invalidate_range_start") == ("g1",)
