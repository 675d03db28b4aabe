"""TDX huge pages on hand-built states: AUG at 2M, DEMOTE / PROMOTE / UNBLOCK preconditions,
the ACCEPT-level EPT violation, GUEST_INHIBIT, and the huge-page invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest
import z3

from checker.compile import compile_model
from checker.sanity import vacuous
from invariants import CATALOGUE, applicable
from model.lang import ModelError
from model.mmu import Sizes, build
from model.mmu.profiles import load as profile

from .helpers import Lazy, check, label_value, labels, state, step

PROFILE = Lazy(lambda: profile("tdx-hugepage-rfc-v3"))
OPTIONS = {"attributes": {"initial_attributes": "private", "max_conversions": 0},
           "tdx": {"max_punch_holes": 0, "max_memslot_updates": 0, "nx_recovery": False}}
MODEL = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, profile=PROFILE.get()))
C = Lazy(lambda: compile_model(MODEL.get()))
SHARED_SPLIT = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, guards_off=["accept-level-write-lock"],
                    profile=PROFILE.get()))
C_SHARED = Lazy(lambda: compile_model(SHARED_SPLIT.get()))
NO_ADJUST = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, guards_off=["mirror-hugepage-adjust"],
                    profile=PROFILE.get()))
C_NO_ADJUST = Lazy(lambda: compile_model(NO_ADJUST.get()))

HUGE = {"mirror_spte_2m[g0]": "LEAF", "sept_2m[g0]": "PENDING"}
TABLE = {"mirror_spte_2m[g0]": "NONLEAF", "sept_2m[g0]": "NONLEAF", "mirror_spte_4k[g0]": "LEAF",
         "mirror_spte_4k[g1]": "LEAF", "sept_4k[g0]": "PENDING", "sept_4k[g1]": "PENDING"}


def machine(at: str, op: str, **changes: object) -> dict[str, int]:
    """vCPU0 holds mmu_lock for write (a split for its ACCEPT, or a merge) and the 2M
    operation `op` is at step `at`."""
    holder = "SPLIT" if op == "DEMOTE" else "MERGE"
    return state(MODEL, {"fault.step[vcpu0]": holder, "fault.is_private[vcpu0]": True,
                         "sept_zap.step": at, "sept_zap.op": op, **changes})


# -- TDH.MEM.PAGE.AUG at 2M -------------------------------------------------------------

@pytest.mark.parametrize(("entry", "ok"), [("FREE", True), ("PENDING", False), ("NONLEAF", False)])
def test_aug_2m_needs_a_free_2m_entry(entry: str, ok: bool) -> None:
    st = state(MODEL, {"fault.step[vcpu0]": "FROZEN_TOP", "fault.is_private[vcpu0]": True,
                       "fault.goal_level[vcpu0]": "PG_LEVEL_2M", "mirror_spte_2m[g0]": "FROZEN",
                       "sept_2m[g0]": entry})
    good = step(C, st, "tdh_mem_page_aug_2m(vcpu=0, gfn=0)")
    bad = step(C, st, "tdh_mem_page_aug_2m_error(vcpu=0, gfn=0)")
    assert (good is not None) is ok and (bad is not None) is (not ok)
    assert step(C, st, "tdh_mem_sept_add(vcpu=0, gfn=0)") is None  # a 2M goal adds no table
    if ok:
        assert good is not None
        assert labels(MODEL, good, "sept_2m[g0]", "tdx_pinned[g0]", "tdx_pinned[g1]") == ("PENDING", "true", "true")
    else:
        assert bad is not None and labels(MODEL, bad, "kvm->vm_bugged") == ("true",)


def test_hugepage_adjust_honours_guest_inhibit() -> None:
    at = {"fault.step[vcpu0]": "NOT_STALE", "fault.is_private[vcpu0]": True, "fault.max_level[vcpu0]": "PG_LEVEL_2M"}
    free = step(C, state(MODEL, at), "kvm_mmu_hugepage_adjust(vcpu=0, gfn=0, private=True)")
    inhibited = step(C, state(MODEL, {**at, "hugepage_guest_inhibit[g0]": True}),
                     "kvm_mmu_hugepage_adjust(vcpu=0, gfn=0, private=True)")
    assert free is not None and labels(MODEL, free, "fault.goal_level[vcpu0]") == ("PG_LEVEL_2M",)
    assert inhibited is not None and labels(MODEL, inhibited, "fault.goal_level[vcpu0]") == ("PG_LEVEL_4K",)


# -- the ACCEPT level ---------------------------------------------------------------------

def test_accept_at_4k_inside_a_2m_leaf_takes_the_write_lock_and_demotes() -> None:
    st = state(MODEL, {**HUGE, "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})
    assert step(C, st, "tdg_mem_page_accept(vcpu=0, gfn=1)") is None  # no 4K entry to accept
    exit_ = step(C, st, "tdx_handle_ept_violation_accept_4k(vcpu=0, gfn=1)")
    assert exit_ is not None
    assert labels(MODEL, exit_, "fault.step[vcpu0]", "td.vcpu_mode[vcpu0]") == ("ACCEPT_LEVEL", "OUTSIDE_GUEST_MODE")
    # another vCPU holding the read lock keeps the write lock away
    reader = {**exit_, "fault.step[vcpu1]": state(MODEL, {"fault.step[vcpu1]": "LOCKED"})["fault.step[vcpu1]"]}
    assert step(C, reader, "tdx_check_accept_level_split(vcpu=0, gfn=1)") is None
    split = step(C, exit_, "tdx_check_accept_level_split(vcpu=0, gfn=1)")
    assert split is not None
    assert labels(MODEL, split, "fault.step[vcpu0]", "sept_zap.step", "sept_zap.op", "mirror_spte_2m[g0]",
                  "mirror_spte_4k[g1]", "hugepage_guest_inhibit[g0]") == (
        "SPLIT", "BLOCK", "DEMOTE", "NONLEAF", "LEAF", "false")
    assert step(C, exit_, "tdx_check_accept_level(vcpu=0, gfn=1)") is None  # there is a leaf to split
    done = step(C, {**split, "sept_zap.step": state(MODEL, {"sept_zap.step": "DONE"})["sept_zap.step"]},
                "split_done(vcpu=0, gfn=1)")
    assert done is not None
    assert labels(MODEL, done, "hugepage_guest_inhibit[g0]", "fault.step[vcpu0]", "sept_zap.step") == (
        "true", "SEQ_SNAPSHOT", "IDLE")


def test_accept_at_4k_with_guest_inhibit_set_faults_without_the_lock() -> None:
    st = state(MODEL, {"td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT", "hugepage_guest_inhibit[g0]": True})
    exit_ = step(C, st, "tdx_handle_ept_violation_accept_4k(vcpu=0, gfn=1)")
    assert exit_ is not None and labels(MODEL, exit_, "fault.step[vcpu0]") == ("SEQ_SNAPSHOT",)


def test_accept_at_4k_without_a_huge_leaf_only_sets_guest_inhibit() -> None:
    st = state(MODEL, {"fault.step[vcpu0]": "ACCEPT_LEVEL", "fault.gfn[vcpu0]": 1, "fault.is_private[vcpu0]": True})
    after = step(C, st, "tdx_check_accept_level(vcpu=0, gfn=1)")
    assert after is not None
    assert labels(MODEL, after, "hugepage_guest_inhibit[g0]", "fault.step[vcpu0]") == ("true", "SEQ_SNAPSHOT")


def test_accept_at_2m_over_a_4k_table_falls_back_to_4k() -> None:
    st = state(MODEL, {**TABLE, "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT", "td.accepting_2m[vcpu0]": 1})
    assert step(C, st, "tdg_mem_page_accept_2m(vcpu=0, region=0)") is None
    assert step(C, st, "tdg_mem_page_accept(vcpu=0, gfn=0)") is None  # busy re-executing the 2M ACCEPT
    back = step(C, st, "tdg_mem_page_accept_2m_mismatch(vcpu=0, region=0)")
    assert back is not None and labels(MODEL, back, "td.accepting_2m[vcpu0]") == ("none",)
    assert step(C, back, "tdg_mem_page_accept(vcpu=0, gfn=0)") is not None


def test_accept_at_2m_of_a_2m_leaf_accepts_every_page() -> None:
    st = state(MODEL, {**HUGE, "td.vcpu_mode[vcpu1]": "IN_GUEST_CURRENT", "td.accepting_2m[vcpu1]": 1})
    after = step(C, st, "tdg_mem_page_accept_2m(vcpu=1, region=0)")
    assert after is not None
    assert labels(MODEL, after, "sept_2m[g0]", "td.accepted[g0]", "td.accepted[g1]", "td.accepting_2m[vcpu1]") == (
        "MAPPED", "true", "true", "none")


def test_without_the_write_lock_a_4k_goal_splits_under_the_read_lock() -> None:
    walk = {**HUGE, "fault.step[vcpu1]": "MAP", "fault.is_private[vcpu1]": True}
    assert step(C, state(MODEL, walk), "split_refused(vcpu=1, gfn=0)") is not None  # -EOPNOTSUPP
    st = state(SHARED_SPLIT, walk)
    after = step(C_SHARED, st, "tdp_mmu_split_huge_page_shared(vcpu=1, gfn=0)")
    assert after is not None
    assert labels(SHARED_SPLIT, after, "mirror_spte_2m[g0]", "fault.step[vcpu1]", "sept_zap.op") == (
        "FROZEN", "SPLIT_SHARED", "DEMOTE")
    # a BUSY TRACK cannot be retried under the read lock: the entry must be unblocked
    tracking = {**after, "sept_2m[g0]": state(SHARED_SPLIT, {"sept_2m[g0]": "PENDING_BLOCKED"})["sept_2m[g0]"],
                "sept_zap.step": state(SHARED_SPLIT, {"sept_zap.step": "TRACK"})["sept_zap.step"],
                "td.vcpu_mode[vcpu0]": state(SHARED_SPLIT, {"td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT"})[
                    "td.vcpu_mode[vcpu0]"]}
    busy = step(C_SHARED, tracking, "tdh_mem_track_busy()")
    assert busy is not None and labels(SHARED_SPLIT, busy, "sept_zap.step", "kvm_tdx->wait_for_sept_zap") == (
        "UNBLOCK", "false")


# -- TDH.MEM.PAGE.DEMOTE ------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "age", "ok", "child"), [
    ("BLOCKED", "OLDER", True, "MAPPED"),
    ("PENDING_BLOCKED", "OLDER", True, "PENDING"),
    ("BLOCKED", "CURRENT", False, None),  # TDX_TLB_TRACKING_NOT_DONE
    ("MAPPED", "OLDER", False, None),  # TDX_GPA_RANGE_NOT_BLOCKED
])
def test_demote_needs_a_blocked_tracked_2m_leaf(entry: str, age: str, ok: bool, child: str | None) -> None:
    st = machine("DEMOTE", "DEMOTE", **{"mirror_spte_2m[g0]": "NONLEAF", "sept_2m[g0]": entry,
                                        "sept_bepoch_2m[g0]": age})
    good = step(C, st, "tdh_mem_page_demote(region=0)")
    bad = step(C, st, "tdh_mem_page_demote_error(region=0)")
    assert (good is not None) is ok and (bad is not None) is (not ok)
    if ok:
        assert good is not None
        assert labels(MODEL, good, "sept_2m[g0]", "sept_4k[g0]", "sept_4k[g1]", "sept_zap.step") == (
            "NONLEAF", child, child, "DONE")
    else:
        assert bad is not None and labels(MODEL, bad, "kvm->vm_bugged", "sept_zap.step") == ("true", "FAILED")


# -- TDH.MEM.PAGE.PROMOTE -----------------------------------------------------------------

@pytest.mark.parametrize(("children", "age", "outcome"), [
    (("PENDING", "PENDING"), "OLDER", "promoted PENDING"),
    (("MAPPED", "MAPPED"), "OLDER", "promoted MAPPED"),
    (("PENDING", "MAPPED"), "OLDER", "invalid"),  # mixed accept states
    (("PENDING", "FREE"), "OLDER", "invalid"),  # a child missing
    (("PENDING", "PENDING"), "CURRENT", "error"),  # TDX_TLB_TRACKING_NOT_DONE
])
def test_promote_preconditions(children: tuple[str, str], age: str, outcome: str) -> None:
    st = machine("PROMOTE", "PROMOTE", **{**TABLE, "sept_2m[g0]": "NONLEAF_BLOCKED", "sept_bepoch_2m[g0]": age,
                                          "sept_4k[g0]": children[0], "sept_4k[g1]": children[1]})
    good = step(C, st, "tdh_mem_page_promote(region=0)")
    invalid = step(C, st, "tdh_mem_page_promote_invalid(region=0)")
    error = step(C, st, "tdh_mem_page_promote_error(region=0)")
    enabled = [name for name, s in (("promoted", good), ("invalid", invalid), ("error", error)) if s is not None]
    assert enabled == [outcome.split()[0]]
    if good is not None:
        assert labels(MODEL, good, "sept_2m[g0]", "mirror_spte_2m[g0]", "mirror_spte_4k[g0]", "sept_4k[g0]",
                      "sept_zap.step") == (outcome.split()[1], "LEAF", "NONPRESENT", "FREE", "DONE")
    if invalid is not None:  # expected by KVM: unblock and keep the table, no KVM_BUG_ON
        assert labels(MODEL, invalid, "sept_zap.step", "kvm->vm_bugged") == ("UNBLOCK", "false")
        back = step(C, invalid, "tdh_mem_range_unblock(region=0)")
        assert back is not None and labels(MODEL, back, "sept_2m[g0]", "sept_zap.step") == ("NONLEAF", "FAILED")
    if error is not None:
        assert labels(MODEL, error, "kvm->vm_bugged") == ("true",)


def test_a_2m_goal_over_a_partial_table_steps_down_and_a_full_one_merges() -> None:
    walk = {**TABLE, "fault.step[vcpu0]": "MAP", "fault.is_private[vcpu0]": True,
            "fault.goal_level[vcpu0]": "PG_LEVEL_2M"}
    partial = state(MODEL, {**walk, "mirror_spte_4k[g1]": "NONPRESENT", "sept_4k[g1]": "FREE"})
    down = step(C, partial, "disallowed_hugepage_adjust(vcpu=0, gfn=0)")
    assert down is not None and labels(MODEL, down, "fault.goal_level[vcpu0]") == ("PG_LEVEL_4K",)
    assert step(C, partial, "tdp_mmu_merge_private_spt(vcpu=0, gfn=0)") is None
    full = state(MODEL, walk)
    assert step(C, full, "disallowed_hugepage_adjust(vcpu=0, gfn=0)") is None
    merge = step(C, full, "tdp_mmu_merge_private_spt(vcpu=0, gfn=0)")
    assert merge is not None and labels(MODEL, merge, "fault.step[vcpu0]") == ("MERGE_WAIT",)
    locked = step(C, merge, "tdp_mmu_merge_private_spt_locked(vcpu=0, gfn=0)")
    assert locked is not None and labels(MODEL, locked, "sept_zap.step", "sept_zap.op") == ("BLOCK", "PROMOTE")
    # without the guard, the generic path writes a huge leaf over the table
    bug = step(C_NO_ADJUST, state(NO_ADJUST, {**walk, "mirror_spte_4k[g1]": "NONPRESENT", "sept_4k[g1]": "FREE"}),
               "disallowed_hugepage_adjust(vcpu=0, gfn=0)")
    assert bug is not None and labels(NO_ADJUST, bug, "kvm->vm_bugged") == ("true",)


# -- the split before a partial conversion ------------------------------------------------

def test_partial_conversion_splits_the_crossing_huge_leaf_before_zapping() -> None:
    opts = {**OPTIONS, "attributes": {"initial_attributes": "private", "max_conversions": 1,
                                      "conversions": [{"start": 1, "end": 2, "attributes": "shared"}]}}
    for guards_off, first in (((), ("DEMOTE", "NONLEAF", "LEAF")),
                              (("split-cross-boundary",), ("REMOVE_2M", "NONPRESENT", "NONPRESENT"))):
        m = build(["tdx_huge"], Sizes(2, 1, 2), opts, guards_off=guards_off, profile=PROFILE.get())
        c = compile_model(m)
        after = step(c, state(m, HUGE), "kvm_pre_set_memory_attributes(conversion=Conversion(start=1, end=2, "
                     "attributes='SHARED'))")
        assert after is not None
        assert labels(m, after, "sept_zap.op", "mirror_spte_2m[g0]", "mirror_spte_4k[g0]") == first


# -- invariants -----------------------------------------------------------------------

def holds(name: str, changes: dict[str, object]) -> bool:
    return check(MODEL, name, state(MODEL, changes))


def test_external_mirrors_mirror_at_both_levels() -> None:
    assert holds("external_mirrors_mirror", HUGE)
    assert holds("external_mirrors_mirror", TABLE)
    # a 4K mirror table over a 2M S-EPT leaf, and the reverse
    table_over_leaf = {**HUGE, "mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g0]": "LEAF"}
    assert not holds("external_mirrors_mirror", table_over_leaf)
    assert not holds("external_mirrors_mirror", {**TABLE, "mirror_spte_2m[g0]": "LEAF", "mirror_spte_4k[g0]":
                                                 "NONPRESENT", "mirror_spte_4k[g1]": "NONPRESENT"})
    # inside the window of a split it is by design
    window = {**table_over_leaf, "fault.step[vcpu0]": "SPLIT", "sept_zap.step": "TRACK", "sept_zap.op": "DEMOTE"}
    assert holds("external_mirrors_mirror", window)
    assert not holds("external_mirrors_mirror", {**table_over_leaf, "sept_2m[g0]": "PENDING_BLOCKED"})


def test_no_orphan_external_for_2m_leaves() -> None:
    assert holds("no_orphan_external", HUGE)
    assert not holds("no_orphan_external", {**HUGE, "mirror_spte_2m[g0]": "NONPRESENT"})
    assert not holds("no_orphan_external", {**HUGE, "mirror_spte_2m[g0]": "NONLEAF"})


def test_no_mixed_huge_page_covers_the_sept() -> None:
    shared = {"mem_attr_array[g1]": "SHARED", "hugepage_mixed[g0]": True}
    assert not holds("no_mixed_huge_page", {**shared, "sept_2m[g0]": "BLOCKED"})
    assert holds("no_mixed_huge_page", {**shared, "sept_2m[g0]": "NONLEAF"})


def test_no_lost_accepted_data_through_a_2m_leaf_and_a_blocked_table() -> None:
    accepted = {"td.accepted[g0]": True}
    assert holds("no_lost_accepted_data", {**accepted, "sept_2m[g0]": "MAPPED"})
    assert holds("no_lost_accepted_data", {**accepted, "sept_2m[g0]": "BLOCKED"})
    assert holds("no_lost_accepted_data", {**accepted, "sept_2m[g0]": "NONLEAF_BLOCKED", "sept_4k[g0]": "MAPPED"})
    assert not holds("no_lost_accepted_data", {**accepted, "sept_2m[g0]": "FREE"})
    assert not holds("no_lost_accepted_data", {**accepted, "sept_2m[g0]": "PENDING"})


def test_huge_page_witnesses() -> None:
    assert holds("huge_leaf_accepted_at_2m", {**HUGE, "sept_2m[g0]": "MAPPED", "td.accepted[g0]": True,
                                              "td.accepted[g1]": True})
    assert not holds("huge_leaf_accepted_at_2m", {**HUGE, "td.accepted[g0]": True, "td.accepted[g1]": True})
    demoting = machine("DEMOTE", "DEMOTE", **{"sept_2m[g0]": "BLOCKED", "sept_bepoch_2m[g0]": "OLDER"})
    assert check(MODEL, "demotion_for_4k_accept", demoting)
    assert not check(MODEL, "demotion_for_4k_accept", {**demoting, "sept_bepoch_2m[g0]": 0})
    assert check(MODEL, "promotion_succeeded", machine("DONE", "PROMOTE"))
    assert not check(MODEL, "promotion_succeeded", machine("FAILED", "PROMOTE"))


def test_no_huge_page_invariant_is_decided_by_the_domains_alone() -> None:
    # (with no conversion allowed, the attributes' witnesses are out of reach by design, and
    # a conversion's or a punch-hole's zap cannot be imprecise: the run warns so)
    bounds = [i.bind(MODEL) for i in applicable(CATALOGUE, MODEL) if "tdx" in i.requires or "tdx_huge" in i.requires]
    assert {"huge_leaf_accepted_at_2m", "demotion_for_4k_accept", "promotion_succeeded"} <= {b.name for b in bounds}
    assert vacuous(MODEL, bounds) == ["invariant zaps_exactly_its_range holds in every state of the domains: "
                                      "it cannot fail"]
    converting = build(["tdx_huge"], Sizes(2, 1, 2), CONVERT, profile=PROFILE.get())
    bounds = [i.bind(converting) for i in applicable(CATALOGUE, converting) if "tdx_huge" in i.requires]
    assert vacuous(converting, bounds) == []


NO_PROMOTION = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, profile=replace(
    PROFILE.get(), variants={**PROFILE.get().variants, "tdx_huge.promotion": "none"})))
C_NO_PROMOTION = Lazy(lambda: compile_model(NO_PROMOTION.get()))


def test_without_promotion_a_2m_goal_over_any_mirror_table_steps_down() -> None:
    """tdx_huge.promotion = none (RFC v5 31/45): a full 4K table is not merged either;
    disallowed_hugepage_adjust() steps down, and the merge's actions and witness are gone."""
    walk = {**TABLE, "fault.step[vcpu0]": "MAP", "fault.is_private[vcpu0]": True,
            "fault.goal_level[vcpu0]": "PG_LEVEL_2M"}
    down = step(C_NO_PROMOTION, state(NO_PROMOTION, walk), "disallowed_hugepage_adjust(vcpu=0, gfn=0)")
    assert down is not None and labels(NO_PROMOTION, down, "fault.goal_level[vcpu0]") == ("PG_LEVEL_4K",)
    keys = set(NO_PROMOTION.get().by_key)
    assert not any(k.startswith(("tdp_mmu_merge_private_spt", "merge_")) for k in keys)
    assert "tdp_mmu_merge_private_spt(vcpu=0, gfn=0)" in MODEL.get().by_key
    names = {i.name for i in applicable(CATALOGUE, NO_PROMOTION.get())}
    assert "promotion_succeeded" not in names and "demotion_for_4k_accept" in names


