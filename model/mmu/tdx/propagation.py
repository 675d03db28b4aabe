"""How a change of a mirror SPTE reaches the external S-EPT: variant `tdx.propagation`.

link-and-remove-hooks (v6.14 .. v7.1, arch/x86/kvm/mmu/tdp_mmu.c): a present value
written under the read lock goes through set_external_spte_present(), which calls
link_external_spt (a table) or set_external_spte (a leaf) and refuses a present old
value with KVM_BUG_ON(was_present); a zap under the write lock calls
remove_external_spte(); a zap under the read lock never reaches a mirror SPTE
(KVM_BUG_ON()s in __tdp_mmu_set_spte_atomic() and handle_removed_pt()).

set_external_spte-old-new (v7.2, the TDX MMU refactor merged by 96124f964c23):
tdp_mmu_set_spte_atomic() freezes every mirror write against iter->old_spte, atomic
zaps included, and __handle_changed_spte() calls one hook, set_external_spte(kvm, gfn,
old_spte, new_spte, level), restoring the old value if it fails. TDX's
tdx_sept_set_private_spte() dispatches on the old value: a present old SPTE is removed
(tdx_sept_remove_leaf_spte(): BLOCK, TRACK, REMOVE) whatever the new one is; a
non-present one is mapped (tdx_sept_map_nonleaf_spte(), tdx_sept_map_leaf_spte()). A
removed mirror table is freed by free_external_spt -> tdx_sept_free_private_spt(),
which KVM_BUG_ON()s while the TD has its HKID ("must be under exclusive mmu_lock").

With every guard on the two values give the same transitions (the refactor changed no
behaviour of a correct caller); they differ where a guard is off: a present-to-present
write of a leaf (guard `spurious-check`) and a zap of a mirror table under the read
lock (guard `atomic-zap-direct-only`). This module holds the second value's steps.
"""

from __future__ import annotations

from collections.abc import Callable

import z3

from model.lang import Field, ModelBuilder, Step, Variant, VariantValue, kernel, then

from ..values import BLOCK_AGE, SEPT_4K, SPTE_2M, SPTE_4K
from .gmem import GuestMemfd
from .mirror_fault import MirrorFault, per_fault
from .sept import MODULE, ExternalSept

PROPAGATION = Variant("propagation", "how KVM tells the TDX module about a change of a mirror SPTE", (
    VariantValue("link-and-remove-hooks", "v6.16",
                 "arch/x86/kvm/mmu/tdp_mmu.c at v6.16: set_external_spte_present(), remove_external_spte(); "
                 "kvm_x86_ops link_external_spt, set_external_spte, remove_external_spte",
                 "a hook per kind of change; a present old value and an atomic zap of a mirror SPTE are "
                 "KVM_BUG_ON()s in the MMU"),
    VariantValue("set_external_spte-old-new", "v7.2",
                 "TDX MMU refactors v3 <lkml.iu.edu/2605.3/07315.html>, 28c77a037804 (Centrally propagate "
                 "to-present/atomic zap updates to external PTEs), 6eae9ce9461c, 12d595795de7, 41367d77ee4e; "
                 "merged by 96124f964c23 (kvm-x86-mmu-7.2)",
                 "every mirror write frozen, then set_external_spte(old, new); TDX dispatches on the old value"),
))
CENTRAL = "set_external_spte-old-new"

# fault steps of a present-to-present write, all under the read lock
STEPS = (
    "FROZEN_PRESENT",  # the present 4K mirror leaf is frozen by this vCPU; next set_external_spte
    "REMOVED_PRESENT",  # tdx_sept_remove_leaf_spte() succeeded; next: write the new leaf
    "RESTORE_PRESENT",  # it failed; next: write back the old leaf
)
# with tdx.walk = iter-old-spte: the walk read a present leaf whose A/D state differs
# from the new SPTE's (guard spurious-check off); next: the cmpxchg against that copy
READ_STEPS = ("READ_PRESENT",)


