"""SEAMCALLs on 2M S-EPT entries: RANGE.BLOCK, PAGE.REMOVE, PAGE.DEMOTE, PAGE.PROMOTE, RANGE.UNBLOCK.

Kernel and module (TDX huge pages, Yan Zhao's RFC v2/v3; Isaku Yamahata's v6 13-14/16 for
promotion): tdx_sept_zap_private_spte() at 2M, tdx_sept_split_private_spt() ->
tdh_mem_page_demote(), tdp_mmu_merge_private_spt() -> tdh_mem_page_promote() and
tdh_mem_range_unblock(). They run inside the tear-down machine of teardown.py: the entry
is sept_zap.gfn (a region's first GFN), the operation sept_zap.op, and TDH.MEM.TRACK plus
the kick sit between RANGE.BLOCK and the operation.

The module's rules (TDX module source, tdh_mem_page_demote.c / tdh_mem_page_promote.c):
DEMOTE and PROMOTE need the entry blocked and its blocking epoch tracked, else
TDX_GPA_RANGE_NOT_BLOCKED / TDX_TLB_TRACKING_NOT_DONE; DEMOTE unblocks the entry and
copies its state (PENDING or MAPPED) into every child; PROMOTE needs every child present
and all PENDING or all MAPPED, else TDX_EPT_INVALID_PROMOTE_CONDITIONS, and leaves an
unblocked 2M leaf in that state. A holder with the write lock retries a BUSY once with
vCPUs kept out of the TD; a vCPU splitting under the read lock cannot, so it unblocks
(and a failed unblock leaves the entry blocked). Left out: TDX_INTERRUPTED_RESTARTABLE,
PAMT allocation, 1G.
"""

from __future__ import annotations

import z3

from model.lang import Field, ModelBuilder, Step, choose, kernel

from ..values import BLOCK_AGE, SEPT_2M, SEPT_4K, SPTE_2M, SPTE_4K
from .sept import MODULE
from .teardown import SEPT_OP, SeptTeardown

BLOCKED_FROM = {"PENDING": "PENDING_BLOCKED", "MAPPED": "BLOCKED", "NONLEAF": "NONLEAF_BLOCKED"}
# what a child of a demoted leaf, or a promoted leaf, is: the unblocked state
CHILD_OF = {"PENDING_BLOCKED": "PENDING", "BLOCKED": "MAPPED"}