UNTIL_DONE = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), {**OPTIONS, "tdx_huge": {"accept_until_done": True}},
                                profile=PROFILE.get()))
C_UNTIL_DONE = Lazy(lambda: compile_model(UNTIL_DONE.get()))


def test_a_guest_that_accepts_until_done_re_executes_only_its_accept() -> None:
    """[tdx_huge] accept_until_done: the 4K ACCEPT that exited is the vCPU's next guest
    step, again and again, until TDX_SUCCESS or TDX_PAGE_ALREADY_ACCEPTED."""
    m, c = UNTIL_DONE, C_UNTIL_DONE
    exited = step(c, state(m, {"td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT", "hugepage_guest_inhibit[g0]": True}),
                  "tdx_handle_ept_violation_accept_4k(vcpu=0, gfn=1)")
    assert exited is not None and labels(m, exited, "td.accepting_4k[vcpu0]") == ("g1",)
    back = state(m, {"td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT", "td.accepting_4k[vcpu0]": "g1",
                     "hugepage_guest_inhibit[g0]": True})
    assert step(c, back, "tdx_handle_ept_violation_accept_4k(vcpu=0, gfn=0)") is None  # not another page
    assert step(c, back, "tdx_handle_ept_violation(vcpu=0, gfn=0, private=True, write=True)") is None
    assert step(c, back, "tdx_handle_ept_violation_accept_4k(vcpu=0, gfn=1)") is not None  # the same ACCEPT
    mapped = {**TABLE, "td.vcpu_mode[vcpu0]": "IN_GUEST_CURRENT", "td.accepting_4k[vcpu0]": "g1"}
    done = step(c, state(m, mapped), "tdg_mem_page_accept(vcpu=0, gfn=1)")
    assert done is not None and labels(m, done, "td.accepting_4k[vcpu0]", "td.accepted[g1]") == ("none", "true")
    already = state(m, {**mapped, "td.accepted[g1]": True, "sept_4k[g1]": "MAPPED"})
    assert step(c, already, "tdg_mem_page_accept(vcpu=0, gfn=1)") is None
    left = step(c, already, "tdg_mem_page_accept_already(vcpu=0, gfn=1)")
    assert left is not None and labels(m, left, "td.accepting_4k[vcpu0]") == ("none",)
    names = {i.name for i in applicable(CATALOGUE, m.get())}
    assert "accept_4k_completes" in names
    assert "accept_4k_completes" not in {i.name for i in applicable(CATALOGUE, MODEL.get())}
    assert "tdg_mem_page_accept_already(vcpu=0, gfn=1)" not in MODEL.get().by_key
    loop = next(i for i in CATALOGUE if i.name == "accept_4k_completes")
    with pytest.raises(ModelError, match="neither a variant nor an option"):
        replace(loop, when=("tdx_huge.accept_until=true",)).applies_to(MODEL.get())


