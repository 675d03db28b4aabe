"""The vCPU page-fault path of the TDP MMU, split at the kernel's interleaving points.

Kernel (arch/x86/kvm/mmu/mmu.c, tdp_mmu.c, ~6.17): kvm_tdp_page_fault() ->
kvm_mmu_faultin_pfn() [snapshot fault->mmu_seq; smp_rmb(); private/shared check] ->
read_lock(&kvm->mmu_lock) -> is_page_fault_stale() -> kvm_tdp_mmu_map()
[kvm_mmu_hugepage_adjust(); walk: tdp_mmu_link_sp / tdp_mmu_split_huge_page;
tdp_mmu_map_handle_target_level()] -> read_unlock().

Each step below is one atomic step; other threads may run between any two. A fault picks
its root by the access: a private fault walks the mirror root, a shared fault the direct
root. Left out: fast_page_fault() (never used for private memory), the lockless
mmu_invalidate_retry_gfn_unsafe() pre-checks (an optimisation: the locked re-check is
what makes the path correct), memslot flags and dirty logging, NX huge pages, MMIO.
A failed cmpxchg makes the kernel return RET_PF_RETRY; the model merges each SPTE read
with its cmpxchg, so the retry is the same as the vCPU simply faulting again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import z3

from model.lang import BOOL, EnumDomain, Family, Field, IntDomain, ModelBuilder, Step, kernel

from .kvm import Kvm
from .tdp import Root
from .values import LEVEL, SPTE_2M, SPTE_4K

COMMON_STEPS = (
    "IDLE",  # not handling a fault
    "SEQ_SNAPSHOT",  # fault->mmu_seq taken; next: the private/shared check
    "PFN",  # pfn and fault->max_level known; next: read_lock(mmu_lock)
    "LOCKED",  # holds mmu_lock for read; next: is_page_fault_stale()
    "NOT_STALE",  # next: kvm_mmu_hugepage_adjust()
    "MAP",  # fault->goal_level chosen; walking the root and installing the leaf
)
HOLDS_READ_LOCK = ("LOCKED", "NOT_STALE", "MAP")
FAULT_STEP = EnumDomain("fault_step", COMMON_STEPS)


@dataclass
class FaultRefinement:
    """How other components refine the fault path, set before it is declared.

    The TDX component walks the mirror root itself (through set_external_spte_present,
    with steps of its own under the read lock) and caps private mappings at 4K; the guest
    component starts faults from the TD's EPT violations instead of letting a vCPU fault
    on any unmapped GFN at will.
    """

    locked_steps: tuple[str, ...] = ()  # extra steps, all under the read lock
    other_steps: tuple[str, ...] = ()  # extra steps whose lock their owner registers
    private_walk_elsewhere: bool = False
    entry_elsewhere: bool = False
    private_4k_only: bool = False  # the backend maps private memory at 4K whatever the folio
    # extra effect of kvm_gmem_get_pfn(vcpu, gfn) on a private fault (set at declare time)
    gmem_get_pfn: Callable[[int], dict[Field, object]] | None = None
    # fault->max_level of a private fault of vCPU v, if the backend caps it (v, region)
    private_max_level: Callable[[int, int], z3.ExprRef] | None = None
    # more reasons in lpage_info's disallow_lpage for a private huge mapping (region)
    private_disallowed: Callable[[int], z3.BoolRef] | None = None
    # when kvm_gmem_get_pfn() cannot run: another thread holds filemap_invalidate_lock for
    # write (in-place conversion, where every fault gets its pfn from guest_memfd)
    get_pfn_excluded: z3.BoolRef | None = None
    # in-place conversion: shared faults too get their pfn from guest_memfd, whose folios
    # are order 0, so no fault maps huge
    all_from_gmem: bool = False
    # kvm_gmem_get_pfn() fails with -EHWPOISON for the GFN's private page (memory failure)
    private_hwpoison: Callable[[int], z3.BoolRef] | None = None
    # per-vCPU locals of other components, reset to the value given when that vCPU's fault ends
    idle_locals: list[tuple[Family, object]] = field(default_factory=list)


def vcpu_actor(v: int) -> str:
    return f"vCPU{v}"


def kind(private: bool) -> str:
    return "private" if private else "shared"


class FaultPath:
    def __init__(self, b: ModelBuilder, kvm: Kvm, refine: FaultRefinement | None = None) -> None:
        self.sizes, self.attrs, self.inval, self.lock = kvm.sizes, kvm.attrs, kvm.inval, kvm.lock
        self.direct, self.mirror = kvm.direct, kvm.mirror
        self.refine = refine or FaultRefinement()
        sizes, inval, lock = kvm.sizes, kvm.inval, kvm.lock
        vcpus = sizes.vcpu_labels()
        if sizes.vcpus > 1:  # every vCPU runs the same code: `--symmetry` may reduce by them
            b.symmetric("vCPU", "vcpu", {v: (vcpus[v], vcpu_actor(v)) for v in range(sizes.vcpus)})
        gfn_names = {g: f"g{g}" for g in range(sizes.gfns)}
        self.steps = FAULT_STEP
        extra = self.refine.locked_steps + self.refine.other_steps
        if extra:
            self.steps = EnumDomain("fault_step", COMMON_STEPS + extra)
        self.step: Family = b.family("fault.step", vcpus, self.steps, "IDLE", "where the vCPU's fault is")
        self.gfn: Family = b.family(
            "fault.gfn", vcpus, IntDomain(0, sizes.gfns - 1, gfn_names), 0, "fault->gfn"
        )
        self.is_private: Family = b.family(
            "fault.is_private", vcpus, BOOL, False,
            "fault->is_private: the access is to private memory",
        )
        self.mmu_seq: Family = b.family(
            "fault.mmu_seq", vcpus, inval.seq_domain, 0, "fault->mmu_seq, the snapshot"
        )
        self.max_level: Family = b.family(
            "fault.max_level", vcpus, LEVEL, "PG_LEVEL_4K", "fault->max_level"
        )
        self.goal_level: Family = b.family(
            "fault.goal_level", vcpus, LEVEL, "PG_LEVEL_4K", "fault->goal_level"
        )
        self.seq_check = b.guard(
            "seq-check",
            "is_page_fault_stale() retries the fault when mmu_invalidate_seq differs from "
            "the fault->mmu_seq snapshot taken before the attributes were read",
            "mmu_invalidate_retry_gfn(); commit 8dd2eee9d526 (KVM: x86/mmu: Handle page "
            "fault for private memory)",
        )
        self.range_check = b.guard(
            "range-check",
            "is_page_fault_stale() retries the fault while an invalidation is in progress "
            "and fault->gfn lies in mmu_invalidate_range_start/end",
            "mmu_invalidate_retry_gfn() in include/linux/kvm_host.h",
        )
        for v in range(sizes.vcpus):
            lock.add_reader(self._at(v, *HOLDS_READ_LOCK, *self.refine.locked_steps))

    # -- helpers --------------------------------------------------------------------

    def _at(self, v: int, *steps: str) -> z3.BoolRef:
        return z3.Or(*[self.step[v].var == self.steps.code(s) for s in steps])

    def idle(self, v: int) -> z3.BoolRef:
        """vCPU v is not handling a fault."""
        return self.step[v].var == self.steps.IDLE

    def on(self, v: int, step: str, gfn: int, private: bool) -> z3.BoolRef:
        """vCPU v is at `step` of a fault on `gfn` of the given kind."""
        return z3.And(
            self.step[v].var == self.steps.code(step),
            self.gfn[v].var == gfn,
            self.is_private[v].var == private,
        )

    def _root(self, private: bool) -> Root:
        return self.mirror if private else self.direct

    def done(self, v: int) -> dict[Field, object]:
        """Back to IDLE with the fault's locals cleared (they are dead until the next fault)."""
        out: dict[Field, object] = {
            self.step[v]: self.steps.IDLE,
            self.gfn[v]: 0,
            self.is_private[v]: False,
            self.mmu_seq[v]: 0,
            self.max_level[v]: LEVEL.PG_LEVEL_4K,
            self.goal_level[v]: LEVEL.PG_LEVEL_4K,
        }
        for family, value in self.refine.idle_locals:
            out[family[v]] = value
        return out

    def begin(self, v: int, gfn: int, private: bool) -> dict[Field, object]:
        """The effect of a fault starting: kvm_mmu_faultin_pfn() snapshots fault->mmu_seq."""
        return {
            self.step[v]: self.steps.SEQ_SNAPSHOT,
            self.gfn[v]: gfn,
            self.is_private[v]: private,
            self.mmu_seq[v]: self.inval.seq.var,
        }

    def define(self, b: ModelBuilder) -> None:
        for v in range(self.sizes.vcpus):
            actor = vcpu_actor(v)
            for g in range(self.sizes.gfns):
                for private in (False, True):
                    params = {"vcpu": v, "gfn": g, "private": private}
                    if not self.refine.entry_elsewhere:
                        b.action(self.kvm_mmu_faultin_pfn, actor, **params)
                    b.action(self.kvm_mmu_prepare_memory_fault_exit, actor, **params)
                    b.action(self.faultin_pfn, actor, **params)
                    if private and self.refine.private_hwpoison is not None:
                        b.action(self.kvm_send_hwpoison_signal, actor, vcpu=v, gfn=g)
                    b.action(self.read_lock, actor, **params)
                    b.action(self.is_page_fault_stale, actor, **params)
                    b.action(self.page_fault_not_stale, actor, **params)
                    b.action(self.kvm_mmu_hugepage_adjust, actor, **params)
                    if private and self.refine.private_walk_elsewhere:
                        continue
                    b.action(self.tdp_mmu_link_sp, actor, **params)
                    b.action(self.tdp_mmu_split_huge_page, actor, **params)
                    b.action(self.map_target_level_2m, actor, **params)
                    b.action(self.map_target_level_4k, actor, **params)
                    b.action(self.map_spurious, actor, **params)

    # -- actions --------------------------------------------------------------------

    @kernel("kvm_mmu_faultin_pfn")
    def kvm_mmu_faultin_pfn(self, vcpu: int, gfn: int, private: bool) -> Step:
        """An EPT violation on gfn reaches kvm_mmu_faultin_pfn(), which snapshots
        fault->mmu_seq = kvm->mmu_invalidate_seq (then smp_rmb()).

        The vCPU faults only where the root its access uses has no leaf for the GFN, as
        hardware exits only then. The access kind (fault->is_private) comes from the
        guest; it is chosen freely.
        """
        guard = z3.And(self.idle(vcpu), z3.Not(self._root(private).maps(gfn)))
        return Step(f"kvm_mmu_faultin_pfn(g{gfn}, {kind(private)}): fault->mmu_seq", guard,
                    self.begin(vcpu, gfn, private))

    @kernel("kvm_mmu_prepare_memory_fault_exit")
    def kvm_mmu_prepare_memory_fault_exit(self, vcpu: int, gfn: int, private: bool) -> Step:
        """fault->is_private != kvm_mem_is_private(): kvm_mmu_faultin_pfn() calls
        kvm_mmu_prepare_memory_fault_exit() and the vCPU exits to userspace with
        KVM_EXIT_MEMORY_FAULT (-EFAULT). Userspace's reaction (a conversion) is the ioctl
        thread's business.
        """
        guard = z3.And(
            self.on(vcpu, "SEQ_SNAPSHOT", gfn, private),
            self.attrs.is_private(gfn) != private,
        )
        return Step(f"kvm_mmu_prepare_memory_fault_exit(g{gfn}): -EFAULT", guard, self.done(vcpu))

    @kernel("__kvm_mmu_faultin_pfn")
    def faultin_pfn(self, vcpu: int, gfn: int, private: bool) -> Step:
        """kvm_mem_is_private(gfn) agrees with the access, so __kvm_mmu_faultin_pfn()
        resolves the pfn: kvm_gmem_get_pfn() for private memory, whose folio order sets
        fault->max_level = kvm_max_level_for_order(); __kvm_faultin_pfn() for shared
        memory, whose host mapping level is applied later by kvm_mmu_max_mapping_level().
        With in-place conversion every fault gets its pfn from guest_memfd, whose
        kvm_gmem_get_pfn() takes filemap_invalidate_lock for read (it waits while a
        conversion or a punch-hole holds it for write) and whose folios are order 0:
        max_level is 4K, shared or private.
        """
        v = vcpu
        region = self.sizes.region_of(gfn)
        max_level: object = self.attrs.gmem_level[region].var if private else LEVEL.PG_LEVEL_2M
        if self.refine.all_from_gmem:  # guest_memfd's folios are order 0, shared ones included
            max_level = LEVEL.PG_LEVEL_4K
        elif private and self.refine.private_4k_only:
            max_level = LEVEL.PG_LEVEL_4K
        elif private and self.refine.private_max_level is not None:
            max_level = self.refine.private_max_level(v, region)
        guard = z3.And(
            self.on(v, "SEQ_SNAPSHOT", gfn, private),
            self.attrs.is_private(gfn) == private,
        )
        if self.refine.get_pfn_excluded is not None:
            guard = z3.And(guard, z3.Not(self.refine.get_pfn_excluded))
        if private and self.refine.private_hwpoison is not None:
            guard = z3.And(guard, z3.Not(self.refine.private_hwpoison(gfn)))
        effect: dict[Field, object] = {self.step[v]: self.steps.PFN, self.max_level[v]: max_level}
        if private and self.refine.gmem_get_pfn is not None:
            effect |= self.refine.gmem_get_pfn(gfn)
        return Step(f"__kvm_mmu_faultin_pfn(g{gfn}, {kind(private)})", guard, effect)

    @kernel("kvm_send_hwpoison_signal")
    def kvm_send_hwpoison_signal(self, vcpu: int, gfn: int) -> Step:
        """A private fault on a page memory_failure() poisoned: kvm_gmem_get_pfn() returns
        -EHWPOISON, kvm_handle_error_pfn() -> kvm_send_hwpoison_signal() and the vCPU
        returns to userspace with SIGBUS; nothing is mapped. Left out: what userspace does
        then (the model's vCPU may fault again)."""
        assert self.refine.private_hwpoison is not None
        guard = z3.And(self.on(vcpu, "SEQ_SNAPSHOT", gfn, True), self.attrs.is_private(gfn),
                       self.refine.private_hwpoison(gfn))
        return Step(f"kvm_gmem_get_pfn(g{gfn}): -EHWPOISON; kvm_send_hwpoison_signal()", guard, self.done(vcpu))

    @kernel("read_lock")
    def read_lock(self, vcpu: int, gfn: int, private: bool) -> Step:
        """read_lock(&kvm->mmu_lock) in kvm_tdp_page_fault(). Writers are single atomic
        steps in the model, so taking the read lock never waits."""
        guard = z3.And(self.on(vcpu, "PFN", gfn, private), self.lock.read_lockable())
        return Step("read_lock(&kvm->mmu_lock)", guard, {self.step[vcpu]: self.steps.LOCKED})

    def _stale(self, v: int, gfn: int) -> z3.BoolRef:
        reasons = []
        if self.range_check:
            reasons.append(self.inval.gfn_in_range(z3.IntVal(gfn)))
        if self.seq_check:
            reasons.append(self.inval.seq.var != self.mmu_seq[v].var)
        return z3.Or(*reasons) if reasons else z3.BoolVal(False)

    @kernel("is_page_fault_stale")
    def is_page_fault_stale(self, vcpu: int, gfn: int, private: bool) -> Step:
        """is_page_fault_stale() -> mmu_invalidate_retry_gfn(kvm, fault->mmu_seq, gfn) is
        true: the fault returns RET_PF_RETRY and drops the read lock; the vCPU re-enters
        the guest and faults again. It checks fault->gfn only, not the huge page around
        it. Guards `range-check` (in progress and gfn in range) and `seq-check` (seq
        changed). Left out: obsolete roots.
        """
        guard = z3.And(self.on(vcpu, "LOCKED", gfn, private), self._stale(vcpu, gfn))
        return Step("is_page_fault_stale() -> RET_PF_RETRY; read_unlock", guard, self.done(vcpu))

    @kernel("is_page_fault_stale")
    def page_fault_not_stale(self, vcpu: int, gfn: int, private: bool) -> Step:
        """is_page_fault_stale() is false: the fault goes on to kvm_tdp_mmu_map()."""
        guard = z3.And(self.on(vcpu, "LOCKED", gfn, private), z3.Not(self._stale(vcpu, gfn)))
        return Step("is_page_fault_stale() == false", guard, {self.step[vcpu]: self.steps.NOT_STALE})

    @kernel("kvm_mmu_hugepage_adjust")
    def kvm_mmu_hugepage_adjust(self, vcpu: int, gfn: int, private: bool) -> Step:
        """kvm_mmu_hugepage_adjust() at the top of kvm_tdp_mmu_map(), under the read lock:
        goal_level = 2M if fault->max_level allows it, lpage_info's disallow_lpage (here
        only KVM_LPAGE_MIXED_FLAG) is clear, and, for shared memory, the host maps the
        region huge (kvm_mmu_max_mapping_level()). It reads the mixed bit, not the
        attributes themselves.
        """
        v = vcpu
        region = self.sizes.region_of(gfn)
        huge = [
            self.max_level[v].var == LEVEL.PG_LEVEL_2M,
            z3.Not(self.attrs.mixed[region].var),
        ]
        if not private:
            huge.append(self.attrs.host_level[region].var == LEVEL.PG_LEVEL_2M)
        elif self.refine.private_disallowed is not None:
            huge.append(z3.Not(self.refine.private_disallowed(region)))
        goal = z3.If(z3.And(*huge), LEVEL.PG_LEVEL_2M, LEVEL.PG_LEVEL_4K)
        guard = self.on(v, "NOT_STALE", gfn, private)
        effect = {self.step[v]: self.steps.MAP, self.goal_level[v]: goal}
        return Step("kvm_mmu_hugepage_adjust()", guard, effect)

    def _walking(self, v: int, gfn: int, private: bool, level: str) -> z3.BoolRef:
        return z3.And(self.on(v, "MAP", gfn, private), self.goal_level[v].var == LEVEL.code(level))

    @kernel("tdp_mmu_link_sp")
    def tdp_mmu_link_sp(self, vcpu: int, gfn: int, private: bool) -> Step:
        """kvm_tdp_mmu_map() walking to a 4K goal finds the 2M-level SPTE non-present and
        links a new, empty 4K table with tdp_mmu_link_sp() (an atomic cmpxchg)."""
        root = self._root(private)
        top = root.top(gfn)
        guard = z3.And(self._walking(vcpu, gfn, private, "PG_LEVEL_4K"), top.var == SPTE_2M.NONPRESENT)
        region = root.sizes.region_labels()[root.sizes.region_of(gfn)]
        return Step(f"tdp_mmu_link_sp({root.name}, 2M@{region})", guard, {top: SPTE_2M.NONLEAF})

    @kernel("tdp_mmu_split_huge_page")
    def tdp_mmu_split_huge_page(self, vcpu: int, gfn: int, private: bool) -> Step:
        """kvm_tdp_mmu_map() walking to a 4K goal finds a huge leaf and splits it with
        tdp_mmu_split_huge_page(): a 4K table whose every entry maps part of the old leaf
        replaces it atomically. (Upstream KVM_BUG_ONs on this for a mirror root; with
        private memory at 4K only it cannot happen there.)"""
        root = self._root(private)
        top = root.top(gfn)
        region = root.sizes.region_of(gfn)
        guard = z3.And(self._walking(vcpu, gfn, private, "PG_LEVEL_4K"), top.var == SPTE_2M.LEAF)
        effect: dict[Field, object] = {top: SPTE_2M.NONLEAF}
        effect |= {root.spte_4k[g]: SPTE_4K.LEAF for g in root.sizes.region_gfns(region)}
        label = root.sizes.region_labels()[region]
        return Step(f"tdp_mmu_split_huge_page({root.name}, 2M@{label})", guard, effect)

    @kernel("tdp_mmu_map_handle_target_level")
    def map_target_level_2m(self, vcpu: int, gfn: int, private: bool) -> Step:
        """tdp_mmu_map_handle_target_level() at 2M: tdp_mmu_set_spte_atomic() installs
        a huge leaf over a non-present SPTE or over a non-leaf (whose 4K table
        handle_removed_pt() then frees); then read_unlock()."""
        root = self._root(private)
        top = root.top(gfn)
        region = root.sizes.region_of(gfn)
        guard = z3.And(
            self._walking(vcpu, gfn, private, "PG_LEVEL_2M"),
            top.var != SPTE_2M.LEAF,
        )
        effect: dict[Field, object] = {top: SPTE_2M.LEAF}
        effect |= {root.spte_4k[g]: SPTE_4K.NONPRESENT for g in root.sizes.region_gfns(region)}
        effect |= self.done(vcpu)
        label = root.sizes.region_labels()[region]
        return Step(f"tdp_mmu_map_handle_target_level({root.name}, 2M@{label}); read_unlock",
                    guard, effect)

    @kernel("tdp_mmu_map_handle_target_level")
    def map_target_level_4k(self, vcpu: int, gfn: int, private: bool) -> Step:
        """tdp_mmu_map_handle_target_level() at 4K: tdp_mmu_set_spte_atomic() installs
        the leaf in the 4K table; then read_unlock()."""
        root = self._root(private)
        top = root.top(gfn)
        guard = z3.And(
            self._walking(vcpu, gfn, private, "PG_LEVEL_4K"),
            top.var == SPTE_2M.NONLEAF,
            root.spte_4k[gfn].var == SPTE_4K.NONPRESENT,
        )
        effect: dict[Field, object] = {root.spte_4k[gfn]: SPTE_4K.LEAF, **self.done(vcpu)}
        return Step(f"tdp_mmu_map_handle_target_level({root.name}, g{gfn}, 4K); read_unlock",
                    guard, effect)

    @kernel("tdp_mmu_map_handle_target_level")
    def map_spurious(self, vcpu: int, gfn: int, private: bool) -> Step:
        """tdp_mmu_map_handle_target_level() finds a present leaf at the goal level that
        already allows the access: RET_PF_SPURIOUS, nothing is written; read_unlock()."""
        root = self._root(private)
        top = root.top(gfn).var
        guard = z3.Or(
            z3.And(self._walking(vcpu, gfn, private, "PG_LEVEL_2M"), top == SPTE_2M.LEAF),
            z3.And(
                self._walking(vcpu, gfn, private, "PG_LEVEL_4K"),
                top == SPTE_2M.NONLEAF,
                root.spte_4k[gfn].var == SPTE_4K.LEAF,
            ),
        )
        return Step("tdp_mmu_map_handle_target_level(): RET_PF_SPURIOUS; read_unlock",
                    guard, self.done(vcpu))
