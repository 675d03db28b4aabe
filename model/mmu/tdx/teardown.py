"""Tearing down mirror leaves under mmu_lock held for write, with the TDX SEAMCALLs.

Kernel (~6.16): tdp_mmu_zap_leafs() -> tdp_mmu_iter_set_spte(SHADOW_NONPRESENT_VALUE)
writes the mirror leaf non-present, then remove_external_spte() ->
tdx_sept_remove_private_spte():
  tdx_sept_zap_private_spte()  TDH.MEM.RANGE.BLOCK
  tdx_track()                  TDH.MEM.TRACK, then kvm_make_all_cpus_request(
                               KVM_REQ_OUTSIDE_GUEST_MODE): every vCPU leaves the TD
  tdx_sept_drop_private_spte() TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD,
                               tdx_clear_page(), tdx_unpin()
Each SEAMCALL that returns TDX_OPERAND_BUSY is retried once between
tdx_no_vcpus_enter_start() (wait_for_sept_zap = true and a kick of every vCPU) and
tdx_no_vcpus_enter_stop(); any other error is KVM_BUG_ON.

The ioctl thread (a conversion, a punch-hole, a memslot update) holds the write lock
from the step that starts the tear-down to the step that finishes it; the SEAMCALL
results are the TDX module's steps. Left out: TDH.PHYMEM.PAGE.WBINVD failing, the
premap path before the TD is finalized, HKID release.
"""

from __future__ import annotations

import z3

from model.lang import EnumDomain, Family, Field, IntDomain, ModelBuilder, Step, kernel

from ..set_memory_attributes import ACTOR, AFTER_ZAP, IOCTL_STEP, SetMemoryAttributes
from ..tdp import Root
from ..values import BLOCK_AGE, SEPT_4K, SPTE_2M, SPTE_4K
from .gmem import GuestMemfd
from .sept import MODULE, ExternalSept

ZAP_STEP = EnumDomain("sept_zap_step", ["IDLE", "BLOCK", "TRACK", "KICK", "REMOVE", "NEXT"])