SHARED_ROOT = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, guards_off=["accept-split-mirror-root"],
                                 profile=PROFILE.get()))


def test_the_accept_handler_is_told_which_root_to_split() -> None:
    """Guard accept-split-mirror-root: on, the handler demotes the mirror's huge leaf
    before GUEST_INHIBIT; off (RFC v5 41/45 as posted), it splits the shared root, which
    has nothing to split, and inhibits a region still mapped at 2M."""
    waiting = {**HUGE, "fault.step[vcpu0]": "ACCEPT_LEVEL", "fault.gfn[vcpu0]": 1, "fault.is_private[vcpu0]": True}
    m, c = SHARED_ROOT, Lazy(lambda: compile_model(SHARED_ROOT.get()))
    assert "tdx_check_accept_level_split(vcpu=0, gfn=1)" not in m.get().by_key
    wrong = step(c, state(m, waiting), "split_shared_root(vcpu=0, gfn=1)")
    assert wrong is not None
    assert labels(m, wrong, "mirror_spte_2m[g0]", "sept_2m[g0]", "hugepage_guest_inhibit[g0]") == (
        "LEAF", "PENDING", "true")
    assert not check(m, "guest_inhibit_after_split", wrong)
    assert check(m, "guest_inhibit_after_split", state(m, waiting))
    assert "split_shared_root(vcpu=0, gfn=1)" not in MODEL.get().by_key


