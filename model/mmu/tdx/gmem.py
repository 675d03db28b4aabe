"""guest_memfd pages of a TD, their TDX pins, fallocate(PUNCH_HOLE) and memory failure.

Kernel: virt/kvm/guest_memfd.c (kvm_gmem_get_pfn, kvm_gmem_punch_hole,
kvm_gmem_error_folio, kvm_gmem_invalidate_begin/_end). Both invalidations run on one
thread: the ioctl thread, or with option [tdx] punch_hole_thread a fallocate() thread of
their own (FallocateThread), whose invalidation overlaps a per-VM conversion's.

Variant `tdx.pinning`: up to 6.18 TDX pins the page in tdx_sept_set_private_spte()
(get_page) and drops the pin in tdx_unpin() after TDH.MEM.PAGE.REMOVE; since 6.19
(ce7b5695397b) it takes no reference at all, so a truncation frees what guest_memfd
frees, even a page a failed REMOVE left in the S-EPT
(the commit accepts that once the VM is bugged).

Abstractions: each GFN has one private page. truncate_inode_pages_range() frees a page
only if TDX does not pin it; a pinned page stays (the model does not tell "still in the
file" from "truncated but pinned"). A later private fault allocates the GFN's page
again; that this is "the same page" is sound for the model's invariants because a page
freed while still mapped is caught in the state where it is freed.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3

from model.lang import BOOL, EnumDomain, Family, Field, IntDomain, ModelBuilder, Step, Variant, VariantValue, kernel

from ..invalidate import Invalidation
from ..locks import MmuLock
from ..set_memory_attributes import MirrorTeardown, PunchHole, SetMemoryAttributes, ZapThread
from ..sizes import Sizes
from ..values import LEVEL, PAGE

PINNING = Variant("pinning", "whether TDX holds a reference on a private page while the S-EPT maps it", (
    VariantValue("get_page-until-remove", "v6.16",
                 "arch/x86/kvm/vmx/tdx.c at v6.16: get_page() in tdx_sept_set_private_spte(), "
                 "tdx_unpin() after TDH.MEM.PAGE.REMOVE",
                 "pinned from TDH.MEM.PAGE.AUG to TDH.MEM.PAGE.REMOVE; a truncation skips a pinned page"),
    VariantValue("none", "v6.19",
                 "ce7b5695397b KVM: TDX: Drop superfluous page pinning in S-EPT management "
                 "<20251030200951.3402865-9-seanjc@google.com>",
                 "no reference: truncation frees what guest_memfd frees"),
))


FALLOCATE_STEP = EnumDomain("fallocate_step", ["IDLE", "PUNCH_ZAP", "TRUNCATE", "GMEM_END"])


class FallocateThread(ZapThread):
    """Option [tdx] punch_hole_thread: guest_memfd's invalidations (fallocate(PUNCH_HOLE),
    and memory failures) on a thread of their own. It holds guest_memfd's
    filemap_invalidate_lock, which KVM_SET_MEMORY_ATTRIBUTES (under slots_lock) does not
    take, so its invalidation may overlap a conversion's."""

    actor = "fallocate"

    def __init__(self, b: ModelBuilder, sizes: Sizes, lock: MmuLock, memory_failures: bool) -> None:
        n = sizes.gfns
        names = {g: f"g{g}" for g in range(n + 1)}
        extra = ["ERROR_ZAP"] if memory_failures else []
        self.steps = EnumDomain("fallocate_step", [*FALLOCATE_STEP.members, *extra])
        self.zap_after = {"PUNCH_ZAP": "TRUNCATE", **({"ERROR_ZAP": "GMEM_END"} if memory_failures else {})}
        self.step = b.field("fallocate.step", self.steps, "IDLE", "where the fallocate() thread is")
        self.start = b.field("fallocate.start", IntDomain(0, n, names), 0, "the hole's start")
        self.end = b.field("fallocate.end", IntDomain(0, n, names), 0, "the hole's end")
        lock.add_writer(self.zapping())
        lock.add_waiter(self.at("GMEM_END"))

    def busy(self) -> z3.BoolRef:
        """Between its kvm_gmem_invalidate_begin() and _end()."""
        return z3.Not(self.at("IDLE"))

    def idle(self) -> dict[Field, object]:
        return {self.step: self.steps.IDLE, self.start: 0, self.end: 0}


