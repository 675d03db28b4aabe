"""Invariants of the TDX mirror and external S-EPT (CATALOGUE.md: M-Inv1..M-Inv7, pins)."""

from __future__ import annotations

from collections.abc import Callable

import z3

from model.lang import Model
from model.mmu.guest import GuestComponent, Td
from model.mmu.set_memory_attributes import IOCTL_STEP, ZAP_YIELD
from model.mmu.tdx.component import TdxComponent
from model.mmu.tdx.hugepage import WAITS_FOR_WRITE_LOCK
from model.mmu.tdx.teardown import SEPT_OP, ZAP_STEP
from model.mmu.values import PAGE, SEPT_2M, SEPT_4K, SPTE_2M, SPTE_4K

from .core import Invariant, Kind, progress


def _tdx(m: Model) -> TdxComponent:
    part = m.parts["tdx"]
    assert isinstance(part, TdxComponent)
    return part


def _td(m: Model) -> Td | None:
    part = m.parts.get("guest")
    return part.td if isinstance(part, GuestComponent) else None


def _owners_top(t: TdxComponent, region: int) -> list[z3.BoolRef]:
    return [t.mirror_fault.owns_top(v, region) for v in range(t.sizes.vcpus)]


def _owners_leaf(t: TdxComponent, gfn: int) -> list[z3.BoolRef]:
    return [t.mirror_fault.owns_leaf(v, gfn) for v in range(t.sizes.vcpus)]


def _in_window(t: TdxComponent, region: int) -> z3.BoolRef:
    """A 2M DEMOTE or PROMOTE of the region is between its first write and its SEAMCALL's
    result: the mirror and the S-EPT differ in level there by design."""
    z = t.teardown
    if z.op is None:
        return z3.BoolVal(False)
    busy = [z.step.var == z.steps.code(s) for s in ("BLOCK", "TRACK", "KICK", "DEMOTE", "PROMOTE", "UNBLOCK")]
    return z3.And(z3.Or(*busy), z3.Or(z.op.var == SEPT_OP.DEMOTE, z.op.var == SEPT_OP.PROMOTE),
                  z.gfn.var == t.sizes.region_bases()[region])


def _unless_owned(t: TdxComponent, table: Callable[[int], z3.BoolRef], leaf: Callable[[int], z3.BoolRef]
                  ) -> z3.BoolRef:
    """`table(r)` for every region and `leaf(g)` for every GFN, except for an SPTE some vCPU
    is setting (inside set_external_spte_present(), between its two writes; a 2M-level
    owner also owns the 4K entries below it) or a region in a DEMOTE/PROMOTE window."""
    clauses = []
    for r in range(t.sizes.huge_pages):
        exempt = [*_owners_top(t, r), _in_window(t, r)]
        clauses.append(z3.Or(*exempt, table(r)))
        clauses += [z3.Or(*exempt, *_owners_leaf(t, g), leaf(g)) for g in t.sizes.region_gfns(r)]
    return z3.And(*clauses)


def _mirror_leaf_4k(t: TdxComponent, g: int) -> z3.BoolRef:
    mirror = t.kvm.mirror
    return z3.And(mirror.top(g).var == SPTE_2M.NONLEAF, mirror.spte_4k[g].var == SPTE_4K.LEAF)


def _external_mirrors_mirror(m: Model) -> z3.BoolRef:
    t = _tdx(m)
    mirror, sept = t.kvm.mirror, t.sept

    def table(r: int) -> z3.BoolRef:
        top = mirror.spte_2m[r].var
        return z3.And(z3.Implies(top == SPTE_2M.NONLEAF, sept.sept_2m[r].var == SEPT_2M.NONLEAF),
                      z3.Implies(top == SPTE_2M.LEAF, sept.huge_leaf(r)))

    def leaf(g: int) -> z3.BoolRef:
        s = sept.sept_4k[g].var
        return z3.Implies(_mirror_leaf_4k(t, g), z3.And(sept.table_present(g), z3.Or(s == SEPT_4K.PENDING,
                                                                                      s == SEPT_4K.MAPPED)))

    return _unless_owned(t, table, leaf)


