"""The private fault path of a TD: kvm_tdp_mmu_map() on the mirror root, under the read lock.

Kernel (arch/x86/kvm/mmu/tdp_mmu.c, ~6.16): a present value written to a mirror SPTE goes
through __tdp_mmu_set_spte_atomic() -> set_external_spte_present(): try_cmpxchg64() of
the SPTE to FROZEN_SPTE, then the SEAMCALL (link_external_spt -> TDH.MEM.SEPT.ADD for a
table, set_external_spte -> TDH.MEM.PAGE.AUG for a leaf), then __kvm_tdp_mmu_write_spte()
of the new value on success or of the old one on failure. Every one of these is a step
of its own: other vCPUs walk the mirror in between, see FROZEN_SPTE and retry
(RET_PF_RETRY), and the guest runs on other vCPUs while the module works.

Private memory is mapped at 4K only (tdx_gmem_private_max_mapping_level()), so the walk
links the 4K table and installs a 4K leaf. Left out: tdx_handle_ept_violation()'s local
retry loop (a retried fault here returns to the guest, which faults again), the
pre-finalize premap path (TD build), fault->prefetch.

Variant `tdx.walk`: the walk copies each SPTE into iter->old_spte and every cmpxchg
compares against that copy. With `read-at-cmpxchg` the read and the cmpxchg are one step
(the copy is never stale); with `iter-old-spte` the read is a step of its own (READ_TOP,
READ_LEAF), so another vCPU can change the SPTE in between and the cmpxchg fails:
tdp_mmu_link_sp() / tdp_mmu_set_spte_atomic() return -EBUSY and the fault RET_PF_RETRY.
A decision the walk takes on the copy alone (frozen: retry; present: spurious) needs no
second step. Left out with `iter-old-spte`: a table zapped and linked again between the
read and the cmpxchg (the copy's table is gone, the model sees "a" table), and the
huge-page series' 2M walk, which still reads at its cmpxchg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import z3

from model.lang import BOOL, Family, Field, ModelBuilder, Step, Variant, VariantValue, kernel

from ..fault import FaultPath, vcpu_actor
from ..sizes import Sizes
from ..tdp import Root
from ..values import LEVEL, SEPT_2M, SEPT_4K, SPTE_2M, SPTE_4K
from .gmem import GuestMemfd
from .sept import MODULE, ExternalSept

# fault steps of the mirror walk, all under the read lock
STEPS = (
    "FROZEN_TOP",  # the 2M-level mirror SPTE is frozen by this vCPU; next TDH.MEM.SEPT.ADD
    "LINKED_TOP",  # TDH.MEM.SEPT.ADD succeeded; next: write the non-leaf
    "RESTORE_TOP",  # the SEAMCALL failed; next: write back the old value
    "FROZEN_LEAF",  # the 4K mirror SPTE is frozen by this vCPU; next TDH.MEM.PAGE.AUG
    "AUGED",  # TDH.MEM.PAGE.AUG succeeded; next: write the leaf
    "RESTORE_LEAF",  # the SEAMCALL failed; next: write back the old value
)
OWNS_TOP = ("FROZEN_TOP", "LINKED_TOP", "RESTORE_TOP")
OWNS_LEAF = ("FROZEN_LEAF", "AUGED", "RESTORE_LEAF")
# the walk's own reads, with tdx.walk = iter-old-spte (a read owns nothing)
READ_STEPS = (
    "READ_TOP",  # iter->old_spte of the 2M-level SPTE read non-present; next: tdp_mmu_link_sp()'s cmpxchg
    "READ_LEAF",  # iter->old_spte of the 4K SPTE read non-present; next: the target level's cmpxchg
)

WALK = Variant("walk", "whether kvm_tdp_mmu_map()'s read of a mirror SPTE into iter->old_spte is a step "
               "apart from the try_cmpxchg64() that compares against it", (
    VariantValue("read-at-cmpxchg", "v6.16",
                 "arch/x86/kvm/mmu/tdp_mmu.c at v6.16: kvm_tdp_mmu_map() and tdp_mmu_map_handle_target_level() "
                 "give up with RET_PF_RETRY when the cmpxchg fails, as when the walk had read the new value",
                 "the walk reads the SPTE in the step that compares-and-swaps it, so the copy is never stale "
                 "(the coarser model, kept by v6.16 and v6.19 so their figures stay as they were)"),
    VariantValue("iter-old-spte", "v7.2",
                 "02eaaffdd865 KVM: x86/mmu: Update iter->old_spte if cmpxchg64 on mirror SPTE \"fails\"; "
                 "291bcb3a7583 KVM: x86/mmu: Plumb param \"old_spte\" into kvm_x86_ops.set_external_spte()",
                 "the walk copies the SPTE into iter->old_spte in a step of its own; the cmpxchg compares "
                 "against the copy and fails on a stale one (RET_PF_RETRY)"),
))
ITER_OLD_SPTE = "iter-old-spte"


def per_fault(b: ModelBuilder, sizes: Sizes, actions: Sequence[tuple[Callable[..., Step], str | None]],
              strong: Sequence[Callable[..., Step]] = ()) -> None:
    """Each action for each vCPU and GFN, in the order given: a vCPU's own step (actor
    None), or another actor's step taken for that vCPU (a SEAMCALL result), which is the
    vCPU's progress for weak fairness. The answers in `strong` are strongly fair."""
    for v in range(sizes.vcpus):
        mine = vcpu_actor(v)
        for g in range(sizes.gfns):
            for method, actor in actions:
                b.action(method, actor or mine, mine, strong=method in strong, vcpu=v, gfn=g)