# -- the conversion's arch hook (RFC v5 43-44/45) -------------------------------------------

V5 = Lazy(lambda: profile("tdx-hugepage-rfc-v5"))
CONVERT = {**OPTIONS, "attributes": {"initial_attributes": "private", "max_conversions": 1,
                                     "conversions": [{"start": 1, "end": 2, "attributes": "shared"}]}}
G1_SHARED = "conversion=Conversion(start=1, end=2, attributes='SHARED')"
G1_HOOK = "operation=Conversion(start=1, end=2, attributes='SHARED')"  # the hook's actions, per operation


def hooked(placement: str, guards_off: tuple[str, ...] = ()) -> tuple[Lazy, Lazy]:
    value = f"tdx_gmem_convert_{placement}_invalidate"
    m = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), CONVERT, guards_off=guards_off,
                           profile=V5.get().with_variants({"tdx_huge.conversion_split": value}, "test")))
    return m, Lazy(lambda: compile_model(m.get()))


BEFORE, C_BEFORE = hooked("before")
AFTER, C_AFTER = hooked("after")


def test_the_hook_after_the_invalidation_splits_then_the_conversion_zaps_only_its_range() -> None:
    """tdx_huge.conversion_split = tdx_gmem_convert_after_invalidate: the pre pass stops
    after kvm_mmu_invalidate_begin(); tdx_gmem_convert() drops mmu_lock to allocate, takes
    it again and splits; only then does kvm_unmap_gfn_range() remove g1 alone."""
    m, c = AFTER, C_AFTER
    begun = step(c, state(m, HUGE), f"kvm_pre_set_memory_attributes({G1_SHARED})")
    assert begun is not None
    assert labels(m, begun, "ioctl.step", "mmu_invalidate_in_progress", "mirror_spte_2m[g0]") == ("HOOK", "1", "LEAF")
    assert step(c, begun, f"kvm_unmap_gfn_range({G1_SHARED})") is None  # the hook first
    assert step(c, begun, f"tdx_gmem_convert({G1_HOOK})") is None  # a huge leaf to split
    alloc = step(c, begun, f"tdx_gmem_convert_split({G1_HOOK})")
    assert alloc is not None and labels(m, alloc, "ioctl.step") == ("HOOK_ALLOC",)
    # mmu_lock is free while it allocates: a fault may take it for read
    reader = step(c, {**alloc, "fault.step[vcpu1]": state(m, {"fault.step[vcpu1]": "PFN"})["fault.step[vcpu1]"],
                      "fault.is_private[vcpu1]": 1}, "read_lock(vcpu=1, gfn=0, private=True)")
    assert reader is not None
    split = step(c, alloc, f"tdp_mmu_alloc_sp_for_split({G1_HOOK})")
    assert split is not None
    assert labels(m, split, "ioctl.step", "mirror_spte_2m[g0]", "sept_zap.op", "sept_zap.step") == (
        "HOOK_SPLIT", "NONLEAF", "DEMOTE", "BLOCK")
    done = step(c, {**split, "sept_zap.step": label_value(m.get().field("sept_zap.step"), "DONE"),
                    "sept_2m[g0]": label_value(m.get().field("sept_2m[g0]"), "NONLEAF"),
                    "sept_4k[g0]": label_value(m.get().field("sept_4k[g0]"), "PENDING"),
                    "sept_4k[g1]": label_value(m.get().field("sept_4k[g1]"), "PENDING")},
                f"tdx_sept_split_huge_pages_done({G1_HOOK})")
    assert done is not None and labels(m, done, "ioctl.step", "sept_zap.step") == ("CONVERT", "IDLE")
    zap = step(c, done, f"kvm_unmap_gfn_range({G1_SHARED})")
    assert zap is not None
    assert labels(m, zap, "ioctl.step", "sept_zap.op", "sept_zap.gfn", "mirror_spte_4k[g0]") == (
        "CONVERT_ZAP", "REMOVE_4K", "g1", "LEAF")
    assert check(m, "zaps_exactly_its_range", zap)