def _no_orphan_external(m: Model) -> z3.BoolRef:
    t = _tdx(m)
    mirror, sept = t.kvm.mirror, t.sept

    def table(r: int) -> z3.BoolRef:
        s, top = sept.sept_2m[r].var, mirror.spte_2m[r].var
        nonleaf = z3.Or(s == SEPT_2M.NONLEAF, s == SEPT_2M.NONLEAF_BLOCKED)
        return z3.And(z3.Implies(nonleaf, top == SPTE_2M.NONLEAF),
                      z3.Implies(sept.huge_leaf_exists(r), top == SPTE_2M.LEAF))

    def leaf(g: int) -> z3.BoolRef:
        return z3.Implies(sept.sept_4k[g].var != SEPT_4K.FREE, _mirror_leaf_4k(t, g))

    return z3.Implies(z3.Not(t.kvm.lock.write_held()), _unless_owned(t, table, leaf))


def _at_most_one(owners: list[z3.BoolRef]) -> list[z3.BoolRef]:
    return [z3.Not(z3.And(a, b)) for i, a in enumerate(owners) for b in owners[i + 1:]]


def _frozen_owned(m: Model) -> z3.BoolRef:
    t = _tdx(m)
    mirror = t.kvm.mirror
    clauses: list[z3.BoolRef] = []
    for r in range(t.sizes.huge_pages):
        owners = _owners_top(t, r)
        clauses += [z3.Implies(mirror.spte_2m[r].var == SPTE_2M.FROZEN, z3.Or(*owners)), *_at_most_one(owners)]
    for g in range(t.sizes.gfns):
        owners = _owners_leaf(t, g)
        clauses += [z3.Implies(mirror.spte_4k[g].var == SPTE_4K.FROZEN, z3.Or(*owners)), *_at_most_one(owners)]
    return z3.And(*clauses)


def _no_kvm_bug(m: Model) -> z3.BoolRef:
    return z3.Not(_tdx(m).sept.vm_bugged.var)


def _no_free_while_mapped(m: Model) -> z3.BoolRef:
    t, td = _tdx(m), _td(m)
    clauses = []
    for g in range(t.sizes.gfns):
        unmapped = [z3.Not(t.sept.leaf_exists(g))]
        if td is not None:
            unmapped += [z3.Not(tlb[g].var) for tlb in td.tlb]
        clauses.append(z3.Implies(t.gmem.page[g].var == PAGE.FREED, z3.And(*unmapped)))
    return z3.And(*clauses)


def _no_free_while_mapped_unless_bugged(m: Model) -> z3.BoolRef:
    return z3.Or(_tdx(m).sept.vm_bugged.var, _no_free_while_mapped(m))


def _no_lost_accepted_data(m: Model) -> z3.BoolRef:
    t, td = _tdx(m), _td(m)
    assert td is not None
    clauses = []
    for g in range(t.sizes.gfns):
        kept = t.sept.keeps_accepted(g)
        clauses.append(z3.Implies(td.accepted[g].var, kept))
    return z3.And(*clauses)


def _frozen_entry_contended(m: Model) -> z3.BoolRef:
    t = _tdx(m)
    f, mirror = t.fault, t.kvm.mirror
    witnesses = []
    for r in range(t.sizes.huge_pages):
        gfns = t.sizes.region_gfns(r)
        frozen = z3.Or(mirror.spte_2m[r].var == SPTE_2M.FROZEN,
                       *[mirror.spte_4k[g].var == SPTE_4K.FROZEN for g in gfns])
        faulting = [
            z3.And(z3.Not(f.idle(v)), f.is_private[v].var, z3.Or(*[f.gfn[v].var == g for g in gfns]))
            for v in range(t.sizes.vcpus)
        ]
        two = [z3.And(a, b) for i, a in enumerate(faulting) for b in faulting[i + 1:]]
        if two:
            witnesses.append(z3.And(frozen, z3.Or(*two)))
    return z3.Or(*witnesses) if witnesses else z3.BoolVal(False)


def _seamcall_busy(m: Model) -> z3.BoolRef:
    t = _tdx(m)
    f = t.fault
    restoring = [
        z3.Or(f.step[v].var == f.steps.RESTORE_TOP, f.step[v].var == f.steps.RESTORE_LEAF)
        for v in range(t.sizes.vcpus)
    ]
    return z3.And(z3.Not(t.sept.vm_bugged.var), z3.Or(t.sept.wait_for_sept_zap.var, *restoring))