class MirrorFault:
    def __init__(self, b: ModelBuilder, fault: FaultPath, mirror: Root, sept: ExternalSept,
                 gmem: GuestMemfd, walk: str) -> None:
        self.fault, self.mirror, self.sept, self.gmem = fault, mirror, sept, gmem
        self.sizes = fault.sizes
        self.iter_copy = walk == ITER_OLD_SPTE  # tdx.walk
        self.owns_top_steps: tuple[str, ...] = OWNS_TOP  # huge pages add their own
        self.owns_leaf_steps: tuple[str, ...] = OWNS_LEAF  # so does set_external_spte(old, new)
        # set_external_spte_present() refuses a present old SPTE; set_external_spte(old,
        # new) takes it (tdx.propagation, model/mmu/tdx/propagation.py)
        self.was_present_bug = True
        self.write: Family = b.family(
            "fault.write", self.sizes.vcpu_labels(), BOOL, False,
            "the access that faulted was a write (PFERR_WRITE_MASK)",
        )
        fault.refine.idle_locals.append((self.write, False))
        self.dirty: Family = b.family(
            "mirror_spte_dirty", self.sizes.gfn_labels(), BOOL, False,
            "the volatile A/D state of the 4K mirror leaf (make_spte() sets it for a write fault)",
        )
        self.freeze = b.guard(
            "freeze",
            "set_external_spte_present() freezes the mirror SPTE (try_cmpxchg64 to "
            "FROZEN_SPTE) before the SEAMCALL and writes the new value only after it succeeds",
            "set_external_spte_present() in tdp_mmu.c; Documentation/virt/kvm/x86/tdx-tdp-mmu "
            "design, PATCH v10 107/108 (lore 91062ba1b723...isaku.yamahata@intel.com)",
        )
        self.spurious_check = b.guard(
            "spurious-check",
            "tdp_mmu_map_handle_target_level() returns RET_PF_SPURIOUS, writing nothing, when "
            "the SPTE is already a present leaf that allows the access",
            "commit 386d69f9f29b (KVM: x86/mmu: Treat TDP MMU faults as spurious if access "
            "is already allowed)",
        )

    # -- helpers --------------------------------------------------------------------

    def owns_top(self, v: int, region: int) -> z3.BoolRef:
        """vCPU v is inside set_external_spte_present() for the region's 2M-level SPTE."""
        return self._owns(v, self.owns_top_steps, self.sizes.region_gfns(region))

    def owns_leaf(self, v: int, gfn: int) -> z3.BoolRef:
        """vCPU v is inside set_external_spte_present() for gfn's 4K SPTE."""
        return self._owns(v, self.owns_leaf_steps, [gfn])

    def _owns(self, v: int, steps: tuple[str, ...], gfns: Iterable[int]) -> z3.BoolRef:
        f = self.fault
        return z3.And(
            z3.Or(*[f.step[v].var == f.steps.code(s) for s in steps]),
            z3.Or(*[f.gfn[v].var == g for g in gfns]),
            f.is_private[v].var,
        )

    def _at(self, v: int, step: str, gfn: int) -> z3.BoolRef:
        return self.fault.on(v, step, gfn, True)

    def _goto(self, v: int, step: str) -> dict[Field, object]:
        return {self.fault.step[v]: self.fault.steps.code(step)}

    def walk_at(self, v: int, gfn: int, level: str = "PG_LEVEL_4K") -> tuple[z3.BoolRef, z3.ExprRef, z3.ExprRef]:
        """vCPU v walks the mirror for gfn towards fault->goal_level `level`; the SPTEs it sees."""
        at = z3.And(self._at(v, "MAP", gfn), self.fault.goal_level[v].var == LEVEL.code(level))
        return at, self.mirror.top(gfn).var, self.mirror.spte_4k[gfn].var

    def define(self, b: ModelBuilder) -> None:
        answer = MODULE  # a SEAMCALL's result: the module's step, the calling vCPU's progress
        actions: list[tuple[Callable[..., Step], str | None]] = [
            (self.tdp_mmu_link_sp, None), (self.tdh_mem_sept_add, answer), (self.tdh_mem_sept_add_busy, answer),
            (self.tdh_mem_sept_add_error, answer), (self.write_linked, None), (self.restore_top, None),
            (self.retry_frozen, None), (self.map_target_level, None), (self.tdh_mem_page_aug, answer),
            (self.tdh_mem_page_aug_busy, answer), (self.tdh_mem_page_aug_walk_failed, answer),
            (self.tdh_mem_page_aug_state_incorrect, answer), (self.write_leaf, None), (self.restore_leaf, None),
            (self.map_spurious, None),
        ]
        if not self.spurious_check and self.was_present_bug:
            actions.append((self.set_external_spte_present_was_present, None))
        if self.iter_copy:
            actions += [(self.walk_top, None), (self.tdp_mmu_link_sp_busy, None), (self.walk_leaf, None),
                        (self.map_target_level_busy, None)]
        # the fault gives up on BUSY and the guest faults again: the module's contention is
        # transient, so a success it could give is not passed over forever
        per_fault(b, self.sizes, actions, strong=(self.tdh_mem_sept_add, self.tdh_mem_page_aug))

    def at_cmpxchg(self, vcpu: int, gfn: int, step: str, walked: z3.BoolRef) -> z3.BoolRef:
        """Where the cmpxchg of the walk's copy happens: at the walk itself
        (read-at-cmpxchg, `walked` is the SPTE value it needs), or at the READ step the
        walk left (iter-old-spte; the copy held the value `walked` asked for)."""
        return self._at(vcpu, step, gfn) if self.iter_copy else walked

    def walk_read(self, vcpu: int, gfn: int, step: str, walked: z3.BoolRef, what: str) -> Step:
        """tdx.walk = iter-old-spte: the walk copies the SPTE (`what`) into iter->old_spte
        and goes to READ `step`, where the cmpxchg against the copy is next."""
        return Step(f"kvm_tdp_mmu_map(mirror, g{gfn}): iter->old_spte = {what}", walked, self._goto(vcpu, step))

    def stale_copy(self, vcpu: int, gfn: int, step: str, unchanged: z3.BoolRef, caller: str) -> Step:
        """tdx.walk = iter-old-spte: at READ `step` the SPTE no longer holds what the walk
        read (`unchanged` is false), so `caller`'s try_cmpxchg64() fails: -EBUSY, and the
        fault returns RET_PF_RETRY."""
        return Step(f"{caller}(): try_cmpxchg64() fails (stale iter->old_spte) -> -EBUSY; RET_PF_RETRY; read_unlock",
                    z3.And(self._at(vcpu, step, gfn), z3.Not(unchanged)), self.fault.done(vcpu))

    # -- linking the 4K table -------------------------------------------------------

    @kernel("set_external_spte_present")
    def tdp_mmu_link_sp(self, vcpu: int, gfn: int) -> Step:
        """kvm_tdp_mmu_map() finds the 2M-level mirror SPTE non-present and links a new
        table: tdp_mmu_link_sp() -> tdp_mmu_set_spte_atomic() -> set_external_spte_present()
        freezes it with try_cmpxchg64(sptep, &old, FROZEN_SPTE). Without guard `freeze`
        the non-leaf value is written at once, before TDH.MEM.SEPT.ADD (the design the
        freeze replaced)."""
        topf = self.mirror.top(gfn)
        new = SPTE_2M.FROZEN if self.freeze else SPTE_2M.NONLEAF
        what = "try_cmpxchg64(FROZEN_SPTE)" if self.freeze else "write non-leaf (no freeze)"
        region = self.sizes.region_labels()[self.sizes.region_of(gfn)]
        guard = z3.And(self.at_cmpxchg(vcpu, gfn, "READ_TOP", self._top_absent(vcpu, gfn)),
                       topf.var == SPTE_2M.NONPRESENT)
        return Step(f"tdp_mmu_link_sp(mirror, 2M@{region}): {what}", guard,
                    {topf: new, **self._goto(vcpu, "FROZEN_TOP")})

    def _top_absent(self, vcpu: int, gfn: int) -> z3.BoolRef:
        at, top, _ = self.walk_at(vcpu, gfn)
        return z3.And(at, top == SPTE_2M.NONPRESENT)

    @kernel("kvm_tdp_mmu_map")
    def walk_top(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte: kvm_tdp_mmu_map()'s walk reads the 2M-level mirror
        SPTE into iter->old_spte and finds it non-present: a table is to be linked. Left
        out: tdp_mmu_alloc_sp() (the model's tables are preallocated)."""
        return self.walk_read(vcpu, gfn, "READ_TOP", self._top_absent(vcpu, gfn), "2M non-present")

    @kernel("tdp_mmu_link_sp")
    def tdp_mmu_link_sp_busy(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte: the 2M-level SPTE changed since the walk read it
        (another vCPU froze or linked it), so try_cmpxchg64() against iter->old_spte
        fails, tdp_mmu_link_sp() returns -EBUSY and kvm_tdp_mmu_map() RET_PF_RETRY.
        Left out: tdp_mmu_free_sp() of the unused table."""
        return self.stale_copy(vcpu, gfn, "READ_TOP", self.mirror.top(gfn).var == SPTE_2M.NONPRESENT,
                               "tdp_mmu_link_sp")

    def _sept_add(self, vcpu: int, gfn: int) -> tuple[z3.BoolRef, Field, str]:
        region = self.sizes.region_of(gfn)
        label = self.sizes.region_labels()[region]
        at = z3.And(self._at(vcpu, "FROZEN_TOP", gfn), self.fault.goal_level[vcpu].var == LEVEL.PG_LEVEL_4K)
        return at, self.sept.sept_2m[region], f"TDH.MEM.SEPT.ADD(2M@{label})"

    @kernel("tdh_mem_sept_add")
    def tdh_mem_sept_add(self, vcpu: int, gfn: int) -> Step:
        """link_external_spt -> tdx_sept_link_private_spt() -> tdh_mem_sept_add(): TDH.MEM.SEPT.ADD succeeds:
        the S-EPT entry was free, and now points to the new S-EPT page."""
        at, entry, name = self._sept_add(vcpu, gfn)
        return Step(f"{name} for vCPU{vcpu} -> TDX_SUCCESS",
                    z3.And(at, entry.var == SEPT_2M.FREE),
                    {entry: SEPT_2M.NONLEAF, **self._goto(vcpu, "LINKED_TOP")})

    @kernel("tdh_mem_sept_add")
    def tdh_mem_sept_add_busy(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_sept_add(): TDH.MEM.SEPT.ADD returns TDX_OPERAND_BUSY: it takes the SEPT tree lock shared,
        which a vCPU entering the TD (zero-step mitigation) or a guest TDCALL can hold;
        tdx_sept_link_private_spt() returns -EBUSY. The model allows BUSY only while some
        vCPU runs in the TD."""
        at, _, name = self._sept_add(vcpu, gfn)
        return Step(f"{name} for vCPU{vcpu} -> TDX_OPERAND_BUSY",
                    z3.And(at, self.sept.td.any_in_guest()), self._goto(vcpu, "RESTORE_TOP"))

    @kernel("tdh_mem_sept_add")
    def tdh_mem_sept_add_error(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_sept_add(): TDH.MEM.SEPT.ADD on an entry that is already a table fails
        (TDX_EPT_ENTRY_STATE_INCORRECT): tdx_sept_link_private_spt() KVM_BUG_ON()s."""
        at, entry, name = self._sept_add(vcpu, gfn)
        return Step(f"{name} for vCPU{vcpu} -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    z3.And(at, entry.var != SEPT_2M.FREE),
                    {**self.sept.bug(), **self._goto(vcpu, "RESTORE_TOP")})

    @kernel("__kvm_tdp_mmu_write_spte")
    def write_linked(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte_present() after success: __kvm_tdp_mmu_write_spte(sptep,
        new_spte) publishes the non-leaf; kvm_tdp_mmu_map() steps down into the table."""
        topf = self.mirror.top(gfn)
        return Step("__kvm_tdp_mmu_write_spte(2M, non-leaf)", self._at(vcpu, "LINKED_TOP", gfn),
                    {topf: SPTE_2M.NONLEAF, **self._goto(vcpu, "MAP")})

    @kernel("__kvm_tdp_mmu_write_spte")
    def restore_top(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte_present() after a failed SEAMCALL: __kvm_tdp_mmu_write_spte()
        of the old value; tdp_mmu_link_sp() fails and the fault returns RET_PF_RETRY."""
        topf = self.mirror.top(gfn)
        return Step("__kvm_tdp_mmu_write_spte(2M, old_spte); RET_PF_RETRY; read_unlock",
                    self._at(vcpu, "RESTORE_TOP", gfn),
                    {topf: SPTE_2M.NONPRESENT, **self.fault.done(vcpu)})

    @kernel("kvm_tdp_mmu_map")
    def retry_frozen(self, vcpu: int, gfn: int) -> Step:
        """kvm_tdp_mmu_map(): "If SPTE has been frozen by another thread, just give up
        and retry" - RET_PF_RETRY, and the vCPU faults again later."""
        _, top, leaf = self.walk_at(vcpu, gfn)
        at = self._at(vcpu, "MAP", gfn)
        at_4k = self.fault.goal_level[vcpu].var == LEVEL.PG_LEVEL_4K
        frozen = z3.Or(top == SPTE_2M.FROZEN, z3.And(at_4k, top == SPTE_2M.NONLEAF, leaf == SPTE_4K.FROZEN))
        return Step("kvm_tdp_mmu_map(): is_frozen_spte() -> RET_PF_RETRY; read_unlock",
                    z3.And(at, frozen), self.fault.done(vcpu))

    # -- installing the 4K leaf -----------------------------------------------------

    @kernel("tdp_mmu_map_handle_target_level")
    def map_target_level(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_map_handle_target_level() at 4K over a non-present SPTE:
        tdp_mmu_set_spte_atomic() -> set_external_spte_present() freezes it. Without guard
        `freeze` the leaf is written at once, before TDH.MEM.PAGE.AUG. The cmpxchg compares
        against iter->old_spte: read in this step, or at READ_LEAF (tdx.walk)."""
        f = self.mirror.spte_4k[gfn]
        effect: dict[Field, object] = self._goto(vcpu, "FROZEN_LEAF")
        if self.freeze:
            effect[f] = SPTE_4K.FROZEN
        else:
            effect |= {f: SPTE_4K.LEAF, self.dirty[gfn]: self.write[vcpu].var}
        what = "try_cmpxchg64(FROZEN_SPTE)" if self.freeze else "write leaf (no freeze)"
        return Step(f"tdp_mmu_map_handle_target_level(mirror, g{gfn}, 4K): {what}",
                    z3.And(self.at_cmpxchg(vcpu, gfn, "READ_LEAF", self._leaf_absent(vcpu, gfn)),
                           self.leaf_linked(gfn)), effect)

    def _leaf_absent(self, vcpu: int, gfn: int) -> z3.BoolRef:
        at, _, _ = self.walk_at(vcpu, gfn)
        return z3.And(at, self.leaf_linked(gfn))

    def leaf_linked(self, gfn: int) -> z3.BoolRef:
        """The 4K SPTE is non-present in a linked table (a table zapped from under the
        walk has its children FROZEN_SPTE for good, so a cmpxchg in it fails)."""
        return z3.And(self.mirror.top(gfn).var == SPTE_2M.NONLEAF, self.mirror.spte_4k[gfn].var == SPTE_4K.NONPRESENT)

    @kernel("kvm_tdp_mmu_map")
    def walk_leaf(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte: kvm_tdp_mmu_map()'s walk reaches the 4K level, reads
        the mirror SPTE into iter->old_spte and finds it non-present: the leaf is to be
        installed. Left out: the RCU read section (nothing is freed under the model's walk)."""
        return self.walk_read(vcpu, gfn, "READ_LEAF", self._leaf_absent(vcpu, gfn), "4K non-present")

    @kernel("tdp_mmu_map_handle_target_level")
    def map_target_level_busy(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte: the 4K SPTE changed since the walk read it (another
        vCPU froze or installed it, or its table was zapped), so try_cmpxchg64() against
        iter->old_spte fails: tdp_mmu_set_spte_atomic() returns -EBUSY and
        tdp_mmu_map_handle_target_level() RET_PF_RETRY. Left out: the refreshed
        iter->old_spte, which a fault that gives up never reads."""
        return self.stale_copy(vcpu, gfn, "READ_LEAF", self.leaf_linked(gfn), "tdp_mmu_set_spte_atomic")

    def _aug(self, vcpu: int, gfn: int) -> tuple[z3.BoolRef, str]:
        return self._at(vcpu, "FROZEN_LEAF", gfn), f"TDH.MEM.PAGE.AUG(g{gfn}) for vCPU{vcpu}"

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte -> tdx_sept_set_private_spte(): get_page() pins the page,
        then tdh_mem_page_aug(): TDH.MEM.PAGE.AUG succeeds: the parent S-EPT table exists and the entry was
        free; the entry is now PENDING until the guest accepts it."""
        at, name = self._aug(vcpu, gfn)
        guard = z3.And(at, self.sept.table_present(gfn), self.sept.sept_4k[gfn].var == SEPT_4K.FREE)
        effect = {self.sept.sept_4k[gfn]: SEPT_4K.PENDING, **self.gmem.pin(gfn), **self._goto(vcpu, "AUGED")}
        return Step(f"{name} -> TDX_SUCCESS (PENDING)", guard, effect)

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_busy(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_page_aug(): TDH.MEM.PAGE.AUG returns TDX_OPERAND_BUSY (contention on the SEPT tree or the
        entry with a vCPU in the TD): tdx_mem_page_aug() unpins the page and returns
        -EBUSY. Allowed only while some vCPU runs in the TD."""
        at, name = self._aug(vcpu, gfn)
        return Step(f"{name} -> TDX_OPERAND_BUSY", z3.And(at, self.sept.td.any_in_guest()),
                    self._goto(vcpu, "RESTORE_LEAF"))

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_walk_failed(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_page_aug(): TDH.MEM.PAGE.AUG with no S-EPT table above the entry fails
        with TDX_EPT_WALK_FAILED; tdx_mem_page_aug() KVM_BUG_ON()s and unpins."""
        at, name = self._aug(vcpu, gfn)
        return Step(f"{name} -> TDX_EPT_WALK_FAILED; KVM_BUG_ON",
                    z3.And(at, z3.Not(self.sept.table_present(gfn))),
                    {**self.sept.bug(), **self._goto(vcpu, "RESTORE_LEAF")})

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_state_incorrect(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_page_aug(): TDH.MEM.PAGE.AUG on an entry that is not free fails with
        TDX_EPT_ENTRY_STATE_INCORRECT; tdx_mem_page_aug() KVM_BUG_ON()s and unpins."""
        at, name = self._aug(vcpu, gfn)
        guard = z3.And(at, self.sept.table_present(gfn), self.sept.sept_4k[gfn].var != SEPT_4K.FREE)
        return Step(f"{name} -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    guard, {**self.sept.bug(), **self._goto(vcpu, "RESTORE_LEAF")})

    @kernel("__kvm_tdp_mmu_write_spte")
    def write_leaf(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte_present() after success: __kvm_tdp_mmu_write_spte() of the
        new leaf (its A/D state from the access); RET_PF_FIXED; read_unlock()."""
        f = self.mirror.spte_4k[gfn]
        effect = {f: SPTE_4K.LEAF, self.dirty[gfn]: self.write[vcpu].var, **self.fault.done(vcpu)}
        return Step(f"__kvm_tdp_mmu_write_spte(g{gfn}, leaf); RET_PF_FIXED; read_unlock",
                    self._at(vcpu, "AUGED", gfn), effect)

    @kernel("__kvm_tdp_mmu_write_spte")
    def restore_leaf(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte_present() after a failed SEAMCALL: __kvm_tdp_mmu_write_spte()
        writes back the old, non-present value; the fault returns RET_PF_RETRY."""
        f = self.mirror.spte_4k[gfn]
        effect = {f: SPTE_4K.NONPRESENT, self.dirty[gfn]: False, **self.fault.done(vcpu)}
        return Step(f"__kvm_tdp_mmu_write_spte(g{gfn}, old_spte); RET_PF_RETRY; read_unlock",
                    self._at(vcpu, "RESTORE_LEAF", gfn), effect)

    def _present_leaf(self, vcpu: int, gfn: int) -> z3.BoolRef:
        at, top, leaf = self.walk_at(vcpu, gfn)
        return z3.And(at, top == SPTE_2M.NONLEAF, leaf == SPTE_4K.LEAF)

    @kernel("tdp_mmu_map_handle_target_level")
    def map_spurious(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_map_handle_target_level() finds a present 4K leaf: with guard
        `spurious-check` the access is already allowed (private leaves are RWX), so
        RET_PF_SPURIOUS; without it, only a new SPTE equal to the old one (same A/D
        state) is spurious."""
        same = self.dirty[gfn].var == self.write[vcpu].var
        guard = self._present_leaf(vcpu, gfn)
        if not self.spurious_check:
            guard = z3.And(guard, same)
        return Step("tdp_mmu_map_handle_target_level(): RET_PF_SPURIOUS; read_unlock", guard,
                    self.fault.done(vcpu))

    @kernel("set_external_spte_present")
    def set_external_spte_present_was_present(self, vcpu: int, gfn: int) -> Step:
        """Without guard `spurious-check`: make_spte() gives a value that differs from the
        present leaf only in its A/D state, so tdp_mmu_set_spte_atomic() ->
        set_external_spte_present() is called on a present SPTE and KVM_BUG_ON(was_present)
        fires (before that check existed, a second TDH.MEM.PAGE.AUG failed with
        TDX_EPT_ENTRY_STATE_INCORRECT)."""
        guard = z3.And(self._present_leaf(vcpu, gfn), self.dirty[gfn].var != self.write[vcpu].var)
        return Step(f"set_external_spte_present(g{gfn}): KVM_BUG_ON(was_present)", guard,
                    {**self.sept.bug(), **self.fault.done(vcpu)})