class SeptTeardown:
    def __init__(self, b: ModelBuilder, mirror: Root, sept: ExternalSept, gmem: GuestMemfd,
                 dirty: Family) -> None:
        self.mirror, self.sept, self.gmem, self.dirty = mirror, sept, gmem, dirty
        self.sizes = mirror.sizes
        n = self.sizes.gfns
        names = {g: f"g{g}" for g in range(n + 1)}
        self.step: Field = b.field("sept_zap.step", ZAP_STEP, "IDLE", "where the tear-down of a leaf is")
        gfn_names = {g: f"g{g}" for g in range(n)}
        self.gfn: Field = b.field("sept_zap.gfn", IntDomain(0, n - 1, gfn_names), 0, "the leaf being torn down")
        self.end: Field = b.field("sept_zap.end", IntDomain(0, n, names), 0, "the end of the range")
        self.track_guard = b.guard(
            "track-before-remove",
            "between TDH.MEM.RANGE.BLOCK and TDH.MEM.PAGE.REMOVE, tdx_track() runs "
            "TDH.MEM.TRACK and kicks every vCPU out of the TD",
            "tdx_track() in arch/x86/kvm/vmx/tdx.c; Chen Yu's report in the v19 review "
            "(ZlbftscsqGQjWZqj@chenyu5-mobl2): TDX_TLB_TRACKING_NOT_DONE",
        )

    def bind(self, ioctl: SetMemoryAttributes) -> None:
        self.ioctl = ioctl

    # -- helpers --------------------------------------------------------------------

    def _leaf(self, g: int) -> z3.BoolRef:
        return z3.And(self.mirror.top(g).var == SPTE_2M.NONLEAF, self.mirror.spte_4k[g].var == SPTE_4K.LEAF)

    def _clear(self, g: int, when: z3.BoolRef) -> dict[Field, object]:
        """tdp_mmu_iter_set_spte(SHADOW_NONPRESENT_VALUE) of gfn g's mirror leaf, if `when`."""
        leaf, dirty = self.mirror.spte_4k[g], self.dirty[g]
        return {leaf: z3.If(when, SPTE_4K.NONPRESENT, leaf.var), dirty: z3.If(when, False, dirty.var)}

    def _first_leaf(self, gfns: list[int], start_at: z3.ArithRef | int | None, end: z3.ArithRef | int
                    ) -> tuple[z3.BoolRef, z3.ArithRef, dict[Field, object]]:
        """The first present mirror leaf among `gfns` (after `start_at`, before `end`):
        whether there is one, which, and the effect of clearing it."""
        def eligible(g: int) -> z3.BoolRef:
            conds = [self._leaf(g), z3.BoolVal(g < end) if isinstance(end, int) else end > g]
            if start_at is not None:
                conds.append(start_at < g)
            return z3.And(*conds)

        found: z3.BoolRef = z3.BoolVal(False)
        which: z3.ArithRef = z3.IntVal(0)
        for g in reversed(gfns):
            found = z3.Or(eligible(g), found)
            which = z3.If(eligible(g), g, which)
        effect: dict[Field, object] = {}
        for g in gfns:
            effect |= self._clear(g, z3.And(found, which == g))
        return found, which, effect

    def start(self, start: int, end: int, zap_step: str) -> dict[Field, object]:
        """The effect, inside the step that takes the write lock, of zapping the mirror
        leaves in [start, end): clear the first one and go on to TDH.MEM.RANGE.BLOCK, or
        carry on at once if there is none."""
        found, which, effect = self._first_leaf(list(range(start, end)), None, end)
        then = AFTER_ZAP[zap_step]
        effect |= {
            self.ioctl.step: z3.If(found, IOCTL_STEP.code(zap_step), IOCTL_STEP.code(then)),
            self.step: z3.If(found, ZAP_STEP.BLOCK, ZAP_STEP.IDLE),
            self.gfn: z3.If(found, which, 0),
            self.end: z3.If(found, end, 0),
        }
        return effect

    def _at(self, step: str, gfn: int | None = None) -> z3.BoolRef:
        at = self.step.var == ZAP_STEP.code(step)
        return at if gfn is None else z3.And(at, self.gfn.var == gfn)

    def _busy(self) -> tuple[z3.BoolRef, dict[Field, object]]:
        """TDX_OPERAND_BUSY, then tdx_no_vcpus_enter_start(): only while a vCPU is in the
        TD (and so not on the retry, when none can be)."""
        guard = z3.And(self.sept.td.any_in_guest(), z3.Not(self.sept.wait_for_sept_zap.var))
        return guard, {self.sept.wait_for_sept_zap: True, **self.sept.td.kick()}

    def _then(self, step: str) -> dict[Field, object]:
        """The SEAMCALL is done: tdx_no_vcpus_enter_stop() if it was a retry, and go on."""
        return {self.step: ZAP_STEP.code(step), self.sept.wait_for_sept_zap: False}

    def define(self, b: ModelBuilder) -> None:
        for g in range(self.sizes.gfns):
            b.action(self.tdh_mem_range_block, MODULE, gfn=g)
            b.action(self.tdh_mem_range_block_busy, MODULE, gfn=g)
            b.action(self.tdh_mem_range_block_error, MODULE, gfn=g)
            b.action(self.tdh_mem_page_remove, MODULE, gfn=g)
            b.action(self.tdh_mem_page_remove_busy, MODULE, gfn=g)
            b.action(self.tdh_mem_page_remove_error, MODULE, gfn=g)
        if self.track_guard:
            b.action(self.tdh_mem_track, MODULE)
            b.action(self.tdh_mem_track_busy, MODULE)
            b.action(self.kvm_make_all_cpus_request, ACTOR)
        b.action(self.tdp_mmu_zap_leafs, ACTOR)

    # -- TDH.MEM.RANGE.BLOCK --------------------------------------------------------

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block(self, gfn: int) -> Step:
        """tdx_sept_zap_private_spte() -> tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK succeeds on a PENDING or
        MAPPED leaf, which becomes blocked at the current TD epoch (the hardware no
        longer walks it; TLBs may still hold it)."""
        s = self.sept.sept_4k[gfn].var
        guard = z3.And(self._at("BLOCK", gfn), z3.Or(s == SEPT_4K.PENDING, s == SEPT_4K.MAPPED))
        nxt = "TRACK" if self.track_guard else "REMOVE"
        effect = {
            self.sept.sept_4k[gfn]: z3.If(s == SEPT_4K.MAPPED, SEPT_4K.BLOCKED, SEPT_4K.PENDING_BLOCKED),
            self.sept.bepoch[gfn]: BLOCK_AGE.CURRENT,
            **self._then(nxt),
        }
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_busy(self, gfn: int) -> Step:
        """tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK takes the SEPT tree exclusively and returns
        TDX_OPERAND_BUSY against a vCPU in the TD; tdx_sept_zap_private_spte() calls
        tdx_no_vcpus_enter_start() (wait_for_sept_zap, kick) and retries once."""
        busy, effect = self._busy()
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_OPERAND_BUSY; tdx_no_vcpus_enter_start()",
                    z3.And(self._at("BLOCK", gfn), busy), effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_error(self, gfn: int) -> Step:
        """tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK on an entry that is no present leaf fails
        (TDX_EPT_ENTRY_STATE_INCORRECT); tdx_sept_zap_private_spte() KVM_BUG_ON()s and the
        zap goes on to the next leaf."""
        s = self.sept.sept_4k[gfn].var
        guard = z3.And(self._at("BLOCK", gfn), s != SEPT_4K.PENDING, s != SEPT_4K.MAPPED)
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    guard, {**self.sept.bug(), **self._then("NEXT")})

    # -- TDH.MEM.TRACK and the kick -------------------------------------------------

    @kernel("tdh_mem_track")
    def tdh_mem_track(self) -> Step:
        """tdx_track() -> tdh_mem_track(): TDH.MEM.TRACK advances the TD epoch. The module refuses while a
        vCPU still runs at the previous epoch; vCPUs in the TD now run at an old epoch,
        and a vCPU outside flushes its TLB when it next enters."""
        guard = z3.And(self._at("TRACK"), z3.Not(self.sept.td.any_in_previous_epoch()))
        effect = {**self.sept.age_blocked_entries(), **self.sept.td.track(), **self._then("KICK")}
        return Step("TDH.MEM.TRACK -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_track")
    def tdh_mem_track_busy(self) -> Step:
        """tdh_mem_track(): TDH.MEM.TRACK returns TDX_OPERAND_BUSY against a vCPU entering the TD (the
        epoch lock); tdx_track() calls tdx_no_vcpus_enter_start() and retries once."""
        busy, effect = self._busy()
        return Step("TDH.MEM.TRACK -> TDX_OPERAND_BUSY; tdx_no_vcpus_enter_start()",
                    z3.And(self._at("TRACK"), busy), effect)

    @kernel("kvm_make_all_cpus_request")
    def kvm_make_all_cpus_request(self) -> Step:
        """tdx_track() ends with kvm_make_all_cpus_request(kvm, KVM_REQ_OUTSIDE_GUEST_MODE):
        every vCPU leaves the TD (and waits for the request to be seen)."""
        return Step("kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)", self._at("KICK"),
                    {**self.sept.td.kick(), self.step: ZAP_STEP.REMOVE})

    # -- TDH.MEM.PAGE.REMOVE --------------------------------------------------------

    def _discards(self) -> z3.BoolRef:
        """The zap is one userspace asked for on this range (a conversion or a punch-hole),
        so the guest's data there is meant to go."""
        return self.ioctl.step.var != IOCTL_STEP.SLOT_ZAP

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove(self, gfn: int) -> Step:
        """tdx_sept_drop_private_spte() -> tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE succeeds on a blocked leaf
        whose blocking epoch is tracked (is_tlb_tracked()); then TDH.PHYMEM.PAGE.WBINVD,
        tdx_clear_page() and tdx_unpin() - the page's contents are gone."""
        guard = z3.And(self._at("REMOVE", gfn), self.sept.blocked(gfn), self.sept.tracked(gfn))
        accepted = self.sept.td.discard(gfn)
        effect: dict[Field, object] = {
            self.sept.sept_4k[gfn]: SEPT_4K.FREE,
            self.sept.bepoch[gfn]: BLOCK_AGE.CURRENT,
            **self.gmem.unpin(gfn),
            **self._then("NEXT"),
        }
        for f, value in accepted.items():
            effect[f] = z3.If(self._discards(), value, f.var)  # type: ignore[arg-type]
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_SUCCESS; tdx_unpin()", guard, effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_busy(self, gfn: int) -> Step:
        """tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE returns TDX_OPERAND_BUSY against a vCPU in the TD;
        tdx_sept_drop_private_spte() calls tdx_no_vcpus_enter_start() and retries once."""
        busy, effect = self._busy()
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_OPERAND_BUSY; tdx_no_vcpus_enter_start()",
                    z3.And(self._at("REMOVE", gfn), busy), effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_error(self, gfn: int) -> Step:
        """tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE fails: the entry is not blocked (TDX_GPA_RANGE_NOT_BLOCKED)
        or its blocking epoch is not tracked yet (TDX_TLB_TRACKING_NOT_DONE);
        tdx_sept_drop_private_spte() KVM_BUG_ON()s and the page stays pinned (leaked)."""
        bad = z3.Or(z3.Not(self.sept.blocked(gfn)), z3.Not(self.sept.tracked(gfn)))
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_TLB_TRACKING_NOT_DONE; KVM_BUG_ON",
                    z3.And(self._at("REMOVE", gfn), bad), {**self.sept.bug(), **self._then("NEXT")})

    # -- the next leaf --------------------------------------------------------------

    @kernel("tdp_mmu_zap_leafs")
    def tdp_mmu_zap_leafs(self) -> Step:
        """tdp_mmu_zap_leafs() moves to the next present mirror leaf of the range and
        writes it non-present (tdp_mmu_iter_set_spte), or, at the end of the range, the
        ioctl thread flushes and drops mmu_lock and goes on with its operation."""
        gfns = list(range(self.sizes.gfns))
        found, which, effect = self._first_leaf(gfns, self.gfn.var, self.end.var)
        effect |= {
            self.step: z3.If(found, ZAP_STEP.BLOCK, ZAP_STEP.IDLE),
            self.gfn: z3.If(found, which, 0),
            self.end: z3.If(found, self.end.var, 0),
            self.ioctl.step: z3.If(found, self.ioctl.step.var, self.ioctl.after_zap()),
        }
        return Step("tdp_mmu_zap_leafs(): next leaf, or write_unlock(&kvm->mmu_lock)", self._at("NEXT"), effect)