def _stale_iter_old_spte(m: Model) -> z3.BoolRef:
    """A vCPU's walk read a mirror SPTE into iter->old_spte and it has changed since."""
    t = _tdx(m)
    f, mf = t.fault, t.mirror_fault
    stale = []
    for v in range(t.sizes.vcpus):
        for g in range(t.sizes.gfns):
            stale += [z3.And(f.on(v, "READ_TOP", g, True), mf.mirror.top(g).var != SPTE_2M.NONPRESENT),
                      z3.And(f.on(v, "READ_LEAF", g, True), z3.Not(mf.leaf_linked(g)))]
    return z3.Or(*stale)


def _accepted_page_removed_by_conversion(m: Model) -> z3.BoolRef:
    t, td = _tdx(m), _td(m)
    assert td is not None
    z = t.teardown
    return z3.Or(*[
        z3.And(
            t.ioctl.step.var == IOCTL_STEP.CONVERT_ZAP,
            z.step.var == ZAP_STEP.REMOVE, z.gfn.var == g,
            td.accepted[g].var, t.sept.sept_4k[g].var == SEPT_4K.BLOCKED, t.sept.tracked(g),
        )
        for g in range(t.sizes.gfns)
    ])


def _removal_under_write_lock(m: Model) -> z3.BoolRef:
    """The tear-down machine runs only under the write lock, and no vCPU has run
    tdx_sept_remove_leaf_spte() under the read lock (set_external_spte(old, new) only)."""
    t = _tdx(m)
    f = t.fault
    # at NEXT the machine is between two leaves: no S-EPT operation in flight (a zap may
    # yield mmu_lock there, option zap_yields)
    z = t.teardown
    in_flight = z3.And(z.step.var != z.steps.IDLE, z.step.var != z.steps.NEXT)
    clauses = [z3.Implies(in_flight, t.kvm.lock.write_held())]
    after = [s for s in ("REMOVED_PRESENT", "RESTORE_PRESENT") if s in f.steps.members]
    clauses += [f.step[v].var != f.steps.code(s) for v in range(t.sizes.vcpus) for s in after]
    return z3.And(*clauses)


def _one_propagation_per_entry(m: Model) -> z3.BoolRef:
    """At most one change of each mirror SPTE is being propagated to the S-EPT at a time:
    one vCPU inside a freeze of the 4K SPTE or of the 2M-level SPTE above it, or the
    tear-down working on the GFN (or on its region, for a 2M operation)."""
    t = _tdx(m)
    z = t.teardown
    working = z3.Or(*[z.step.var == z.steps.code(s) for s in ("BLOCK", "TRACK", "KICK", "REMOVE")])
    small = z.doing("REMOVE_4K")  # a 4K leaf at sept_zap.gfn, else a 2M entry at its first GFN
    clauses = []
    for r in range(t.sizes.huge_pages):
        base = t.sizes.region_bases()[r]
        for g in t.sizes.region_gfns(r):
            at = z3.Or(z3.And(z.gfn.var == g, small), z3.And(z.gfn.var == base, z3.Not(small)))
            clauses += _at_most_one([*_owners_leaf(t, g), *_owners_top(t, r), z3.And(working, at)])
    return z3.And(*clauses)


def _private_fault_waiting(m: Model) -> list[tuple[str, z3.BoolRef]]:
    """A vCPU is in a private fault, and not queued for the write lock: the model's rwlock
    lets new readers in ahead of a waiting writer, which the kernel's queued rwlock
    (qrwlock) does not, so a writer starved by readers is the model's, not the kernel's."""
    t = _tdx(m)
    f = t.fault
    queued = [s for s in WAITS_FOR_WRITE_LOCK if s in f.steps.members]
    return [(f"vCPU{v}", z3.And(z3.Not(f.idle(v)), f.is_private[v].var,
                                *[f.step[v].var != f.steps.code(s) for s in queued]))
            for v in range(t.sizes.vcpus)]


def _teardown_waiting(m: Model) -> list[tuple[str, z3.BoolRef]]:
    t = _tdx(m)
    z = t.teardown
    return [(th.actor, z3.And(th.zapping(), z.step.var != z.steps.IDLE)) for th in z.zappers()]


def _invalidation_covers_yielded_zap(m: Model) -> z3.BoolRef:
    """A conversion's or a punch-hole's zap that dropped mmu_lock between two SPTEs: every
    GFN of its range is inside the invalidation in progress."""
    t = _tdx(m)
    io, inval = t.ioctl, t.kvm.inval
    assert io.zap_yielded is not None
    dropped = z3.Or(io.zap_yielded.var == ZAP_YIELD.YIELDED, io.zap_yielded.var == ZAP_YIELD.QUEUED)
    covered = z3.And(*[z3.Implies(z3.And(io.start.var <= g, io.end.var > g), inval.gfn_in_range(z3.IntVal(g)))
                       for g in range(t.sizes.gfns)])
    return z3.Implies(z3.And(io.at("CONVERT_ZAP", "PUNCH_ZAP"), dropped), covered)