def test_the_hook_fails_with_enomem_or_finds_the_leaf_gone() -> None:
    """-ENOMEM from the allocation fails the conversion (after the invalidation began,
    kvm_mmu_invalidate_end() first); a leaf zapped while mmu_lock was dropped leaves
    nothing to split."""
    for m, c, in_progress in ((AFTER, C_AFTER, "1"), (BEFORE, C_BEFORE, "0")):
        st = state(m, {**HUGE, "ioctl.step": "HOOK_ALLOC", "ioctl.start": 1, "ioctl.end": 2,
                       "mmu_invalidate_in_progress": int(in_progress),
                       "mmu_invalidate_range_start": 0, "mmu_invalidate_range_end": 2})
        failed = step(c, st, f"tdp_mmu_alloc_sp_for_split_enomem({G1_HOOK})")
        assert failed is not None
        assert labels(m, failed, "ioctl.step", "mmu_invalidate_in_progress", "mem_attr_array[g1]") == (
            "IDLE", "0", "PRIVATE")
        assert step(c, st, f"tdp_mmu_alloc_sp_for_split_gone({G1_HOOK})") is None
        gone = step(c, {**st, "mirror_spte_2m[g0]": 0}, f"tdp_mmu_alloc_sp_for_split_gone({G1_HOOK})")
        assert gone is not None and labels(m, gone, "ioctl.step") == ("CONVERT",)


