"""Witnesses of TDX huge pages: the races of Yan Zhao's series must actually be reached."""

from __future__ import annotations

import z3

from model.lang import Model
from model.mmu.tdx.hugepage import WAITS_FOR_WRITE_LOCK, TdxHugeComponent
from model.mmu.tdx.teardown import SEPT_OP
from model.mmu.values import SEPT_2M, SPTE_2M

from .core import Invariant, Kind, progress

# the designs where a conversion's or a punch-hole's split is RFC v5's arch hook, wherever it runs
WITH_HOOK = ("tdx_huge.conversion_split=tdx_gmem_convert_before_invalidate|tdx_gmem_convert_after_invalidate"
             " or tdx_huge.punch_hole_split=tdx_gmem_convert")


def _huge(m: Model) -> TdxHugeComponent:
    part = m.parts["tdx_huge"]
    assert isinstance(part, TdxHugeComponent)
    return part


def _huge_leaf_accepted(m: Model) -> z3.BoolRef:
    h = _huge(m).mirror
    return z3.Or(*[
        z3.And(h.mirror.spte_2m[r].var == SPTE_2M.LEAF, h.sept.sept_2m[r].var == SEPT_2M.MAPPED,
               *[h.td.accepted[g].var for g in h.sizes.region_gfns(r)])
        for r in range(h.sizes.huge_pages)
    ])


def _accept_4k_waiting(m: Model) -> list[tuple[str, z3.BoolRef]]:
    """A vCPU re-executes a 4K ACCEPT of a private GFN (one converted to shared can never
    be accepted: the guest gets an error, not a hang), and, unless mmu_lock is the queued
    rwlock (`queued_rwlock`), is not queued for the write lock (the unqueued model lets
    readers overtake a waiting writer; the kernel's qrwlock does not)."""
    h = _huge(m).mirror
    f = h.fault
    assert h.accepting_4k is not None
    out = []
    for v in range(h.sizes.vcpus):
        again = z3.Or(*[z3.And(h.accepting_4k[v].var == g + 1, h.attrs.is_private(g)) for g in range(h.sizes.gfns)])
        queued = z3.Or(*[f.step[v].var == f.steps.code(s) for s in WAITS_FOR_WRITE_LOCK])
        out.append((f"vCPU{v}", again if h.lock.queued else z3.And(again, z3.Not(queued))))
    return out


def _inhibit_after_split(m: Model) -> z3.BoolRef:
    """GUEST_INHIBIT on a region means no huge leaf maps it, in the mirror or the S-EPT."""
    h = _huge(m).mirror
    leaf_2m = ("PENDING", "MAPPED", "BLOCKED", "PENDING_BLOCKED")
    return z3.And(*[
        z3.Implies(h.inhibit[r].var, z3.And(h.mirror.spte_2m[r].var != SPTE_2M.LEAF,
                                            *[h.sept.sept_2m[r].var != SEPT_2M.code(x) for x in leaf_2m]))
        for r in range(h.sizes.huge_pages)
    ])


def _zaps_exactly(m: Model) -> z3.BoolRef:
    """No conversion or punch-hole tear-down is removing a 2M leaf that sticks out of its range."""
    h = _huge(m).mirror
    z, io, p = h.z, h.tdx.ioctl, h.sizes.pages_per_huge
    assert z.op is not None
    overzap = z3.Or(*[
        z3.And(z.gfn.var == base, z3.Or(io.start.var > base, io.end.var < base + p))
        for base in h.sizes.region_bases()
    ])
    return z3.Not(z3.And(io.at("CONVERT_ZAP", "PUNCH_ZAP"), z.step.var != z.steps.IDLE,
                         z.op.var == SEPT_OP.REMOVE_2M, overzap))


def _invalidation_covers_zap(m: Model) -> z3.BoolRef:
    """A conversion or a punch-hole between its hook and its zap, mmu_lock released: every
    GFN whose private leaf it will split or remove is inside the invalidation in progress."""
    h = _huge(m).mirror
    io, inval, p = h.tdx.ioctl, h.tdx.kvm.inval, h.sizes.pages_per_huge
    clauses = []
    for r, base in enumerate(h.sizes.region_bases()):
        top = base + p
        touched = z3.And(io.start.var < top, io.end.var > base)
        covered = z3.And(*[inval.gfn_in_range(z3.IntVal(g)) for g in range(base, top)])
        clauses.append(z3.Implies(z3.And(touched, h.mirror.huge_leaf(r)), covered))
        for g in range(base, top):
            inside = z3.And(io.start.var <= g, io.end.var > g)
            clauses.append(z3.Implies(z3.And(inside, h.mirror.maps(g)), inval.gfn_in_range(z3.IntVal(g))))
    return z3.Implies(io.at("HOOK", "HOOK_ALLOC", "CONVERT"), z3.And(*clauses))


def _demotion_for_4k_accept(m: Model) -> z3.BoolRef:
    h = _huge(m).mirror
    z = h.z
    assert z.op is not None
    return z3.Or(*[
        z3.And(h._in(v, "SPLIT"), z.step.var == z.steps.DEMOTE, z.op.var == SEPT_OP.DEMOTE,
               h.sept.sept_2m[r].var == SEPT_2M.BLOCKED, h.sept.tracked_2m(r),
               z.gfn.var == h.sizes.region_bases()[r])
        for v in range(h.sizes.vcpus) for r in range(h.sizes.huge_pages)
    ])