def _zap_yielded(m: Model) -> z3.BoolRef:
    """A zap of the ioctl thread dropped mmu_lock between SPTEs and a fault holds it for read."""
    t = _tdx(m)
    assert t.ioctl.zap_yielded is not None
    return z3.And(t.ioctl.zap_yielded.var == ZAP_YIELD.YIELDED, t.kvm.lock.read_held())


INVARIANTS = (
    Invariant(
        "invalidation_covers_yielded_zap", Kind.ALWAYS,
        "a conversion's or a punch-hole's zap that dropped mmu_lock between two SPTEs "
        "(tdp_mmu_iter_cond_resched()) holds mmu_invalidate_in_progress over every GFN of its "
        "range: the faults that run meanwhile retry there",
        "kvm_mmu_invalidate_begin() / mmu_invalidate_retry_gfn() (virt/kvm/kvm_main.c, "
        "arch/x86/kvm/mmu/mmu.c); tdp_mmu_iter_cond_resched() in tdp_mmu_zap_leafs()",
        ("tdx",), _invalidation_covers_yielded_zap, when=("tdx.zap_yields=true",),
    ),
    Invariant(
        "zap_yielded_to_a_fault", Kind.SOMETIMES,
        "the ioctl thread's zap dropped mmu_lock between two SPTEs (tdp_mmu_iter_cond_resched()) "
        "and a vCPU's fault holds it for read",
        "tdp_mmu_iter_cond_resched() in tdp_mmu_zap_leafs(), arch/x86/kvm/mmu/tdp_mmu.c",
        ("tdx",), _zap_yielded, when=("tdx.zap_yields=true",),
    ),
    Invariant(
        "external_mirrors_mirror", Kind.ALWAYS,
        "M-Inv1/2/5: every present mirror SPTE outside its owner's set_external_spte_present() "
        "window is mirrored in the S-EPT at the same level (a 4K leaf PENDING or MAPPED, a table)",
        "set_external_spte_present() in tdp_mmu.c; Documentation/virt/kvm/x86/tdx-tdp-mmu",
        ("tdx",), _external_mirrors_mirror,
    ),
    Invariant(
        "no_orphan_external", Kind.ALWAYS,
        "M-Inv3: with mmu_lock not held for write, every S-EPT leaf or table has its mirror "
        "SPTE (or a vCPU is between the SEAMCALL and its write)",
        "tdp_mmu_set_spte() -> remove_external_spte(); __tdp_mmu_set_spte_atomic()",
        ("tdx",), _no_orphan_external,
    ),
    Invariant(
        "frozen_owned", Kind.ALWAYS,
        "M-Inv4: a FROZEN mirror SPTE belongs to exactly one vCPU inside "
        "set_external_spte_present(), and no two vCPUs are ever inside it for one SPTE",
        "FROZEN_SPTE, set_external_spte_present() and kvm_tdp_mmu_map() in tdp_mmu.c",
        ("tdx",), _frozen_owned,
    ),
    Invariant(
        "no_kvm_bug", Kind.ALWAYS,
        "M-Inv7: no SEAMCALL fails in a way KVM does not handle (KVM_BUG_ON never fires)",
        "KVM_BUG_ON() in tdx_sept_*() and set_external_spte_present()",
        ("tdx",), _no_kvm_bug,
    ),
    Invariant(
        "no_free_while_mapped", Kind.ALWAYS,
        "a freed private page is in no S-EPT leaf and in no vCPU's TLB",
        "up to 6.18: get_page() in tdx_sept_set_private_spte(), tdx_unpin() after TDH.MEM.PAGE.REMOVE; "
        "since 6.19 (ce7b5695397b) only while the VM is not bugged: no_free_while_mapped_unless_bugged",
        ("tdx",), _no_free_while_mapped,
    ),
    Invariant(
        "no_free_while_mapped_unless_bugged", Kind.ALWAYS,
        "unless KVM_BUG_ON has fired, a freed private page is in no S-EPT leaf and in no vCPU's TLB "
        "(the rule since 6.19: a bugged VM may free a page a failed removal left in the S-EPT)",
        "ce7b5695397b KVM: TDX: Drop superfluous page pinning in S-EPT management",
        ("tdx",), _no_free_while_mapped_unless_bugged,
    ),
    Invariant(
        "no_lost_accepted_data", Kind.ALWAYS,
        "M-Inv6: a page the guest accepted stays mapped (MAPPED, or BLOCKED on its way out) "
        "until userspace converts it to shared or punches it out",
        "tdx_sept_remove_private_spte() callers: kvm_tdp_mmu_unmap_gfn_range(), tdp_mmu_zap_leafs()",
        ("guest",), _no_lost_accepted_data,
    ),
    Invariant(
        "one_propagation_per_entry", Kind.ALWAYS,
        "M-Inv10: each mirror SPTE has at most one change in flight to the S-EPT: one vCPU inside "
        "its freeze (or the freeze of the table above it), or the tear-down working on it",
        "tdp_mmu_set_spte_atomic() (FROZEN_SPTE) and tdp_mmu_zap_leafs() under the write lock, "
        "arch/x86/kvm/mmu/tdp_mmu.c; set_external_spte() per transition since 7.2",
        ("tdx",), _one_propagation_per_entry,
    ),
    Invariant(
        "sept_removal_under_write_lock", Kind.ALWAYS,
        "an S-EPT entry is blocked, tracked and removed (or demoted, promoted) only with mmu_lock "
        "held for write: the tear-down runs under the write lock, and no fault removes a leaf "
        "under the read lock",
        "lockdep_assert_held_write() in tdx_sept_remove_leaf_spte() and tdh_do_no_vcpus(); "
        "tdx_sept_set_private_spte(): \"(3) must be under write mmu_lock\" (arch/x86/kvm/vmx/tdx.c)",
        ("tdx",), _removal_under_write_lock,
    ),
    progress(
        "private_fault_completes",
        "a private fault a vCPU starts eventually returns (RET_PF_FIXED, _SPURIOUS or _RETRY): no "
        "vCPU stays in the fault path forever (queued for the write lock aside: the model's rwlock "
        "is not the kernel's fair qrwlock)",
        "kvm_tdp_mmu_map(), tdx_handle_ept_violation() (arch/x86/kvm/mmu/tdp_mmu.c, arch/x86/kvm/vmx/tdx.c)",
        ("tdx",), _private_fault_waiting,
    ),
    progress(
        "teardown_completes",
        "a tear-down of mirror leaves the ioctl thread starts eventually ends: its BUSY retries "
        "(kick, wait_for_sept_zap, one retry) terminate",
        "tdh_do_no_vcpus() / tdx_no_vcpus_enter_start() in arch/x86/kvm/vmx/tdx.c",
        ("tdx",), _teardown_waiting,
    ),
    Invariant(
        "frozen_entry_contended", Kind.SOMETIMES,
        "two vCPUs handle private faults in one huge region while a mirror SPTE there is FROZEN",
        "kvm_tdp_mmu_map(): is_frozen_spte() -> retry",
        ("tdx",), _frozen_entry_contended,
    ),
    Invariant(
        "seamcall_busy", Kind.SOMETIMES,
        "a SEAMCALL returned TDX_OPERAND_BUSY and KVM is handling it (fault retry, or "
        "tdx_no_vcpus_enter_start())",
        "tdx_operand_busy() in tdx.c",
        ("guest",), _seamcall_busy,
    ),
    Invariant(
        "stale_iter_old_spte", Kind.SOMETIMES,
        "a vCPU's walk holds a stale iter->old_spte: another vCPU froze, linked or installed the "
        "mirror SPTE after the walk read it, so the walk's try_cmpxchg64() will fail",
        "try_cmpxchg64(sptep, &iter->old_spte, ...) in tdp_mmu_set_spte_atomic() and tdp_mmu_link_sp(); "
        "02eaaffdd865",
        ("tdx",), _stale_iter_old_spte, when=("tdx.walk=iter-old-spte",),
    ),
    Invariant(
        "accepted_page_removed_by_conversion", Kind.SOMETIMES,
        "KVM_SET_MEMORY_ATTRIBUTES to shared has blocked and tracked a page the guest accepted, "
        "and TDH.MEM.PAGE.REMOVE of it is next",
        "kvm_arch_pre_set_memory_attributes() -> kvm_unmap_gfn_range() -> remove_external_spte()",
        ("guest",), _accepted_page_removed_by_conversion,
    ),
)