def test_the_hook_before_the_invalidation_leaves_a_window() -> None:
    """tdx_gmem_convert_before_invalidate: with nothing mapped the hook returns 0 and the
    lock is free with no invalidation in progress, so a fault can map the region at 2M
    before the conversion's zap removes that leaf whole."""
    m, c = BEFORE, C_BEFORE
    nothing = step(c, state(m), f"tdx_gmem_convert({G1_HOOK})")
    assert nothing is not None
    assert labels(m, nothing, "ioctl.step", "mmu_invalidate_in_progress") == ("CONVERT", "0")
    assert step(c, state(m), f"kvm_pre_set_memory_attributes({G1_SHARED})") is None  # the hook first
    mapped = {**nothing, **{k: label_value(m.get().field(k), v) for k, v in {**HUGE, "sept_2m[g0]": "MAPPED"}.items()}}
    zap = step(c, mapped, f"kvm_pre_set_memory_attributes({G1_SHARED})")
    assert zap is not None and labels(m, zap, "sept_zap.op", "mirror_spte_2m[g0]") == ("REMOVE_2M", "NONPRESENT")
    assert not check(m, "zaps_exactly_its_range", zap)


def test_without_split_cross_boundary_the_hook_splits_nothing() -> None:
    m, c = hooked("after", ("split-cross-boundary",))
    at = state(m, {**HUGE, "ioctl.step": "HOOK", "ioctl.start": 1, "ioctl.end": 2,
                   "mmu_invalidate_in_progress": 1, "mmu_invalidate_range_start": 0, "mmu_invalidate_range_end": 2})
    assert step(c, at, f"tdx_gmem_convert_split({G1_HOOK})") is None
    returned = step(c, at, f"tdx_gmem_convert({G1_HOOK})")
    assert returned is not None and labels(m, returned, "ioctl.step") == ("CONVERT",)


