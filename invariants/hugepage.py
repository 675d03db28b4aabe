"""Witnesses of TDX huge pages: the races of Yan Zhao's series must actually be reached."""

from __future__ import annotations

import z3

from model.lang import Model
from model.mmu.tdx.hugepage import TdxHugeComponent
from model.mmu.tdx.teardown import SEPT_OP
from model.mmu.values import SEPT_2M, SPTE_2M

from .core import Invariant, Kind


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


def _promotion_succeeded(m: Model) -> z3.BoolRef:
    h = _huge(m).mirror
    z = h.z
    return z3.Or(*[z3.And(h._in(v, "MERGE"), z.step.var == z.steps.DONE) for v in range(h.sizes.vcpus)])


INVARIANTS = (
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
        "promotion_succeeded", Kind.SOMETIMES,
        "TDH.MEM.PAGE.PROMOTE merged a full 4K table into a 2M leaf for a faulting vCPU",
        "tdp_mmu_merge_private_spt() (Isaku Yamahata, v6 13/16)",
        ("tdx_huge",), _promotion_succeeded, when=("tdx_huge.promotion=tdp_mmu_merge_private_spt",),
    ),
)