def _conversion_split(m: Model) -> z3.BoolRef:
    """The conversion's arch hook is about to DEMOTE a huge leaf at its head or tail."""
    h = _huge(m).mirror
    z = h.z
    assert z.op is not None
    return z3.And(h.tdx.ioctl.at("HOOK_SPLIT"), z.step.var == z.steps.DEMOTE, z.op.var == SEPT_OP.DEMOTE)


def _promotion_succeeded(m: Model) -> z3.BoolRef:
    h = _huge(m).mirror
    z = h.z
    return z3.Or(*[z3.And(h._in(v, "MERGE"), z.step.var == z.steps.DONE) for v in range(h.sizes.vcpus)])


INVARIANTS = (
    Invariant(
        "zaps_exactly_its_range", Kind.ALWAYS,
        "a private->shared conversion or a punch-hole of [start, end) removes no S-EPT leaf "
        "outside it: a 2M leaf is removed whole only if the range covers it, one that crosses "
        "the boundary is split first",
        "Sean Christopherson, RFC v5 44/45 <aXt_L6QKB9CSTZcW@google.com>: \"KVM mustn't overzap "
        "private mappings for TDX guests, i.e. must zap _exactly_ [start, end)\"; "
        "kvm_split_cross_boundary_leafs() (RFC v2 16/23)",
        ("tdx_huge",), _zaps_exactly,
    ),
    Invariant(
        "invalidation_covers_zap", Kind.ALWAYS,
        "a private->shared conversion or a punch-hole whose arch hook has run or is allocating, "
        "and which has yet to zap, holds mmu_invalidate_in_progress over every GFN whose private "
        "leaf it will split or remove: no fault can map there in between",
        "kvm_mmu_invalidate_begin() / mmu_invalidate_retry_gfn() (virt/kvm/kvm_main.c, "
        "arch/x86/kvm/mmu/mmu.c); tdx_gmem_convert() (RFC v5 44/45)",
        ("tdx_huge",), _invalidation_covers_zap,
        when=(WITH_HOOK,),
    ),
    Invariant(
        "guest_inhibit_after_split", Kind.ALWAYS,
        "GUEST_INHIBIT is set on a region only once no huge leaf maps it: after the split it "
        "licenses, in the mirror root and the S-EPT (and it is never cleared)",
        "tdx_handle_mismatched_accept(), RFC v5 41/45: \"this relies on (a) setting the inhibit after "
        "performing the split, and (b) never clearing the flag\"; tdx_check_accept_level() (RFC v2/v3)",
        ("tdx_huge",), _inhibit_after_split,
    ),
    Invariant(
        "huge_leaf_accepted_at_2m", Kind.SOMETIMES,
        "the mirror and the S-EPT map a region with one 2M leaf that the guest has accepted "
        "(TDG.MEM.PAGE.ACCEPT at 2M, or a promotion of accepted pages)",
        "tdh_mem_page_aug() at 2M; tdx_gmem_private_max_mapping_level() (RFC v2 23/23)",
        ("tdx_huge",), _huge_leaf_accepted,
    ),
    Invariant(
        "demotion_for_4k_accept", Kind.SOMETIMES,
        "a vCPU whose guest accepted at 4K holds mmu_lock for write and is about to "
        "TDH.MEM.PAGE.DEMOTE the accepted 2M leaf (blocked and tracked)",
        "tdx_check_accept_level() -> kvm_split_cross_boundary_leafs() (RFC v2 14/23)",
        ("tdx_huge",), _demotion_for_4k_accept,
    ),
    Invariant(
        "conversion_hook_splits", Kind.SOMETIMES,
        "a private->shared conversion's arch hook holds mmu_lock for write and is about to "
        "TDH.MEM.PAGE.DEMOTE the huge leaf holding the head or the tail of its range",
        "tdx_gmem_convert() -> tdx_sept_split_huge_pages() (RFC v5 44/45, <aXt_L6QKB9CSTZcW@google.com>)",
        ("tdx_huge",), _conversion_split,
        when=(WITH_HOOK,),
    ),
    Invariant(
        "promotion_succeeded", Kind.SOMETIMES,
        "TDH.MEM.PAGE.PROMOTE merged a full 4K table into a 2M leaf for a faulting vCPU",
        "tdp_mmu_merge_private_spt() (Isaku Yamahata, v6 13/16)",
        ("tdx_huge",), _promotion_succeeded, when=("tdx_huge.promotion=tdp_mmu_merge_private_spt",),
    ),
    progress(
        "accept_4k_completes",
        "a TDG.MEM.PAGE.ACCEPT at 4K that exited with an EPT violation eventually succeeds (the guest "
        "re-executes it until it does, so a handler that never lets it through hangs the vCPU)",
        "tdx_check_accept_level() (RFC v2/v3), tdx_handle_mismatched_accept() (RFC v5 41/45); "
        "try_accept_one() in arch/x86/coco/tdx/tdx.c",
        ("tdx_huge",), _accept_4k_waiting, when=("tdx_huge.accept_until_done=true",),
    ),
)