PUNCH = {**OPTIONS, "tdx": {"max_punch_holes": 1, "punch_holes": [{"start": 1, "end": 2}], "max_memslot_updates": 0,
                             "nx_recovery": False}}
G1_HOLE = "hole=PunchHole(start=1, end=2)"


def punching(split: str, invalidated: str = "exact") -> tuple[Lazy, Lazy]:
    chosen = {"tdx_huge.punch_hole_split": split, "tdx_huge.punch_hole_range": invalidated}
    m = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), PUNCH, profile=V5.get().with_variants(chosen, "test")))
    return m, Lazy(lambda: compile_model(m.get()))


PUNCH_HOOK, C_PUNCH_HOOK = punching("tdx_gmem_convert")
PUNCH_WIDE, C_PUNCH_WIDE = punching("tdx_gmem_convert", "huge_pages")
PUNCH_NONE, C_PUNCH_NONE = punching("none")
PUNCH_V3, C_PUNCH_V3 = punching("kvm_split_cross_boundary_leafs")


def test_a_punch_hole_without_a_split_removes_the_huge_leaf_whole() -> None:
    """punch_hole_split = none (RFC v5 as posted): the punch-hole zaps in its
    kvm_gmem_invalidate_begin() and removes the 2M leaf across g1; RFC v3's split in the zap
    demotes it first."""
    none = step(C_PUNCH_NONE, state(PUNCH_NONE, HUGE), f"kvm_gmem_punch_hole({G1_HOLE})")
    assert none is not None
    assert labels(PUNCH_NONE, none, "ioctl.step", "sept_zap.op", "mirror_spte_2m[g0]") == (
        "PUNCH_ZAP", "REMOVE_2M", "NONPRESENT")
    assert not check(PUNCH_NONE, "zaps_exactly_its_range", none)
    v3 = step(C_PUNCH_V3, state(PUNCH_V3, HUGE), f"kvm_gmem_punch_hole({G1_HOLE})")
    assert v3 is not None and labels(PUNCH_V3, v3, "sept_zap.op", "mirror_spte_2m[g0]") == ("DEMOTE", "NONLEAF")
    assert check(PUNCH_V3, "zaps_exactly_its_range", v3)


def test_the_hook_in_a_punch_hole_splits_before_its_zap_and_may_fail() -> None:
    """punch_hole_split = tdx_gmem_convert: kvm_gmem_punch_hole() stops after
    kvm_gmem_invalidate_begin() (exactly the hole invalidated, nothing zapped); the hook
    splits the 2M leaf under its own write lock; its zap then removes g1 alone; -ENOMEM
    ends the invalidation and truncates nothing."""
    m, c = PUNCH_HOOK, C_PUNCH_HOOK
    begun = step(c, state(m, HUGE), f"kvm_gmem_punch_hole({G1_HOLE})")
    assert begun is not None
    assert labels(m, begun, "ioctl.step", "ioctl.op", "mmu_invalidate_range_start", "mmu_invalidate_range_end",
                  "mirror_spte_2m[g0]") == ("HOOK", "PUNCH_HOLE", "g1", "g2", "LEAF")
    hook = "operation=PunchHole(start=1, end=2)"
    assert step(c, begun, f"kvm_gmem_zap({G1_HOLE})") is None  # the hook first
    assert step(c, begun, f"tdx_gmem_convert({hook})") is None  # a huge leaf to split
    alloc = step(c, begun, f"tdx_gmem_convert_split({hook})")
    assert alloc is not None and labels(m, alloc, "ioctl.step") == ("HOOK_ALLOC",)
    split = step(c, alloc, f"tdp_mmu_alloc_sp_for_split({hook})")
    assert split is not None and labels(m, split, "mirror_spte_2m[g0]", "sept_zap.op") == ("NONLEAF", "DEMOTE")
    failed = step(c, alloc, f"tdp_mmu_alloc_sp_for_split_enomem({hook})")
    assert failed is not None
    assert labels(m, failed, "ioctl.step", "ioctl.op", "mmu_invalidate_in_progress", "gmem_page[g1]") == (
        "IDLE", "CONVERSION", "0", "ALLOCATED")
    # a conversion with the same range is not this operation: its hook steps do not fire
    assert step(c, {**begun, **{k: v for k, v in state(m, {"ioctl.op": "CONVERSION"}).items() if k == "ioctl.op"}},
                f"tdx_gmem_convert_split({hook})") is None
    tables = {k: label_value(m.get().field(k), v) for k, v in TABLE.items()}
    returned = step(c, {**begun, **tables}, f"tdx_gmem_convert({hook})")
    assert returned is not None and labels(m, returned, "ioctl.step") == ("CONVERT",)
    zap = step(c, returned, f"kvm_gmem_zap({G1_HOLE})")
    assert zap is not None
    assert labels(m, zap, "ioctl.step", "sept_zap.op", "sept_zap.gfn") == ("PUNCH_ZAP", "REMOVE_4K", "g1")
    assert check(m, "zaps_exactly_its_range", zap)


