"""Invariants of the attributes/huge-page component (CATALOGUE.md: A-Inv1, A-Inv2, A-Inv4)."""

from __future__ import annotations

import z3

from model.lang import Model
from model.mmu import AttributesComponent
from model.mmu.kvm import Kvm
from model.mmu.tdx.component import TdxComponent
from model.mmu.values import ATTRIBUTES

from .core import Invariant, Kind


def _part(m: Model) -> Kvm:
    part = m.parts["attributes"]
    assert isinstance(part, AttributesComponent)
    return part.kvm


def _no_mixed_huge_page(m: Model) -> z3.BoolRef:
    a = _part(m)
    tdx = m.parts.get("tdx")
    sept = tdx.sept if isinstance(tdx, TdxComponent) and tdx.sept.huge else None
    clauses = []
    for r in range(a.sizes.huge_pages):
        private = a.attrs.region_has(r, ATTRIBUTES.PRIVATE)
        clauses.append(z3.Implies(a.mirror.huge_leaf(r), private))
        clauses.append(z3.Implies(a.direct.huge_leaf(r), a.attrs.region_has(r, ATTRIBUTES.SHARED)))
        if sept is not None:  # the TDX module's own 2M leaf, whatever the mirror says
            clauses.append(z3.Implies(sept.huge_leaf_exists(r), private))
    return z3.And(*clauses)


def _quiescent(a: Kvm) -> z3.BoolRef:
    return a.inval.in_progress.var == 0


def _mapping_matches_attribute(m: Model) -> z3.BoolRef:
    a = _part(m)
    clauses = []
    for g in range(a.sizes.gfns):
        clauses.append(z3.Implies(a.mirror.maps(g), a.attrs.attr[g].var == ATTRIBUTES.PRIVATE))
        clauses.append(z3.Implies(a.direct.maps(g), a.attrs.attr[g].var == ATTRIBUTES.SHARED))
    return z3.Implies(_quiescent(a), z3.And(*clauses))


def _no_host_reference_to_private(m: Model) -> z3.BoolRef:
    part = m.parts["attributes"]
    assert isinstance(part, AttributesComponent)
    io, attrs = part.ioctl, part.kvm.attrs
    if io.pinned is None:
        return z3.BoolVal(True)
    return z3.And(*[z3.Not(z3.And(io.pinned[g].var, attrs.attr[g].var == ATTRIBUTES.PRIVATE))
                    for g in range(part.sizes.gfns)])


def _mixed_flag_exact(m: Model) -> z3.BoolRef:
    a = _part(m)
    exact = [a.attrs.mixed[r].var == z3.Not(a.attrs.region_uniform(r)) for r in range(a.sizes.huge_pages)]
    return z3.Implies(_quiescent(a), z3.And(*exact))


def _fault_between_pre_and_post(m: Model) -> z3.BoolRef:
    a = _part(m)
    return z3.And(a.inval.in_progress.var > 0, a.lock.read_held())


def _huge_leaf_installed(m: Model) -> z3.BoolRef:
    a = _part(m)
    return z3.Or(*[root.huge_leaf(r) for root in a.roots() for r in range(a.sizes.huge_pages)])


INVARIANTS = (
    Invariant(
        "no_mixed_huge_page", Kind.ALWAYS,
        "A-Inv1: a huge leaf maps only GFNs whose attributes are all equal and match its "
        "root (mirror: PRIVATE, direct: SHARED); with TDX huge pages, a 2M S-EPT leaf too",
        "KVM_LPAGE_MIXED_FLAG; kvm_arch_pre_set_memory_attributes(), commit 9129633d568e",
        ("attributes",), _no_mixed_huge_page,
    ),
    Invariant(
        "mapping_matches_attribute", Kind.ALWAYS,
        "A-Inv2: with no invalidation in progress, every mirror leaf maps a PRIVATE GFN and "
        "every direct leaf a SHARED one",
        "mmu_invalidate_retry_gfn() / is_page_fault_stale(); commit 8dd2eee9d526",
        ("attributes",), _mapping_matches_attribute,
    ),
    Invariant(
        "mixed_flag_exact", Kind.ALWAYS,
        "A-Inv4: with no invalidation in progress, KVM_LPAGE_MIXED_FLAG is set exactly for "
        "huge pages whose GFNs' attributes differ",
        "kvm_arch_post_set_memory_attributes(), hugepage_has_attrs() in arch/x86/kvm/mmu/mmu.c",
        ("attributes",), _mixed_flag_exact,
        # the per-VM conversion's bookkeeping: the in-place one has none (order-0 folios)
        when=("attributes.conversion=kvm_vm_set_mem_attributes",),
    ),
    Invariant(
        "no_host_reference_to_private", Kind.ALWAYS,
        "A-Inv9: with in-place conversion, no page the guest_memfd holds as private has a "
        "reference from userspace (a pin taken while it was shared): the host could reach "
        "private memory through it",
        "kvm_gmem_has_outstanding_references() in __kvm_gmem_set_attributes(), virt/kvm/guest_memfd.c; "
        "dcde2f853ff4 (KVM: guest_memfd: Ensure pages are not in use before conversion)",
        ("attributes",), _no_host_reference_to_private,
        when=("attributes.conversion=kvm_gmem_set_attributes", "attributes.host_pins=1|2"),
    ),
    Invariant(
        "invalidations_overlap", Kind.SOMETIMES,
        "two invalidations are in progress at once (the ioctl thread's and the mmu_notifier's or "
        "the fallocate() thread's): "
        "mmu_invalidate_in_progress is 2 and the range is their union",
        "kvm_mmu_invalidate_begin(), kvm_mmu_invalidate_range_add() in virt/kvm/kvm_main.c",
        ("attributes",), lambda m: _part(m).inval.in_progress.var >= 2,
        when=("attributes.mmu_notifiers=1|2 or tdx.punch_hole_thread=true",),
    ),
    Invariant(
        "fault_between_pre_and_post", Kind.SOMETIMES,
        "a vCPU holds mmu_lock for read while KVM_SET_MEMORY_ATTRIBUTES is between its pre "
        "pass and its post pass",
        "kvm_vm_set_mem_attributes(): xa_store() runs without mmu_lock",
        ("attributes",), _fault_between_pre_and_post,
    ),
    Invariant(
        "huge_leaf_installed", Kind.SOMETIMES,
        "some root maps a huge region with a 2M leaf",
        "kvm_mmu_hugepage_adjust(), tdp_mmu_map_handle_target_level()",
        ("attributes",), _huge_leaf_installed,
    ),
)
