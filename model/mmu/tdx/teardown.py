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
tdx_no_vcpus_enter_stop(); any other error is KVM_BUG_ON. Since 6.19 (variant
`tdx.busy_retry`) the three steps are folded into tdx_sept_remove_private_spte() and the
same retry is tdh_do_no_vcpus(), with TDX_BUG_ON(): the steps are the same, only the
lines name the kernel's functions.

The ioctl thread (a conversion, a punch-hole, a memslot update) holds the write lock
from the step that starts the tear-down to the step that finishes it; the SEAMCALL
results are the TDX module's steps. Left out: TDH.PHYMEM.PAGE.WBINVD failing, the
premap path before the TD is finalized, HKID release.

With huge pages the same machine runs the other 2M-level operations that need a blocked
and tracked entry (RANGE.BLOCK at 2M, TRACK, kick, then the operation): REMOVE of a 2M
leaf, DEMOTE (tdx_sept_split_private_spt(), for kvm_split_cross_boundary_leafs() and for
an ACCEPT at 4K) and PROMOTE (merge of a full 4K table, after Isaku Yamahata's
tdp_mmu_merge_private_spt()) with RANGE.UNBLOCK when it fails. Its holder is the ioctl
thread or a vCPU with mmu_lock held for write, or, without guard `accept-level-write-lock`,
a vCPU splitting under the read lock, whose BUSY results cannot be retried safely.
"""

from __future__ import annotations

import z3

from model.lang import EnumDomain, Family, Field, IntDomain, ModelBuilder, Step, Variant, VariantValue, choose, kernel

from ..set_memory_attributes import ACTOR, ZAP_YIELD, SetMemoryAttributes, ZapThread
from ..tdp import Root
from ..values import BLOCK_AGE, SEPT_4K, SPTE_2M, SPTE_4K
from .gmem import GuestMemfd
from .sept import MODULE, ExternalSept

BUSY_RETRY = Variant("busy_retry", "how a tear-down SEAMCALL that returns TDX_OPERAND_BUSY is retried once, "
                     "after every vCPU is kicked out of the TD (the same steps; the kernel's names differ)", (
    VariantValue("tdx_no_vcpus_enter", "v6.16",
                 "arch/x86/kvm/vmx/tdx.c at v6.16: tdx_no_vcpus_enter_start() / _stop() around the retry "
                 "in tdx_sept_zap_private_spte(), tdx_track() and tdx_sept_drop_private_spte()",
                 "tdx_no_vcpus_enter_start() sets wait_for_sept_zap and kicks; _stop() clears it"),
    VariantValue("tdh_do_no_vcpus", "v6.19",
                 "3d626ce5a8cc, 14c9938619be (tdh_do_no_vcpus(), the folded tdx_sept_remove_private_spte()); "
                 "applied <176278827443.918905.17609380057567446021.b4-ty@google.com>",
                 "tdh_do_no_vcpus() wraps BLOCK, TRACK and REMOVE, folded into tdx_sept_remove_private_spte()"),
))
BUSY_TEXT = {"tdx_no_vcpus_enter": "tdx_no_vcpus_enter_start()", "tdh_do_no_vcpus": "tdh_do_no_vcpus(): kick, retry"}

ZAP_STEP = EnumDomain("sept_zap_step", ["IDLE", "BLOCK", "TRACK", "KICK", "REMOVE", "NEXT"])
# with huge pages: the operation after the kick, the unblock of a failed one, and the
# result a vCPU holder picks up
ZAP_STEP_HUGE = EnumDomain(
    "sept_zap_step", [*ZAP_STEP.members, "DEMOTE", "PROMOTE", "UNBLOCK", "DONE", "FAILED"]
)
# what the machine is doing to the entry at sept_zap.gfn (huge pages only)
SEPT_OP = EnumDomain("sept_op", ["REMOVE_4K", "REMOVE_2M", "DEMOTE", "PROMOTE"])
# the SEAMCALL sequence of each operation, once its mirror write is done: the machine's
# steps in order (KICK is kvm_make_all_cpus_request() after TDH.MEM.TRACK)
SEAMCALLS = {
    "REMOVE_4K": ("BLOCK", "TRACK", "KICK", "REMOVE"),  # tdx_sept_remove_private_spte()
    "REMOVE_2M": ("BLOCK", "TRACK", "KICK", "REMOVE"),  # the same at 2M
    "DEMOTE": ("BLOCK", "TRACK", "KICK", "DEMOTE"),  # tdx_sept_split_private_spt()
    "PROMOTE": ("BLOCK", "TRACK", "KICK", "PROMOTE"),  # tdp_mmu_merge_private_spt()
}
AFTER_KICK = {op: steps[steps.index("KICK") + 1] for op, steps in SEAMCALLS.items()}


class SeptTeardown:
    def __init__(self, b: ModelBuilder, mirror: Root, sept: ExternalSept, gmem: GuestMemfd,
                 dirty: Family, busy_retry: str) -> None:
        self.mirror, self.sept, self.gmem, self.dirty = mirror, sept, gmem, dirty
        self.busy_text = BUSY_TEXT[busy_retry]  # the kernel's name for the kick-and-retry
        self.sizes = mirror.sizes
        self.huge = sept.huge
        n = self.sizes.gfns
        names = {g: f"g{g}" for g in range(n + 1)}
        self.steps = ZAP_STEP_HUGE if self.huge else ZAP_STEP
        self.step: Field = b.field("sept_zap.step", self.steps, "IDLE", "where the tear-down of a leaf is")
        self.gfn: Field = b.field(
            "sept_zap.gfn", IntDomain(0, n, names), 0,
            "the entry being torn down (a 2M entry by its first GFN); at NEXT, the first GFN "
            "the iterator has not visited",
        )
        self.end: Field = b.field("sept_zap.end", IntDomain(0, n, names), 0, "the end of the range")
        self.op: Field | None = None
        if self.huge:
            self.op = b.field("sept_zap.op", SEPT_OP, "REMOVE_4K", "the operation on the entry")
        self.track_guard = b.guard(
            "track-before-remove",
            "between TDH.MEM.RANGE.BLOCK and TDH.MEM.PAGE.REMOVE, tdx_track() runs "
            "TDH.MEM.TRACK and kicks every vCPU out of the TD",
            "tdx_track() in arch/x86/kvm/vmx/tdx.c; Chen Yu's report in the v19 review "
            "(ZlbftscsqGQjWZqj@chenyu5-mobl2): TDX_TLB_TRACKING_NOT_DONE",
        )
        # set by the huge-page component: the ioctl zaps that split boundary-crossing huge
        # leaves first (kvm_split_cross_boundary_leafs()), and which vCPU splits under the
        # read lock
        self.split_in: tuple[str, ...] = ()
        self.shared_holder: z3.BoolRef = z3.BoolVal(False)

    def bind(self, ioctl: SetMemoryAttributes) -> None:
        self.ioctl = ioctl
        self.threads: list[ZapThread] = []
        self.owner: dict[str, ZapThread] = {}  # who runs the zap of each zap step
        self.add_thread(ioctl)

    def add_thread(self, thread: ZapThread) -> None:
        """A thread whose zaps this machine runs; its zap steps are now its own (a
        fallocate() thread takes the punch-hole's from the ioctl thread)."""
        self.threads.append(thread)
        self.owner |= {step: thread for step in thread.zap_after}

    def zappers(self) -> list[ZapThread]:
        """The threads that own a zap step (one zaps at a time: each holds the write lock)."""
        return [t for t in self.threads if any(self.owner[s] is t for s in t.zap_after)]

    # -- helpers --------------------------------------------------------------------

    def _leaf(self, g: int) -> z3.BoolRef:
        return z3.And(self.mirror.top(g).var == SPTE_2M.NONLEAF, self.mirror.spte_4k[g].var == SPTE_4K.LEAF)

    def _clear(self, g: int) -> dict[Field, object]:
        """tdp_mmu_iter_set_spte(SHADOW_NONPRESENT_VALUE) of gfn g's mirror leaf."""
        return {self.mirror.spte_4k[g]: SPTE_4K.NONPRESENT, self.dirty[g]: False}

    def at(self, step: str, gfn: int | None = None) -> z3.BoolRef:
        at = self.step.var == self.steps.code(step)
        return at if gfn is None else z3.And(at, self.gfn.var == gfn)

    def doing(self, *ops: str) -> z3.BoolRef:
        if self.op is None:
            return z3.BoolVal("REMOVE_4K" in ops)
        return z3.Or(*[self.op.var == SEPT_OP.code(o) for o in ops])

    def _plan(self, lo: z3.ArithRef | int, end: z3.ArithRef | int, zap: str | ZapThread
              ) -> tuple[z3.BoolRef, dict[Field, object]]:
        """What tdp_mmu_zap_leafs() does next from GFN `lo` on: the first entry, in
        iterator order, that needs work, from this table (huge pages add the 2M rows):

            entry          needs work when                          operation (SEAMCALLS)
            2M huge leaf   it crosses the range's boundary, and     DEMOTE  (kvm_split_cross_boundary_leafs())
                           the zap splits first (`split_in`)
            2M huge leaf   it lies inside [lo, end), or crosses     REMOVE_2M (whole, at its first GFN)
                           the boundary of a zap that does not split
            4K leaf g      lo <= g < end                            REMOVE_4K

        `zap` is the zap step the zap is for, or the thread whose zap it is (at its step).
        Returns whether there is anything to do, and the effect of starting it (the mirror
        write and the machine's fields)."""
        splits = self._splits(zap)
        demotions = [] if splits is False else [
            (crosses if splits is True else z3.And(splits, crosses), base, "DEMOTE")
            for crosses, base in self.crossing(lo, end)]
        return self._first([*demotions, *self._removals(lo, end)], end)

    def _splits(self, zap: str | ZapThread) -> bool | z3.BoolRef:
        """Whether the zap of a zap step, or of a thread at its own, splits crossing leaves
        first: a constant when it is known, else a term of the thread's step."""
        if isinstance(zap, str):
            return zap in self.split_in
        own = [s for s in zap.zap_after if self.owner[s] is zap]
        splitting = [s for s in own if s in self.split_in]
        if len(splitting) == len(own):
            return True
        if not splitting:
            return False
        return zap.at(*splitting)

    def crossing(self, lo: z3.ArithRef | int, end: z3.ArithRef | int) -> list[tuple[z3.BoolRef, int]]:
        """The huge mirror leaves that cross a boundary of [lo, end), by their first GFN:
        what must be split before the range is zapped, so that only the range is removed."""
        if not self.huge:
            return []
        p = self.sizes.pages_per_huge
        return [(z3.And(self.mirror.huge_leaf(r), _lt(base, end), _lt(lo, base + p),
                        z3.Or(_lt(base, lo), _lt(end, base + p))), base)
                for r, base in enumerate(self.sizes.region_bases())]

    def _removals(self, lo: z3.ArithRef | int, end: z3.ArithRef | int) -> list[tuple[z3.BoolRef, int, str]]:
        """The present mirror leaves of [lo, end), region by region: a huge one whole."""
        p = self.sizes.pages_per_huge
        out: list[tuple[z3.BoolRef, int, str]] = []
        for r, base in enumerate(self.sizes.region_bases()):
            if self.huge:
                out.append((z3.And(self.mirror.huge_leaf(r), _lt(base, end), _lt(lo, base + p)), base, "REMOVE_2M"))
            out += [(z3.And(self._leaf(g), _le(lo, g), _lt(g, end)), g, "REMOVE_4K") for g in range(base, base + p)]
        return out

    def _first(self, candidates: list[tuple[z3.BoolRef, int, str]], end: z3.ArithRef | int
               ) -> tuple[z3.BoolRef, dict[Field, object]]:
        """Start the first eligible (eligible, gfn, operation) of `candidates`."""
        taken: list[z3.BoolRef] = []
        before: z3.BoolRef = z3.BoolVal(False)
        for eligible, _, _ in candidates:
            taken.append(z3.And(eligible, z3.Not(before)))
            before = z3.Or(before, eligible)
        found = before
        which: z3.ArithRef = z3.IntVal(0)
        op: z3.ArithRef = SEPT_OP.REMOVE_4K
        for (_, g, o), t in reversed(list(zip(candidates, taken, strict=True))):
            which = z3.If(t, g, which)
            op = z3.If(t, SEPT_OP.code(o), op)
        effect: dict[Field, object] = {}
        for (_, g, o), t in zip(candidates, taken, strict=True):
            writes = self._clear(g) if o == "REMOVE_4K" else self._start_2m(self.sizes.region_of(g), o)
            for f, value in writes.items():
                effect[f] = z3.If(t, value, effect.get(f, f.var))  # type: ignore[arg-type]
        effect |= {
            self.step: z3.If(found, self.steps.BLOCK, self.steps.IDLE),
            self.gfn: z3.If(found, which, 0),
            self.end: z3.If(found, end, 0),
        }
        if self.op is not None:
            effect[self.op] = z3.If(found, op, SEPT_OP.REMOVE_4K)
        return found, effect

    def _start_2m(self, region: int, op: str) -> dict[Field, object]:
        """The mirror write that starts a 2M operation under the write lock: a huge leaf
        zapped is written non-present; a huge leaf split becomes a non-leaf whose 4K table
        maps the same pages (tdp_mmu_split_huge_page(), then the split_external_spt hook)."""
        if op == "REMOVE_2M":
            return {self.mirror.spte_2m[region]: SPTE_2M.NONPRESENT}
        return self.mirror.split_huge_page(region)

    def start(self, start: int, end: int, zap_step: str) -> dict[Field, object]:
        """The effect, inside the step that takes the write lock, of zapping the mirror
        leaves in [start, end): start on the first one (or the split before it), or
        carry on at once if there is none."""
        found, effect = self._plan(start, end, zap_step)
        t = self.owner[zap_step]
        effect[t.step] = z3.If(found, t.steps.code(zap_step), t.steps.code(t.zap_after[zap_step]))
        return effect

    def begin(self, region: int, op: str) -> dict[Field, object]:
        """A vCPU holding the write lock (or, for a split without guard
        `accept-level-write-lock`, the read lock) starts a 2M operation on the region."""
        assert self.op is not None
        return {
            self.step: self.steps.BLOCK,
            self.gfn: self.sizes.region_bases()[region],
            self.end: 0,
            self.op: SEPT_OP.code(op),
        }

    def release(self) -> dict[Field, object]:
        """A holder has picked up the machine's result (DONE or FAILED): the machine is free."""
        assert self.op is not None
        return {self.step: self.steps.IDLE, self.gfn: 0, self.op: SEPT_OP.REMOVE_4K}

    def busy(self) -> tuple[z3.BoolRef, dict[Field, object]]:
        """TDX_OPERAND_BUSY, then tdx_no_vcpus_enter_start(): only while a vCPU is in the
        TD (and so not on the retry, when none can be)."""
        guard = z3.And(self.sept.td.any_in_guest(), z3.Not(self.sept.wait_for_sept_zap.var))
        return guard, {self.sept.wait_for_sept_zap: True, **self.sept.td.kick()}

    def then(self, step: str, cursor: z3.ArithRef | int | None = None) -> dict[Field, object]:
        """The SEAMCALL is done: tdx_no_vcpus_enter_stop() if it was a retry, and go on
        (at NEXT, the iterator continues from `cursor`)."""
        out: dict[Field, object] = {self.step: self.steps.code(step), self.sept.wait_for_sept_zap: False}
        if cursor is not None:
            out[self.gfn] = cursor
        return out

    def finish(self, ok: bool) -> dict[Field, object]:
        """A 2M operation ended: the ioctl thread goes on with its zap from the start of its
        range; a vCPU holder picks up DONE or FAILED."""
        result = self.then("DONE" if ok else "FAILED")
        for t in self.zappers():
            found, plan = self._plan(t.start.var, self.end.var, t)
            plan[t.step] = z3.If(found, t.step.var, t.after_zap())
            plan[self.sept.wait_for_sept_zap] = False
            result = choose(t.zapping(), plan, result)
        return result

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
        if self.ioctl.zap_yielded is not None:
            b.action(self.tdp_mmu_iter_cond_resched, ACTOR)
            b.action(self.tdp_mmu_iter_cond_resched_requeue, ACTOR)
            b.action(self.tdp_mmu_iter_cond_resched_relock, ACTOR)

    # -- TDH.MEM.RANGE.BLOCK --------------------------------------------------------

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block(self, gfn: int) -> Step:
        """tdx_sept_zap_private_spte() -> tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK succeeds on a PENDING or
        MAPPED leaf, which becomes blocked at the current TD epoch (the hardware no
        longer walks it; TLBs may still hold it)."""
        s = self.sept.sept_4k[gfn].var
        guard = z3.And(self.at("BLOCK", gfn), self.doing("REMOVE_4K"), z3.Or(s == SEPT_4K.PENDING, s == SEPT_4K.MAPPED))
        nxt = "TRACK" if self.track_guard else "REMOVE"
        effect = {
            self.sept.sept_4k[gfn]: z3.If(s == SEPT_4K.MAPPED, SEPT_4K.BLOCKED, SEPT_4K.PENDING_BLOCKED),
            self.sept.bepoch[gfn]: BLOCK_AGE.CURRENT,
            **self.then(nxt),
        }
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_busy(self, gfn: int) -> Step:
        """tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK takes the SEPT tree exclusively and returns
        TDX_OPERAND_BUSY against a vCPU in the TD; tdx_sept_zap_private_spte() calls
        tdx_no_vcpus_enter_start() (wait_for_sept_zap, kick) and retries once."""
        busy, effect = self.busy()
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_OPERAND_BUSY; {self.busy_text}",
                    z3.And(self.at("BLOCK", gfn), self.doing("REMOVE_4K"), busy), effect)

    @kernel("tdh_mem_range_block")
    def tdh_mem_range_block_error(self, gfn: int) -> Step:
        """tdh_mem_range_block(): TDH.MEM.RANGE.BLOCK on an entry that is no present leaf fails
        (TDX_EPT_ENTRY_STATE_INCORRECT; with a 2M S-EPT leaf above,
        TDX_EPT_WALK_FAILED); tdx_sept_zap_private_spte() KVM_BUG_ON()s and the zap goes
        on to the next leaf."""
        s = self.sept.sept_4k[gfn].var
        guard = z3.And(self.at("BLOCK", gfn), self.doing("REMOVE_4K"), s != SEPT_4K.PENDING, s != SEPT_4K.MAPPED)
        return Step(f"TDH.MEM.RANGE.BLOCK(g{gfn}) -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    guard, {**self.sept.bug(), **self.then("NEXT", gfn + 1)})

    # -- TDH.MEM.TRACK and the kick -------------------------------------------------

    @kernel("tdh_mem_track")
    def tdh_mem_track(self) -> Step:
        """tdx_track() -> tdh_mem_track(): TDH.MEM.TRACK advances the TD epoch. The module refuses while a
        vCPU still runs at the previous epoch; vCPUs in the TD now run at an old epoch,
        and a vCPU outside flushes its TLB when it next enters."""
        guard = z3.And(self.at("TRACK"), z3.Not(self.sept.td.any_in_previous_epoch()))
        effect = {**self.sept.age_blocked_entries(), **self.sept.td.track(), **self.then("KICK")}
        return Step("TDH.MEM.TRACK -> TDX_SUCCESS", guard, effect)

    @kernel("tdh_mem_track")
    def tdh_mem_track_busy(self) -> Step:
        """tdh_mem_track(): TDH.MEM.TRACK returns TDX_OPERAND_BUSY against a vCPU entering the TD (the
        epoch lock); tdx_track() calls tdx_no_vcpus_enter_start() and retries once. A vCPU
        splitting under the read lock cannot: it unblocks the entry instead."""
        busy, effect = self.busy()
        text = f"TDH.MEM.TRACK -> TDX_OPERAND_BUSY; {self.busy_text}"
        if self.huge:
            effect = {f: z3.If(self.shared_holder, f.var, v) for f, v in effect.items()}  # type: ignore[misc]
            effect[self.step] = z3.If(self.shared_holder, self.steps.UNBLOCK, self.step.var)
            busy = z3.Or(busy, z3.And(self.shared_holder, self.sept.td.any_in_guest()))
            text = "TDH.MEM.TRACK -> TDX_OPERAND_BUSY"  # retried, or undone under the read lock
        return Step(text, z3.And(self.at("TRACK"), busy), effect)

    @kernel("kvm_make_all_cpus_request")
    def kvm_make_all_cpus_request(self) -> Step:
        """tdx_track() ends with kvm_make_all_cpus_request(kvm, KVM_REQ_OUTSIDE_GUEST_MODE):
        every vCPU leaves the TD (and waits for the request to be seen)."""
        nxt: z3.ExprRef = self.steps.REMOVE
        if self.op is not None:
            for op, step in AFTER_KICK.items():
                nxt = z3.If(self.op.var == SEPT_OP.code(op), self.steps.code(step), nxt)
        return Step("kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)", self.at("KICK"),
                    {**self.sept.td.kick(), self.step: nxt})

    # -- TDH.MEM.PAGE.REMOVE --------------------------------------------------------

    def discard(self, gfn: int) -> dict[Field, object]:
        """The guest's view of gfn after its page is removed, if userspace asked for it: the
        zapping thread's zap is a conversion or a punch-hole whose range holds gfn."""
        inside = z3.Or(*[z3.And(t.zapping(), t.discards(gfn), t.start.var <= gfn, t.end.var > gfn)
                         for t in self.zappers()])
        return {f: z3.If(inside, value, f.var) for f, value in self.sept.td.discard(gfn).items()}  # type: ignore[misc]

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove(self, gfn: int) -> Step:
        """tdx_sept_drop_private_spte() -> tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE succeeds on a blocked leaf
        whose blocking epoch is tracked (is_tlb_tracked()); then TDH.PHYMEM.PAGE.WBINVD,
        tdx_clear_page() and tdx_unpin() - the page's contents are gone."""
        guard = z3.And(self.at("REMOVE", gfn), self.doing("REMOVE_4K"), self.sept.blocked(gfn), self.sept.tracked(gfn))
        effect: dict[Field, object] = {
            self.sept.sept_4k[gfn]: SEPT_4K.FREE,
            self.sept.bepoch[gfn]: BLOCK_AGE.CURRENT,
            **self.gmem.unpin(gfn),
            **self.then("NEXT", gfn + 1),
            **self.discard(gfn),
        }
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_SUCCESS{self.gmem.unpin_text}", guard, effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_busy(self, gfn: int) -> Step:
        """tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE returns TDX_OPERAND_BUSY against a vCPU in the TD;
        tdx_sept_drop_private_spte() calls tdx_no_vcpus_enter_start() and retries once."""
        busy, effect = self.busy()
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_OPERAND_BUSY; {self.busy_text}",
                    z3.And(self.at("REMOVE", gfn), self.doing("REMOVE_4K"), busy), effect)

    @kernel("tdh_mem_page_remove")
    def tdh_mem_page_remove_error(self, gfn: int) -> Step:
        """tdh_mem_page_remove(): TDH.MEM.PAGE.REMOVE fails: the entry is not blocked (TDX_GPA_RANGE_NOT_BLOCKED)
        or its blocking epoch is not tracked yet (TDX_TLB_TRACKING_NOT_DONE);
        tdx_sept_drop_private_spte() KVM_BUG_ON()s and the page stays pinned (leaked)."""
        bad = z3.Or(z3.Not(self.sept.blocked(gfn)), z3.Not(self.sept.tracked(gfn)))
        return Step(f"TDH.MEM.PAGE.REMOVE(g{gfn}) -> TDX_TLB_TRACKING_NOT_DONE; KVM_BUG_ON",
                    z3.And(self.at("REMOVE", gfn), self.doing("REMOVE_4K"), bad),
                    {**self.sept.bug(), **self.then("NEXT", gfn + 1)})

    # -- the next leaf --------------------------------------------------------------

    @kernel("tdp_mmu_zap_leafs")
    def tdp_mmu_zap_leafs(self) -> Step:
        """tdp_mmu_zap_leafs() moves to the next present mirror leaf of the range and
        writes it non-present (tdp_mmu_iter_set_spte), or, at the end of the range, the
        ioctl thread flushes and drops mmu_lock and goes on with its operation."""
        effect: dict[Field, object] = {}
        for t in self.zappers():
            found, plan = self._plan(self.gfn.var, self.end.var, t)
            plan[t.step] = z3.If(found, t.step.var, t.after_zap())
            effect = choose(t.zapping(), plan, effect) if effect else plan
        guard = self.at("NEXT")
        if self.ioctl.zap_yielded is not None:  # forward progress: a yield may come again after this
            guard = z3.And(guard, self.ioctl.holds_zap_lock())
            effect[self.ioctl.zap_yielded] = ZAP_YIELD.NONE
        return Step("tdp_mmu_zap_leafs(): next leaf, or write_unlock(&kvm->mmu_lock)", guard, effect)

    @kernel("tdp_mmu_iter_cond_resched")
    def tdp_mmu_iter_cond_resched(self) -> Step:
        """Option zap_yields: between two SPTEs, tdp_mmu_zap_leafs() ->
        tdp_mmu_iter_cond_resched() finds the lock contended or a reschedule due: it flushes,
        leaves the RCU read side and drops mmu_lock (cond_resched_rwlock_write()); faults and
        other lock holders may run. It yields again only after the walk made progress
        ("Ensure forward progress has been made before yielding": iter->yielded_gfn).
        Left out: the TLB flush before it."""
        assert self.ioctl.zap_yielded is not None
        guard = z3.And(self.at("NEXT"), self.ioctl.zapping(), self.ioctl.zap_yielded.var == ZAP_YIELD.NONE)
        return Step("tdp_mmu_iter_cond_resched(): write_unlock(&kvm->mmu_lock)", guard,
                    {self.ioctl.zap_yielded: ZAP_YIELD.YIELDED})

    @kernel("tdp_mmu_iter_cond_resched")
    def tdp_mmu_iter_cond_resched_requeue(self) -> Step:
        """tdp_mmu_iter_cond_resched() -> cond_resched_rwlock_write(): back from
        cond_resched(), write_lock() queues for mmu_lock again; with the queued rwlock
        (option queued_rwlock) new readers now wait behind it, while readers that got in
        when it was dropped finish."""
        assert self.ioctl.zap_yielded is not None
        return Step("tdp_mmu_iter_cond_resched(): cond_resched(); write_lock() queued",
                    self.ioctl.zap_yielded.var == ZAP_YIELD.YIELDED, {self.ioctl.zap_yielded: ZAP_YIELD.QUEUED})

    @kernel("tdp_mmu_iter_cond_resched")
    def tdp_mmu_iter_cond_resched_relock(self) -> Step:
        """tdp_mmu_iter_cond_resched() takes mmu_lock for write again and sets iter->yielded:
        the walk restarts from the root at the GFN it had reached, so it sees whatever
        changed in between."""
        assert self.ioctl.zap_yielded is not None
        guard = z3.And(self.ioctl.zap_yielded.var == ZAP_YIELD.QUEUED, self.ioctl.lock.write_lockable())
        return Step("tdp_mmu_iter_cond_resched(): write_lock(&kvm->mmu_lock); iter->yielded", guard,
                    {self.ioctl.zap_yielded: ZAP_YIELD.RESUMED})


def _lt(a: z3.ArithRef | int, b: z3.ArithRef | int) -> z3.BoolRef:
    if isinstance(a, int) and isinstance(b, int):
        return z3.BoolVal(a < b)
    return a < b  # type: ignore[return-value]


def _le(a: z3.ArithRef | int, b: z3.ArithRef | int) -> z3.BoolRef:
    if isinstance(a, int) and isinstance(b, int):
        return z3.BoolVal(a <= b)
    return a <= b  # type: ignore[return-value]