def test_a_widened_punch_hole_invalidates_the_huge_page_and_truncation_splits_the_folio() -> None:
    """punch_hole_range = huge_pages: the invalidation covers the whole region, the zap
    still only the hole. A truncation of part of a huge folio splits it (order 0 after);
    one of a whole region leaves the level alone."""
    begun = step(C_PUNCH_WIDE, state(PUNCH_WIDE), f"kvm_gmem_punch_hole({G1_HOLE})")
    assert begun is not None
    assert labels(PUNCH_WIDE, begun, "mmu_invalidate_range_start", "mmu_invalidate_range_end", "ioctl.start") == (
        "g0", "g2", "g1")
    m, c = PUNCH_NONE, C_PUNCH_NONE
    for start, level in ((1, "PG_LEVEL_4K"), (0, "PG_LEVEL_2M")):
        st = state(m, {"ioctl.step": "TRUNCATE", "ioctl.start": start, "ioctl.end": 2})
        truncated = step(c, st, "truncate_inode_pages_range()")
        assert truncated is not None
        assert labels(m, truncated, "gmem_max_level[g0]", "gmem_page[g1]", "gmem_page[g0]") == (
            level, "FREED", "FREED" if start == 0 else "ALLOCATED")


def test_the_accept_handler_prints_the_names_of_its_series() -> None:
    """tdx_huge.accept_handler names the same steps as each series does."""
    v5 = build(["tdx_huge"], Sizes(2, 1, 2), OPTIONS, profile=V5.get())
    texts = " ".join(a.text for a in v5.actions)
    assert "tdx_handle_mismatched_accept(g1, 4K): kvm_tdp_mmu_mirrors_split_huge_pages(2M@g0)" in texts
    assert "tdx_check_accept_level" not in texts
    assert "tdx_check_accept_level(g1, 4K): kvm_split_cross_boundary_leafs(2M@g0)" in " ".join(
        a.text for a in MODEL.get().actions)
    assert V5.get().where("tdx_check_accept_level") == "arch/x86/kvm/vmx/tdx.c:tdx_handle_mismatched_accept"


def test_a_witness_may_need_any_of_several_variant_values() -> None:
    names = {i.name for i in applicable(CATALOGUE, AFTER.get())}
    assert "conversion_hook_splits" in names and "promotion_succeeded" not in names
    assert "conversion_hook_splits" in {i.name for i in applicable(CATALOGUE, BEFORE.get())}
    assert "conversion_hook_splits" not in {i.name for i in applicable(CATALOGUE, MODEL.get())}
    hook = next(i for i in CATALOGUE if i.name == "conversion_hook_splits")
    with pytest.raises(ModelError, match="has no value"):
        replace(hook, when=("tdx_huge.conversion_split=tdx_gmem_convert|kvm_split_cross_boundary_leafs",)
                ).applies_to(MODEL.get())
    # "c1 or c2": either condition; the punch-hole's hook alone is enough
    covers = next(i for i in CATALOGUE if i.name == "invalidation_covers_zap")
    v3_punch_hook = build(["tdx_huge"], Sizes(2, 1, 2), PUNCH, profile=PROFILE.get().with_variants(
        {"tdx_huge.punch_hole_split": "tdx_gmem_convert"}, "test"))
    assert covers.applies_to(v3_punch_hook) and not covers.applies_to(MODEL.get())
    assert replace(covers, when=("tdx_huge.promotion=none or tdx_huge.punch_hole_split=none",)).applies_to(
        MODEL.get()) is False
    with pytest.raises(ModelError, match="has no value"):  # every alternative is spelt right
        replace(covers, when=("tdx_huge.promotion=tdp_mmu_merge_private_spt or tdx_huge.punch_hole_split=x",)
                ).applies_to(MODEL.get())


QUEUED = Lazy(lambda: build(["tdx_huge"], Sizes(2, 1, 2), {**OPTIONS, "attributes": {
    **OPTIONS["attributes"], "queued_rwlock": True}}, profile=PROFILE.get()))


def test_a_queued_rwlock_makes_readers_wait_behind_a_waiting_writer() -> None:
    """[attributes] queued_rwlock: a vCPU waiting for the write lock (its 4K ACCEPT's
    split) keeps new readers out, as the kernel's qrwlock does; unqueued, they overtake."""
    waiting = {"fault.step[vcpu0]": "ACCEPT_LEVEL", "fault.gfn[vcpu0]": 1, "fault.is_private[vcpu0]": True,
               "fault.step[vcpu1]": "PFN", "fault.is_private[vcpu1]": True}
    for m, blocked in ((QUEUED, True), (MODEL, False)):
        c = Lazy(lambda m=m: compile_model(m.get()))
        took = step(c, state(m, waiting), "read_lock(vcpu=1, gfn=0, private=True)")
        assert (took is None) is blocked


def test_guest_inhibit_is_never_cleared() -> None:
    """GUEST_INHIBIT is monotonic (RFC v5 40/45: never cleared, "as KVM doesn't currently
    support hugepage promotion"; the 4K ACCEPT handler's lockless precheck relies on it):
    z3 finds no action, under either series' design, that takes a set flag back."""
    for m in (MODEL.get(), AFTER.get(), BEFORE.get()):
        writers = [a for a in m.actions for f, _ in a.effect if f.name.startswith("hugepage_guest_inhibit")]
        assert writers, "no action sets GUEST_INHIBIT"
        for a in writers:
            for f, value in a.effect:
                if not f.name.startswith("hugepage_guest_inhibit"):
                    continue
                s = z3.Solver()
                s.add(a.guard, f.var, z3.Not(value), *[x.domain.constraint(x.var) for x in m.schema.fields])
                assert s.check() == z3.unsat, f"{a.key} clears {f.name}"