class GuestMemfd:
    def __init__(self, b: ModelBuilder, sizes: Sizes, punch_holes: Sequence[PunchHole],
                 max_punch_holes: int, pins: bool, memory_failures: Sequence[int] = ()) -> None:
        self.sizes = sizes
        self.memory_failures = tuple(memory_failures)
        # set by the huge-page component: kvm_gmem_punch_hole() invalidates the whole huge
        # pages at the ends of the range (variant tdx_huge.punch_hole_range), not exactly it
        self.widen = False
        # set by the huge-page component: a truncation of part of a huge folio splits it
        self.split_folios = False
        self.pins = pins
        self.punch_holes = tuple(punch_holes)
        self.max_punch_holes = max_punch_holes
        self.page: Family = b.family(
            "gmem_page", sizes.gfn_labels(), PAGE, "ALLOCATED",
            "the GFN's private page: in guest_memfd, or freed to the host",
        )
        self.pinned: Family | None = None
        if pins:
            self.pinned = b.family(
                "tdx_pinned", sizes.gfn_labels(), BOOL, False,
                "TDX holds a reference to the page (get_page() before TDH.MEM.PAGE.AUG)",
            )
        self.punched: Field = b.field(
            "gmem.punch_holes", IntDomain(0, max_punch_holes), 0,
            "fallocate(PUNCH_HOLE) calls made so far (bounded by the scenario)",
        )
        self.hwpoison: Family | None = None
        if self.memory_failures:
            self.hwpoison = b.family("gmem_hwpoison", sizes.gfn_labels(), BOOL, False,
                                     "memory_failure() marked the GFN's private page PG_hwpoison")

    def pin(self, gfn: int) -> dict[Field, object]:
        """get_page() before TDH.MEM.PAGE.AUG (nothing without pins)."""
        return {self.pinned[gfn]: True} if self.pinned is not None else {}

    def unpin(self, gfn: int) -> dict[Field, object]:
        """tdx_unpin(): put_page() (nothing without pins)."""
        return {self.pinned[gfn]: False} if self.pinned is not None else {}

    @property
    def unpin_text(self) -> str:
        """What a successful TDH.MEM.PAGE.REMOVE's line adds for the pin."""
        return "; tdx_unpin()" if self.pins else ""

    def held(self, gfn: int) -> z3.BoolRef:
        """TDX holds a reference on the GFN's page."""
        return self.pinned[gfn].var if self.pinned is not None else z3.BoolVal(False)

    def get_pfn(self, gfn: int) -> dict[Field, object]:
        """kvm_gmem_get_pfn() allocates the page if the file has a hole there."""
        return {self.page[gfn]: PAGE.ALLOCATED}

    def bind(self, ioctl: SetMemoryAttributes, inval: Invalidation, lock: MmuLock, teardown: MirrorTeardown,
             thread: ZapThread) -> None:
        """`teardown` starts the write-lock zap of the mirror leaves in a range (the
        tear-down machine, which itself calls back into this module to unpin); `thread`
        runs the punch-holes: the ioctl thread, or a fallocate() thread of their own."""
        self.ioctl, self.inval, self.lock, self.teardown, self.thread = ioctl, inval, lock, teardown, thread
        ioctl.punch_holes = self.punch_holes
        thread.poisoned = self.hwpoison

    def ended(self) -> z3.ArithRef:
        """The punch-holes and memory failures that have ended their invalidation
        (mmu_invalidate_seq bumps)."""
        started: z3.ArithRef = self.punched.var
        if self.hwpoison is not None:
            started = started + z3.Sum(*[z3.If(self.hwpoison[g].var, 1, 0) for g in self.memory_failures])
        if isinstance(self.thread, FallocateThread):
            return started - z3.If(self.thread.busy(), 1, 0)
        return started  # the ioctl thread is idle when it starts a conversion

    def poisoned(self, gfn: int) -> z3.BoolRef:
        """kvm_gmem_get_pfn() returns -EHWPOISON for the GFN's page."""
        return self.hwpoison[gfn].var if self.hwpoison is not None else z3.BoolVal(False)

    def _invalidated(self, hole: PunchHole) -> tuple[int, int]:
        """The range kvm_gmem_invalidate_begin() adds: the hole, or with `widen` the huge
        pages holding its head and its tail whole."""
        if not self.widen:
            return hole.start, hole.end
        p = self.sizes.pages_per_huge
        return hole.start - hole.start % p, -(-hole.end // p) * p

    def define(self, b: ModelBuilder) -> None:
        actor = self.thread.actor
        for p in self.punch_holes:
            b.action(self.kvm_gmem_punch_hole, actor, hole=p)
            if self.ioctl.punch_hole_hook:
                b.action(self.kvm_gmem_zap, actor, hole=p)
        b.action(self.truncate_inode_pages_range, actor)
        b.action(self.kvm_gmem_invalidate_end, actor)
        for g in self.memory_failures:
            b.action(self.kvm_gmem_error_folio, actor, gfn=g)

    @kernel("kvm_gmem_punch_hole")
    def kvm_gmem_punch_hole(self, hole: PunchHole) -> Step:
        """fallocate(PUNCH_HOLE) -> kvm_gmem_punch_hole() up to kvm_gmem_invalidate_begin():
        under mmu_lock for write, kvm_mmu_invalidate_begin(), then kvm_mmu_unmap_gfn_range()
        (range add, then zap with KVM_FILTER_PRIVATE: the mirror leaves of the range go
        through the TDX tear-down; with in-place conversion, KVM_FILTER_SHARED too, the
        direct root's leaves). It runs on the thread that holds filemap_invalidate_lock (the
        ioctl thread, or the fallocate() thread), which faults wait for only with in-place
        conversion. Left out: several bindings of the file."""
        io, t = self.ioctl, self.thread
        guard = z3.And(
            t.at("IDLE"),
            self.punched.var < self.max_punch_holes,
            self.lock.write_lockable(),
        )
        record = io.record(hole) if t is io else {t.start: hole.start, t.end: hole.end}
        effect: dict[Field, object] = {
            **self.inval.begin_with_range(*self._invalidated(hole)),
            # in-place conversion: the file holds both kinds, so both are zapped (e088c7f86bef)
            **(io.direct.zap_leafs(hole.start, hole.end) if io.inplace else {}),
            **record,
            self.punched: self.punched.var + 1,
        }
        text = f"kvm_gmem_punch_hole({hole.text()}): kvm_gmem_invalidate_begin"
        if io.punch_hole_hook:
            return Step(f"{text}; kvm_arch_gmem_convert() next", guard, {**effect, io.step: io.steps.HOOK})
        return Step(text, guard, {**effect, **self.teardown(hole.start, hole.end, "PUNCH_ZAP")})

    @kernel("kvm_mmu_unmap_gfn_range")
    def kvm_gmem_zap(self, hole: PunchHole) -> Step:
        """With the arch hook in the punch-hole (tdx_huge.punch_hole_split = tdx_gmem_convert,
        as Yan Zhao's v3 16/24 orders a conversion: after kvm_gmem_invalidate_begin(), before
        kvm_gmem_zap()): the hook returned 0, and kvm_mmu_unmap_gfn_range() of the hole
        zaps its mirror leaves under mmu_lock taken for write again. Left out: the TLB flush."""
        guard = z3.And(self.ioctl.at_operation(hole, "CONVERT"), self.lock.write_lockable())
        return Step(f"kvm_gmem_zap({hole.text()}): kvm_mmu_unmap_gfn_range()", guard,
                    self.teardown(hole.start, hole.end, "PUNCH_ZAP"))

    @kernel("kvm_gmem_error_folio")
    def kvm_gmem_error_folio(self, gfn: int) -> Step:
        """memory_failure() on the GFN's private page -> kvm_gmem_error_folio(): the page is
        PG_hwpoison; filemap_invalidate_lock_shared(), kvm_gmem_invalidate_begin() of the
        whole folio (start = folio->index, end = start + folio_nr_pages(folio)), which zaps
        its private mappings; no truncation ("what action is taken in response to the error
        is userspace's decision"); then kvm_gmem_invalidate_end() (MF_DELAYED). The folio is
        order 0 in mainline and the in-place series (which zaps the shared mappings too); a
        2M one where the huge-page series map 2M leaves. It runs on the thread of the
        punch-holes, whose filemap_invalidate_lock for write excludes it. Left out: the
        shared lock's concurrency with faults (the thread's invalidation stands for it),
        the host's own mappings, the SIGBUS to userspace."""
        t, p = self.thread, self.sizes.pages_per_huge
        assert self.hwpoison is not None
        base = gfn - gfn % p
        start: z3.ArithRef | int = gfn
        end: z3.ArithRef | int = gfn + 1
        if self.split_folios and not self.ioctl.inplace:  # the huge-page series: maybe a 2M folio
            huge = self.ioctl.attrs.gmem_level[self.sizes.region_of(gfn)].var == LEVEL.PG_LEVEL_2M
            start, end = z3.If(huge, base, gfn), z3.If(huge, base + p, gfn + 1)
        guard = z3.And(t.at("IDLE"), z3.Not(self.hwpoison[gfn].var), self.page[gfn].var == PAGE.ALLOCATED,
                       self.lock.write_lockable())
        effect: dict[Field, object] = {
            self.hwpoison[gfn]: True,
            **self.inval.begin_with_range(start, end),
            t.start: start, t.end: end,
            # in-place conversion: the file holds both kinds, so both are zapped (e088c7f86bef)
            **(self.ioctl.direct.zap_leafs(gfn, gfn + 1) if self.ioctl.inplace else {}),
            **self.teardown(start, end, "ERROR_ZAP"),  # type: ignore[arg-type]
        }
        return Step(f"memory_failure(g{gfn}): kvm_gmem_error_folio(): kvm_gmem_invalidate_begin(folio)", guard, effect)

    @kernel("truncate_inode_pages_range")
    def truncate_inode_pages_range(self) -> Step:
        """kvm_gmem_punch_hole() -> truncate_inode_pages_range(): the pages of the range
        leave the file; a page nobody else references (no TDX pin, or no pins at all
        since 6.19) is freed. With huge pages, truncating part of a huge folio splits it
        (truncate_inode_partial_folio() -> split_folio()), so guest_memfd reports order 0
        for that region from then on. Left out: a split that fails (the folio is then
        only zeroed in part)."""
        io, t = self.ioctl, self.thread
        effect: dict[Field, object] = {t.step: t.steps.GMEM_END}
        for g in range(self.sizes.gfns):
            inside = z3.And(t.start.var <= g, t.end.var > g)
            effect[self.page[g]] = z3.If(z3.And(inside, z3.Not(self.held(g))), PAGE.FREED,
                                         self.page[g].var)
        if self.split_folios:
            p, level = self.sizes.pages_per_huge, io.attrs.gmem_level
            for r, base in enumerate(self.sizes.region_bases()):
                part = z3.And(t.start.var < base + p, t.end.var > base,
                              z3.Or(t.start.var > base, t.end.var < base + p))
                effect[level[r]] = z3.If(part, LEVEL.PG_LEVEL_4K, level[r].var)
        return Step("truncate_inode_pages_range()", t.at("TRUNCATE"), effect)

    @kernel("kvm_gmem_invalidate_end")
    def kvm_gmem_invalidate_end(self) -> Step:
        """kvm_gmem_punch_hole() or kvm_gmem_error_folio() -> kvm_gmem_invalidate_end():
        kvm_mmu_invalidate_end() under mmu_lock for write (seq++, in_progress--)."""
        t = self.thread
        guard = z3.And(t.at("GMEM_END"), self.lock.write_lockable())
        return Step("kvm_gmem_invalidate_end()", guard, {**self.inval.end(), **t.idle()})