class Sept2mOps:
    def __init__(self, teardown: SeptTeardown) -> None:
        self.z = teardown
        self.sept, self.mirror, self.gmem = teardown.sept, teardown.mirror, teardown.gmem
        self.sizes = teardown.sizes
        assert teardown.op is not None and self.sept.bepoch_2m is not None
        self.op: Field = teardown.op
        self.bepoch_2m = self.sept.bepoch_2m

    def define(self, b: ModelBuilder) -> None:
        for r in range(self.sizes.huge_pages):
            for call in (self.tdh_mem_range_block_2m, self.tdh_mem_range_block_2m_busy,
                         self.tdh_mem_range_block_2m_error, self.tdh_mem_page_remove_2m,
                         self.tdh_mem_page_remove_2m_busy, self.tdh_mem_page_remove_2m_error,
                         self.tdh_mem_page_demote, self.tdh_mem_page_demote_busy,
                         self.tdh_mem_page_demote_error, self.tdh_mem_page_promote,
                         self.tdh_mem_page_promote_invalid, self.tdh_mem_page_promote_busy,
                         self.tdh_mem_page_promote_error, self.tdh_mem_range_unblock,
                         self.tdh_mem_range_unblock_busy, self.tdh_mem_range_unblock_error):
                b.action(call, MODULE, region=r)

    # -- helpers --------------------------------------------------------------------

    def _base(self, region: int) -> int:
        return self.sizes.region_bases()[region]

    def _at(self, step: str, region: int, *ops: str) -> z3.BoolRef:
        return z3.And(self.z.at(step, self._base(region)), self.z.doing(*ops))

    def _label(self, region: int) -> str:
        return f"2M@{self.sizes.region_labels()[region]}"

    def _is(self, region: int, *states: str) -> z3.BoolRef:
        s = self.sept.sept_2m[region].var
        return z3.Or(*[s == SEPT_2M.code(x) for x in states])

    def _busy(self, then_shared: dict[Field, object]) -> tuple[z3.BoolRef, dict[Field, object]]:
        """TDX_OPERAND_BUSY: a write-lock holder retries once with vCPUs kept out of the TD;
        a vCPU splitting under the read lock takes `then_shared` instead."""
        busy, retry = self.z.busy()
        shared = self.z.shared_holder
        effect = choose(shared, then_shared, retry)
        guard = z3.Or(z3.And(z3.Not(shared), busy), z3.And(shared, self.sept.td.any_in_guest()))
        return guard, effect

    def _after_error(self, region: int) -> dict[Field, object]:
        """KVM_BUG_ON() and the operation ends: a zap goes on after the entry, a split or a
        merge fails."""
        after = self.z.then("NEXT", self._base(region) + self.sizes.pages_per_huge)
        failed = self.z.finish(False)
        return {**self.sept.bug(), **choose(self.op.var == SEPT_OP.REMOVE_2M, after, failed)}

    # -- TDH.MEM.RANGE.BLOCK at 2M --------------------------------------------------

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_2m(self, region: int) -> Step:
        """tdx_sept_zap_private_spte() -> tdh_mem_range_block() at 2M: TDH.MEM.RANGE.BLOCK succeeds on a 2M
        leaf (PENDING or MAPPED) or, before TDH.MEM.PAGE.PROMOTE, on a non-leaf; the entry
        is blocked at the current TD epoch."""
        s = self.sept.sept_2m[region]
        new: z3.ExprRef = s.var
        for old, blocked in BLOCKED_FROM.items():
            new = z3.If(s.var == SEPT_2M.code(old), SEPT_2M.code(blocked), new)
        guard = z3.And(self._at("BLOCK", region, "REMOVE_2M", "DEMOTE", "PROMOTE"), self._is(region, *BLOCKED_FROM))
        nxt: z3.ExprRef = self.z.steps.TRACK
        if not self.z.track_guard:
            nxt = z3.If(self.op.var == SEPT_OP.REMOVE_2M, self.z.steps.REMOVE,
                        z3.If(self.op.var == SEPT_OP.DEMOTE, self.z.steps.DEMOTE,
                              self.z.steps.PROMOTE))
        effect = {s: new, self.bepoch_2m[region]: BLOCK_AGE.CURRENT, self.z.step: nxt,
                  self.sept.wait_for_sept_zap: False}
        return Step(f"TDH.MEM.RANGE.BLOCK({self._label(region)}) -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_2m_busy(self, region: int) -> Step:
        """tdh_mem_range_block() at 2M returns TDX_OPERAND_BUSY against a vCPU in the TD: retried
        after tdx_no_vcpus_enter_start() under the write lock; a split under the read
        lock gives up (nothing is blocked yet)."""
        busy, effect = self._busy(self.z.then("FAILED"))
        return Step(f"TDH.MEM.RANGE.BLOCK({self._label(region)}) -> TDX_OPERAND_BUSY",
                    z3.And(self._at("BLOCK", region, "REMOVE_2M", "DEMOTE", "PROMOTE"), busy), effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_2m_error(self, region: int) -> Step:
        """tdh_mem_range_block() at 2M on an entry that is neither a present 2M leaf nor a
        non-leaf fails (TDX_EPT_ENTRY_STATE_INCORRECT): KVM_BUG_ON()."""
        guard = z3.And(self._at("BLOCK", region, "REMOVE_2M", "DEMOTE", "PROMOTE"),
                       z3.Not(self._is(region, *BLOCKED_FROM)))
        return Step(f"TDH.MEM.RANGE.BLOCK({self._label(region)}) -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    guard, self._after_error(region))

    # -- TDH.MEM.PAGE.REMOVE at 2M --------------------------------------------------

    def _removable(self, region: int) -> z3.BoolRef:
        return z3.And(self._is(region, "BLOCKED", "PENDING_BLOCKED"), self.sept.tracked_2m(region))

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_2m(self, region: int) -> Step:
        """tdx_sept_drop_private_spte() -> tdh_mem_page_remove() at 2M: TDH.MEM.PAGE.REMOVE of a blocked, tracked
        2M leaf; every page of the region is cleared and unpinned."""
        p = self.sizes.pages_per_huge
        effect: dict[Field, object] = {
            self.sept.sept_2m[region]: SEPT_2M.FREE,
            self.bepoch_2m[region]: BLOCK_AGE.CURRENT,
            **self.z.then("NEXT", self._base(region) + p),
        }
        for g in self.sizes.region_gfns(region):
            effect |= {**self.gmem.unpin(g), **self.z.discard(g)}
        return Step(f"TDH.MEM.PAGE.REMOVE({self._label(region)}) -> TDX_SUCCESS{self.gmem.unpin_text}",
                    z3.And(self._at("REMOVE", region, "REMOVE_2M"), self._removable(region)), effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_2m_busy(self, region: int) -> Step:
        """tdh_mem_page_remove() at 2M returns TDX_OPERAND_BUSY: retried once with vCPUs kept out."""
        busy, effect = self.z.busy()
        return Step(f"TDH.MEM.PAGE.REMOVE({self._label(region)}) -> TDX_OPERAND_BUSY",
                    z3.And(self._at("REMOVE", region, "REMOVE_2M"), busy), effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_2m_error(self, region: int) -> Step:
        """tdh_mem_page_remove() at 2M on an entry not blocked or not tracked fails
        (TDX_TLB_TRACKING_NOT_DONE): KVM_BUG_ON(), the pages stay pinned."""
        return Step(f"TDH.MEM.PAGE.REMOVE({self._label(region)}) -> TDX_TLB_TRACKING_NOT_DONE; KVM_BUG_ON",
                    z3.And(self._at("REMOVE", region, "REMOVE_2M"), z3.Not(self._removable(region))),
                    self._after_error(region))

    # -- TDH.MEM.PAGE.DEMOTE --------------------------------------------------------

    @kernel("tdh_mem_page_demote")
    def tdh_mem_page_demote(self, region: int) -> Step:
        """tdx_sept_split_private_spt() -> tdh_mem_page_demote(): TDH.MEM.PAGE.DEMOTE of a blocked, tracked 2M
        leaf: the entry becomes an unblocked non-leaf and every child a 4K leaf in the
        leaf's state ("No UNBLOCK is needed after a successful DEMOTE")."""
        s = self.sept.sept_2m[region].var
        child = z3.If(s == SEPT_2M.BLOCKED, SEPT_4K.MAPPED, SEPT_4K.PENDING)
        effect: dict[Field, object] = {
            self.sept.sept_2m[region]: SEPT_2M.NONLEAF,
            self.bepoch_2m[region]: BLOCK_AGE.CURRENT,
            **self.z.finish(True),
        }
        for g in self.sizes.region_gfns(region):
            effect |= {self.sept.sept_4k[g]: child, self.sept.bepoch[g]: BLOCK_AGE.CURRENT}
        return Step(f"TDH.MEM.PAGE.DEMOTE({self._label(region)}) -> TDX_SUCCESS",
                    z3.And(self._at("DEMOTE", region, "DEMOTE"), self._removable(region)), effect)

    @kernel("tdh_mem_page_demote")
    def tdh_mem_page_demote_busy(self, region: int) -> Step:
        """tdh_mem_page_demote() returns TDX_OPERAND_BUSY: retried with vCPUs kept out under
        the write lock; under the read lock the split must unblock the entry."""
        busy, effect = self._busy({self.z.step: self.z.steps.UNBLOCK})
        return Step(f"TDH.MEM.PAGE.DEMOTE({self._label(region)}) -> TDX_OPERAND_BUSY",
                    z3.And(self._at("DEMOTE", region, "DEMOTE"), busy), effect)

    @kernel("tdh_mem_page_demote")
    def tdh_mem_page_demote_error(self, region: int) -> Step:
        """tdh_mem_page_demote() on an entry that is not a blocked 2M leaf, or whose blocking epoch
        is not tracked, fails (TDX_GPA_RANGE_NOT_BLOCKED / TDX_TLB_TRACKING_NOT_DONE):
        KVM_BUG_ON()."""
        return Step(f"TDH.MEM.PAGE.DEMOTE({self._label(region)}) -> TDX_TLB_TRACKING_NOT_DONE; KVM_BUG_ON",
                    z3.And(self._at("DEMOTE", region, "DEMOTE"), z3.Not(self._removable(region))),
                    self._after_error(region))

    # -- TDH.MEM.PAGE.PROMOTE -------------------------------------------------------

    def _children(self, region: int, state: str) -> z3.BoolRef:
        return z3.And(*[self.sept.sept_4k[g].var == SEPT_4K.code(state) for g in self.sizes.region_gfns(region)])

    def _promotable(self, region: int) -> z3.BoolRef:
        return z3.And(self._is(region, "NONLEAF_BLOCKED"), self.sept.tracked_2m(region))

    @kernel("tdh_mem_page_promote")
    def tdh_mem_page_promote(self, region: int) -> Step:
        """tdp_mmu_merge_private_spt() -> tdh_mem_page_promote(): TDH.MEM.PAGE.PROMOTE of a blocked, tracked
        non-leaf whose children are all present, contiguous and all PENDING or all MAPPED:
        the entry becomes an unblocked 2M leaf in their state, the 4K S-EPT page is freed,
        and KVM writes the huge mirror leaf in place of its 4K table."""
        pending = self._children(region, "PENDING")
        guard = z3.And(self._at("PROMOTE", region, "PROMOTE"), self._promotable(region),
                       z3.Or(pending, self._children(region, "MAPPED")))
        effect: dict[Field, object] = {  # the holder is a vCPU: _finish() plans no zap here
            **self.z.finish(True),
            self.sept.sept_2m[region]: z3.If(pending, SEPT_2M.PENDING, SEPT_2M.MAPPED),
            self.bepoch_2m[region]: BLOCK_AGE.CURRENT,
            self.mirror.spte_2m[region]: SPTE_2M.LEAF,
        }
        for g in self.sizes.region_gfns(region):
            effect |= {self.sept.sept_4k[g]: SEPT_4K.FREE, self.mirror.spte_4k[g]: SPTE_4K.NONPRESENT,
                       self.z.dirty[g]: False}
        return Step(f"TDH.MEM.PAGE.PROMOTE({self._label(region)}) -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_page_promote")
    def tdh_mem_page_promote_invalid(self, region: int) -> Step:
        """tdh_mem_page_promote() on a blocked, tracked non-leaf whose children are not all present
        or not all in one state fails with TDX_EPT_INVALID_PROMOTE_CONDITIONS ("Some
        pages are accepted, some pending"): KVM expects this and unblocks the entry."""
        guard = z3.And(self._at("PROMOTE", region, "PROMOTE"), self._promotable(region),
                       z3.Not(self._children(region, "PENDING")), z3.Not(self._children(region, "MAPPED")))
        return Step(f"TDH.MEM.PAGE.PROMOTE({self._label(region)}) -> TDX_EPT_INVALID_PROMOTE_CONDITIONS",
                    guard, self.z.then("UNBLOCK"))

    @kernel("tdh_mem_page_promote")
    def tdh_mem_page_promote_busy(self, region: int) -> Step:
        """tdh_mem_page_promote() returns TDX_OPERAND_BUSY: retried once with vCPUs kept out."""
        busy, effect = self.z.busy()
        return Step(f"TDH.MEM.PAGE.PROMOTE({self._label(region)}) -> TDX_OPERAND_BUSY",
                    z3.And(self._at("PROMOTE", region, "PROMOTE"), busy), effect)

    @kernel("tdh_mem_page_promote")
    def tdh_mem_page_promote_error(self, region: int) -> Step:
        """tdh_mem_page_promote() on an entry that is not a blocked non-leaf, or whose blocking epoch
        is not tracked, fails (TDX_GPA_RANGE_NOT_BLOCKED / TDX_TLB_TRACKING_NOT_DONE):
        KVM_BUG_ON()."""
        return Step(f"TDH.MEM.PAGE.PROMOTE({self._label(region)}) -> TDX_TLB_TRACKING_NOT_DONE; KVM_BUG_ON",
                    z3.And(self._at("PROMOTE", region, "PROMOTE"), z3.Not(self._promotable(region))),
                    self._after_error(region))

    # -- TDH.MEM.RANGE.UNBLOCK ------------------------------------------------------

    def _unblockable(self, region: int) -> z3.BoolRef:
        return z3.And(self.sept.blocked_2m(region), self.sept.tracked_2m(region))

    @kernel("tdh_mem_range_unblock")
    def tdh_mem_range_unblock(self, region: int) -> Step:
        """tdh_mem_range_unblock(): TDH.MEM.RANGE.UNBLOCK of a blocked, tracked 2M entry after a failed
        PROMOTE (or a failed split under the read lock): the entry is as before the
        block, and the operation has failed."""
        s = self.sept.sept_2m[region]
        old: z3.ExprRef = SEPT_2M.NONLEAF
        for blocked, child in CHILD_OF.items():
            old = z3.If(s.var == SEPT_2M.code(blocked), SEPT_2M.code(child), old)
        effect = {s: old, self.bepoch_2m[region]: BLOCK_AGE.CURRENT, **self.z.finish(False)}
        return Step(f"TDH.MEM.RANGE.UNBLOCK({self._label(region)}) -> TDX_SUCCESS",
                    z3.And(self._at("UNBLOCK", region, "DEMOTE", "PROMOTE"), self._unblockable(region)), effect)

    @kernel("tdh_mem_range_unblock")
    def tdh_mem_range_unblock_busy(self, region: int) -> Step:
        """tdh_mem_range_unblock() returns TDX_OPERAND_BUSY: retried once under the write lock; a
        split under the read lock gives up and the entry stays blocked."""
        busy, effect = self._busy(self.z.finish(False))
        return Step(f"TDH.MEM.RANGE.UNBLOCK({self._label(region)}) -> TDX_OPERAND_BUSY",
                    z3.And(self._at("UNBLOCK", region, "DEMOTE", "PROMOTE"), busy), effect)

    @kernel("tdh_mem_range_unblock")
    def tdh_mem_range_unblock_error(self, region: int) -> Step:
        """tdh_mem_range_unblock() before the blocking epoch is tracked fails with
        TDX_TLB_TRACKING_NOT_DONE: under the read lock the split gives up and the entry
        stays blocked; under the write lock (where TRACK always ran first) KVM_BUG_ON()."""
        failed = self.z.finish(False)
        shared = self.z.shared_holder
        effect: dict[Field, object] = dict(failed)
        effect[self.sept.vm_bugged] = z3.Or(self.sept.vm_bugged.var, z3.Not(shared))
        return Step(f"TDH.MEM.RANGE.UNBLOCK({self._label(region)}) -> TDX_TLB_TRACKING_NOT_DONE",
                    z3.And(self._at("UNBLOCK", region, "DEMOTE", "PROMOTE"), z3.Not(self._unblockable(region))),
                    effect)