class CentralPropagation:
    """The steps only set_external_spte(old, new) has: the mirror SPTE of a present leaf
    frozen and its S-EPT leaf removed under the read lock, and a mirror table zapped
    under the read lock."""

    def __init__(self, mf: MirrorFault, sept: ExternalSept, gmem: GuestMemfd) -> None:
        self.mf, self.sept, self.gmem = mf, sept, gmem
        self.fault, self.mirror, self.sizes = mf.fault, mf.mirror, mf.sizes
        mf.owns_leaf_steps = (*mf.owns_leaf_steps, *STEPS)
        mf.was_present_bug = False

    def define(self, b: ModelBuilder) -> None:
        actions: list[tuple[Callable[..., Step], str | None]] = []
        if not self.mf.spurious_check:
            actions.append((self.tdp_mmu_set_spte_atomic, None))
            if self.mf.iter_copy:
                actions += [(self.walk_present, None), (self.tdp_mmu_set_spte_atomic_busy, None)]
        actions += [(self.tdx_sept_remove_leaf_spte, MODULE), (self.tdx_sept_remove_leaf_spte_busy, MODULE),
                    (self.tdx_sept_remove_leaf_spte_error, MODULE), (self.write_new_leaf, None),
                    (self.restore_old_leaf, None)]
        per_fault(b, self.sizes, actions)

    def _at(self, v: int, step: str, gfn: int) -> z3.BoolRef:
        return self.fault.on(v, step, gfn, True)

    def _goto(self, v: int, step: str) -> dict[Field, object]:
        return {self.fault.step[v]: self.fault.steps.code(step)}

    def _other_ad(self, vcpu: int, gfn: int) -> z3.BoolRef:
        """The 4K mirror leaf is present with an A/D state other than the one the
        vCPU's access gives make_spte()."""
        return z3.And(self.mirror.top(gfn).var == SPTE_2M.NONLEAF, self.mirror.spte_4k[gfn].var == SPTE_4K.LEAF,
                      self.mf.dirty[gfn].var != self.mf.write[vcpu].var)

    def _walked_other_ad(self, vcpu: int, gfn: int) -> z3.BoolRef:
        at, _, _ = self.mf.walk_at(vcpu, gfn)
        return z3.And(at, self._other_ad(vcpu, gfn))

    @kernel("tdp_mmu_set_spte_atomic")
    def tdp_mmu_set_spte_atomic(self, vcpu: int, gfn: int) -> Step:
        """Without guard `spurious-check`: the fault finds a present leaf whose A/D state
        differs from the SPTE make_spte() gives, and tdp_mmu_set_spte_atomic() freezes the
        mirror SPTE (try_cmpxchg64 against iter->old_spte) to write the new value: at the
        walk's read (tdx.walk = read-at-cmpxchg) or after it (iter-old-spte)."""
        leaf = self.mirror.spte_4k[gfn]
        guard = z3.And(self.mf.at_cmpxchg(vcpu, gfn, "READ_PRESENT", self._walked_other_ad(vcpu, gfn)),
                       self._other_ad(vcpu, gfn))
        return Step(f"tdp_mmu_set_spte_atomic(mirror, g{gfn}, present -> present): try_cmpxchg64(FROZEN_SPTE)",
                    guard, {leaf: SPTE_4K.FROZEN, **self._goto(vcpu, "FROZEN_PRESENT")})

    @kernel("kvm_tdp_mmu_map")
    def walk_present(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte, without guard `spurious-check`: kvm_tdp_mmu_map()'s
        walk reads the present 4K leaf, with the other A/D state, into iter->old_spte.
        Left out: the A/D bits themselves (the copy is "the other state than the access's")."""
        return self.mf.walk_read(vcpu, gfn, "READ_PRESENT", self._walked_other_ad(vcpu, gfn), "4K leaf (other A/D)")

    @kernel("tdp_mmu_set_spte_atomic")
    def tdp_mmu_set_spte_atomic_busy(self, vcpu: int, gfn: int) -> Step:
        """tdx.walk = iter-old-spte: the leaf changed since the walk read it (another
        vCPU froze or rewrote it), so try_cmpxchg64() against iter->old_spte fails and
        tdp_mmu_set_spte_atomic() returns -EBUSY: RET_PF_RETRY. Left out: the refreshed
        copy, which nobody reads."""
        return self.mf.stale_copy(vcpu, gfn, "READ_PRESENT", self._other_ad(vcpu, gfn), "tdp_mmu_set_spte_atomic")

    def removal(self, gfns: list[int]) -> dict[Field, object]:
        """tdx_sept_remove_leaf_spte() of every present S-EPT leaf in `gfns`, each run to
        success: TDH.MEM.RANGE.BLOCK, tdx_track() (TDH.MEM.TRACK, then every vCPU kicked
        out of the TD), TDH.MEM.PAGE.REMOVE (the page's contents are gone)."""
        s = self.sept
        effect: dict[Field, object] = dict(s.age_blocked_entries())  # TDH.MEM.TRACK
        for g in gfns:
            present = s.leaf_present(g)
            effect[s.sept_4k[g]] = z3.If(present, SEPT_4K.FREE, s.sept_4k[g].var)
            effect[s.bepoch[g]] = z3.If(present, BLOCK_AGE.CURRENT, effect[s.bepoch[g]])  # type: ignore[arg-type]
            for f, value in self.gmem.unpin(g).items():
                effect[f] = z3.If(present, value, f.var)  # type: ignore[arg-type]
        return then(then(effect, s.td.track()), s.td.kick())

    @kernel("tdx_sept_remove_leaf_spte")
    def tdx_sept_remove_leaf_spte(self, vcpu: int, gfn: int) -> Step:
        """__handle_changed_spte() -> set_external_spte(old present, new present) ->
        tdx_sept_set_private_spte(): the old SPTE is present, so tdx_sept_remove_leaf_spte()
        runs, under the read lock (its lockdep_assert_held_write() only warns): BLOCK,
        tdx_track(), REMOVE, each through tdh_do_no_vcpus(), all succeed, and the guest's
        page is gone while the mirror is about to map it again. Left out: the three
        SEAMCALLs as steps of their own (they run back to back here)."""
        s = self.sept
        guard = z3.And(self._at(vcpu, "FROZEN_PRESENT", gfn), s.leaf_present(gfn),
                       z3.Not(s.td.any_in_previous_epoch()))
        return Step(f"set_external_spte(g{gfn}, old present): tdx_sept_remove_leaf_spte(): BLOCK, TRACK, kick, "
                    "REMOVE -> TDX_SUCCESS", guard, {**self.removal([gfn]), **self._goto(vcpu, "REMOVED_PRESENT")})

    @kernel("tdx_sept_remove_leaf_spte")
    def tdx_sept_remove_leaf_spte_error(self, vcpu: int, gfn: int) -> Step:
        """tdx_sept_remove_leaf_spte() on a GFN the S-EPT no longer maps (another removal
        got there first): TDH.MEM.RANGE.BLOCK fails with TDX_EPT_ENTRY_STATE_INCORRECT,
        TDX_BUG_ON_2() bugs the VM, -EIO."""
        guard = z3.And(self._at(vcpu, "FROZEN_PRESENT", gfn), z3.Not(self.sept.leaf_present(gfn)))
        return Step(f"set_external_spte(g{gfn}, old present): TDH.MEM.RANGE.BLOCK -> "
                    "TDX_EPT_ENTRY_STATE_INCORRECT; TDX_BUG_ON_2", guard,
                    {**self.sept.bug(), **self._goto(vcpu, "RESTORE_PRESENT")})

    def _busy_elsewhere(self, vcpu: int) -> z3.BoolRef:
        """Another vCPU is inside a SEAMCALL of its own fault (TDH.MEM.SEPT.ADD or
        TDH.MEM.PAGE.AUG, under the same read lock): it holds the S-EPT tree, which BLOCK
        takes exclusively, and no kick moves it."""
        f = self.fault
        return z3.Or(False, *[z3.Or(f.step[w].var == f.steps.FROZEN_TOP, f.step[w].var == f.steps.FROZEN_LEAF)
                              for w in range(self.sizes.vcpus) if w != vcpu])

    @kernel("tdx_sept_remove_leaf_spte")
    def tdx_sept_remove_leaf_spte_busy(self, vcpu: int, gfn: int) -> Step:
        """tdx_sept_remove_leaf_spte() under the read lock while another vCPU's fault is
        in TDH.MEM.SEPT.ADD or TDH.MEM.PAGE.AUG: TDH.MEM.RANGE.BLOCK returns
        TDX_OPERAND_BUSY, tdh_do_no_vcpus() kicks and retries, and the retry is BUSY again
        (the other SEAMCALL runs on the host): TDX_BUG_ON_2() bugs the VM, -EIO."""
        guard = z3.And(self._at(vcpu, "FROZEN_PRESENT", gfn), self._busy_elsewhere(vcpu))
        return Step(f"set_external_spte(g{gfn}, old present): TDH.MEM.RANGE.BLOCK -> TDX_OPERAND_BUSY twice; "
                    "TDX_BUG_ON_2", guard, {**self.sept.bug(), **self._goto(vcpu, "RESTORE_PRESENT")})

    @kernel("tdp_mmu_set_spte_atomic")
    def write_new_leaf(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_set_spte_atomic() after set_external_spte() succeeded:
        __kvm_tdp_mmu_write_spte() of the new, present leaf; RET_PF_FIXED."""
        leaf = self.mirror.spte_4k[gfn]
        effect = {leaf: SPTE_4K.LEAF, self.mf.dirty[gfn]: self.mf.write[vcpu].var, **self.fault.done(vcpu)}
        return Step(f"__kvm_tdp_mmu_write_spte(g{gfn}, new leaf); RET_PF_FIXED; read_unlock",
                    self._at(vcpu, "REMOVED_PRESENT", gfn), effect)

    @kernel("tdp_mmu_set_spte_atomic")
    def restore_old_leaf(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_set_spte_atomic() after set_external_spte() failed: "restore the old
        SPTE so that the SPTE isn't frozen in perpetuity"; RET_PF_RETRY."""
        leaf = self.mirror.spte_4k[gfn]
        return Step(f"__kvm_tdp_mmu_write_spte(g{gfn}, old_spte); RET_PF_RETRY; read_unlock",
                    self._at(vcpu, "RESTORE_PRESENT", gfn), {leaf: SPTE_4K.LEAF, **self.fault.done(vcpu)})

    def zap_table(self, region: int) -> tuple[dict[Field, object], str]:
        """What a zap of the region's mirror table under the read lock tells the TDX
        module: handle_removed_pt(shared) writes each child FROZEN_SPTE and
        __handle_changed_spte() -> set_external_spte() removes each present S-EPT leaf;
        then free_external_spt -> tdx_sept_free_private_spt() finds the HKID assigned:
        KVM_BUG_ON, and the S-EPT page stays (leaked, never TDH.MEM.SEPT.REMOVEd)."""
        effect = {**self.removal(self.sizes.region_gfns(region)), **self.sept.bug()}
        return effect, ("; set_external_spte() per leaf: BLOCK, TRACK, kick, REMOVE; "
                        "tdx_sept_free_private_spt(): KVM_BUG_ON(is_hkid_assigned)")
