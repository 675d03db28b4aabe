"""A conversion as the ioctl thread runs it: KVM_SET_MEMORY_ATTRIBUTES (pre pass, stores,
post pass), or guest_memfd's in-place conversion.

Kernel: kvm_vm_set_mem_attributes() in virt/kvm/kvm_main.c, with the x86 hooks
kvm_arch_pre_set_memory_attributes() and kvm_arch_post_set_memory_attributes() in
arch/x86/kvm/mmu/mmu.c. The thread holds slots_lock throughout; it is the only writer of
mem_attr_array, so slots_lock needs no field of its own.

Variant `attributes.conversion`: kvm_vm_set_mem_attributes (per-VM attributes, the above)
or kvm_gmem_set_attributes, guest_memfd in-place conversion v8 as merged in next-20260923
(<20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>): __kvm_gmem_set_attributes()
in virt/kvm/guest_memfd.c under filemap_invalidate_lock held for write, which
kvm_gmem_get_pfn() takes for read; a conversion to private first refuses (-EAGAIN) while a
page has outstanding references (the host's pins, kvm_gmem_has_outstanding_references());
kvm_gmem_invalidate_start() invalidates exactly the range (no widening: guest_memfd's
folios are order 0) and zaps the old type; the attributes are stored at once
(mas_store_prealloc()); kvm_gmem_invalidate_end(); nothing tracks KVM_LPAGE_MIXED_FLAG.
mem_attr_array stands for the file's attributes (one file, one binding); per-VM
attributes are switched off, so KVM_SET_MEMORY_ATTRIBUTES has no actions.

Which conversions the thread may make is a scenario option: by default any range of the
slot to either attribute, at most `max_conversions` times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import z3

from model.lang import (
    BOOL,
    EnumDomain,
    Family,
    Field,
    IntDomain,
    ModelBuilder,
    Step,
    Variant,
    VariantValue,
    kernel,
)

from .kvm import Kvm
from .values import ATTRIBUTES

# Where the userspace (ioctl) thread is. The *_ZAP steps hold mmu_lock for write while
# the TDX tear-down of mirror leaves runs (SEAMCALLs between steps); without TDX a zap is
# part of the step that takes the lock.
IOCTL_STEP = EnumDomain(
    "ioctl_step",
    [
        "IDLE",
        "CONVERT_ZAP",  # KVM_SET_MEMORY_ATTRIBUTES pre pass, tearing down mirror leaves
        "STORE",  # KVM_SET_MEMORY_ATTRIBUTES: the xa_store() pass
        "POST",  # KVM_SET_MEMORY_ATTRIBUTES: next, the post pass
        "PUNCH_ZAP",  # guest_memfd punch-hole: kvm_gmem_invalidate_begin() tearing down
        "TRUNCATE",  # guest_memfd punch-hole: next, truncate_inode_pages_range()
        "GMEM_END",  # guest_memfd punch-hole: next, kvm_gmem_invalidate_end()
        "SLOT_ZAP",  # a memslot update: zapping roots under the write lock
    ],
)
# With an arch hook that prepares the mirror for a private->shared conversion
# (kvm_arch_gmem_convert()), the hook's steps: HOOK the invalidation has begun and the hook
# is next (placement after_invalidate); HOOK_ALLOC the hook dropped mmu_lock to allocate a
# page table; HOOK_SPLIT it holds the write lock while a huge leaf is split; CONVERT the
# hook returned 0 and the conversion goes on.
HOOK_STEPS = ("HOOK", "HOOK_ALLOC", "HOOK_SPLIT", "CONVERT")
# what the thread is doing when the arch hook is called for punch-holes too
# (tdx_huge.punch_hole_split = tdx_gmem_convert): the two may cover the same range
IOCTL_OP = EnumDomain("ioctl_op", ["CONVERSION", "PUNCH_HOLE"])
IOCTL_STEP_HOOKED = EnumDomain("ioctl_step", [*IOCTL_STEP.members, *HOOK_STEPS])
PLACEMENTS = ("before_invalidate", "after_invalidate")
# where a tear-down's zap is with tdp_mmu_iter_cond_resched() (option [tdx] zap_yields)
ZAP_YIELD = EnumDomain("zap_yield", ["NONE", "YIELDED", "QUEUED", "RESUMED"])
ZAP_STEPS = ("CONVERT_ZAP", "PUNCH_ZAP", "SLOT_ZAP")
AFTER_ZAP = {"CONVERT_ZAP": "STORE", "PUNCH_ZAP": "TRUNCATE", "SLOT_ZAP": "IDLE"}

ACTOR = "ioctl"
HOST = "host"  # userspace pinning shared guest_memfd pages (pin_user_pages())

CONVERSION_OP, PUNCH_HOLE_OP = IOCTL_OP.members
PER_VM, IN_PLACE = "kvm_vm_set_mem_attributes", "kvm_gmem_set_attributes"
CONVERSION = Variant("conversion", "who converts memory between shared and private, and what it holds", (
    VariantValue(PER_VM, "v6.16",
                 "commit 5a475554db1e (KVM: Introduce per-page memory attributes), with 9129633d568e",
                 "KVM_SET_MEMORY_ATTRIBUTES on the VM: per-VM attributes under slots_lock; the pre pass "
                 "widens the invalidation to the huge pages at the range's ends, the stores run one GFN "
                 "at a time, the post pass recomputes KVM_LPAGE_MIXED_FLAG"),
    VariantValue(IN_PLACE, "gmem-inplace-v8",
                 "guest_memfd in-place conversion v8 <20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>, "
                 "in next-20260923: 1ae5be958ff7, 799c9fadc639, dcde2f853ff4, 6fa1dab756fd, e088c7f86bef, "
                 "2e646bcfcf90, 537ec2b15fdd",
                 "KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd: per-file attributes under "
                 "filemap_invalidate_lock (kvm_gmem_get_pfn() takes it shared); to private refused while "
                 "a page is in use; the exact range invalidated; attributes stored at once; no mixed "
                 "tracking; a punch-hole zaps shared and private mappings"),
))
# the ioctl steps at which it holds filemap_invalidate_lock for write (in-place conversion):
# its conversion (and the arch hook inside it) and the punch-hole
GMEM_LOCKED = ("CONVERT_ZAP", "STORE", "POST", "PUNCH_ZAP", "TRUNCATE", "GMEM_END")

# tear down the mirror leaves in [start, end) from the zap step given: the effect
MirrorTeardown = Callable[[int, int, str], dict[Field, object]]


class ZapThread:
    """A thread that holds mmu_lock for write while the TDX tear-down runs for it: the ioctl
    thread, or a fallocate() thread of its own for guest_memfd's invalidations. A subclass
    declares its fields and its zap steps; the step arithmetic is this class's."""

    actor: str
    step: Field
    steps: EnumDomain
    start: Field
    end: Field
    zap_after: Mapping[str, str]  # its zap steps, each with the step that follows it
    poisoned: Family | None = None  # set by guest_memfd: PG_hwpoison of each GFN's page

    def at(self, *steps: str) -> z3.BoolRef:
        """The thread is at one of `steps`."""
        return z3.Or(*[self.step.var == self.steps.code(s) for s in steps])

    def zapping(self) -> z3.BoolRef:
        """The thread holds mmu_lock for write across steps (a TDX tear-down)."""
        return self.at(*self.zap_after)

    def after_zap(self) -> z3.ExprRef:
        """Where the thread goes when its tear-down finishes."""
        out: z3.ExprRef = self.steps.IDLE
        for zap, then in self.zap_after.items():
            out = z3.If(self.at(zap), self.steps.code(then), out)
        return out

    def discards(self, gfn: int) -> z3.BoolRef:
        """The guest's data at gfn is meant to go when the thread's zap removes it: a
        memory failure's zap only discards the poisoned page."""
        if "ERROR_ZAP" not in self.zap_after:
            return z3.BoolVal(True)
        assert self.poisoned is not None
        return z3.Or(z3.Not(self.at("ERROR_ZAP")), self.poisoned[gfn].var)

    def idle(self) -> dict[Field, object]:
        raise NotImplementedError


@dataclass(frozen=True)
class Conversion:
    """One KVM_SET_MEMORY_ATTRIBUTES call: GFNs [start, end) to `attributes`."""

    start: int
    end: int
    attributes: str  # "SHARED" | "PRIVATE"

    def text(self) -> str:
        return f"[g{self.start},g{self.end}) -> {self.attributes}"


@dataclass(frozen=True)
class PunchHole:
    """One fallocate(PUNCH_HOLE) of the guest_memfd range of GFNs [start, end)."""

    start: int
    end: int

    def text(self) -> str:
        return f"[g{self.start},g{self.end})"


# what the thread may call the arch hook for
Operation = Conversion | PunchHole


class SetMemoryAttributes(ZapThread):
    # set by a component that owns the mirror's external page table, before define()
    mirror_teardown: MirrorTeardown | None = None
    actor = ACTOR

    def __init__(self, b: ModelBuilder, kvm: Kvm, conversions: Sequence[Conversion], max_conversions: int,
                 hook: str | None = None, conversion: str = PER_VM, host_pins: int = 0,
                 zap_yields: bool = False,
                 punch_hole_hook: bool = False, memory_failures: bool = False) -> None:
        self.sizes, self.attrs, self.inval, self.lock = kvm.sizes, kvm.attrs, kvm.inval, kvm.lock
        assert hook is None or hook in PLACEMENTS
        self.hook = hook  # where a private->shared conversion calls its arch hook, if it has one
        self.punch_hole_hook = punch_hole_hook  # a punch-hole calls it too, after its invalidation began
        self.hooks = hook is not None or punch_hole_hook
        self.steps = IOCTL_STEP_HOOKED if self.hooks else IOCTL_STEP
        self.zap_after = dict(AFTER_ZAP)
        if memory_failures:  # it runs guest_memfd's memory failures too: a zap, then the end
            self.steps = EnumDomain("ioctl_step", [*self.steps.members, "ERROR_ZAP"])
            self.zap_after["ERROR_ZAP"] = "GMEM_END"
        self.punch_holes: tuple[PunchHole, ...] = ()  # set by guest_memfd: the punch-holes it may make
        self.inplace = conversion == IN_PLACE  # attributes.conversion
        self.direct, self.mirror = kvm.direct, kvm.mirror
        sizes = kvm.sizes
        self.conversions = tuple(conversions)
        self.max_conversions = max_conversions
        # the invalidations other operations have ended (mmu_invalidate_seq bumps that are
        # not conversions: punch-holes, mmu_notifiers), one term each
        self.ended_elsewhere: list[z3.ArithRef] = []
        n = sizes.gfns
        gfn_names = {g: f"g{g}" for g in range(n + 1)}
        self.step: Field = b.field("ioctl.step", self.steps, "IDLE", "where the ioctl thread is")
        self.start: Field = b.field("ioctl.start", IntDomain(0, n, gfn_names), 0, "range start")
        self.end: Field = b.field("ioctl.end", IntDomain(0, n, gfn_names), 0, "range end")
        self.attributes: Field = b.field(
            "ioctl.attributes", ATTRIBUTES, "SHARED", "the attributes being set"
        )
        self.next_gfn: Field = b.field(
            "ioctl.next_gfn", IntDomain(0, n, gfn_names), 0, "the next xa_store of the store pass"
        )
        self.op: Field | None = None
        if punch_hole_hook:
            self.op = b.field("ioctl.op", IOCTL_OP, "CONVERSION",
                              "what the thread is doing: a conversion or a punch-hole (both call the arch hook)")
        # tdp_mmu_zap_leafs() may drop mmu_lock between SPTEs (option [tdx] zap_yields)
        self.zap_yielded: Field | None = None
        if zap_yields:
            self.zap_yielded = b.field("ioctl.zap_yield", ZAP_YIELD, "NONE",
                                       "tdp_mmu_iter_cond_resched() dropped mmu_lock in the middle of the zap "
                                       "(YIELDED), waits for it again (QUEUED), or took it again and must make "
                                       "progress before it yields again (RESUMED)")
        kvm.lock.add_writer(self.holds_zap_lock())
        if self.zap_yielded is not None:  # cond_resched_rwlock_write() queues for the lock again
            kvm.lock.add_waiter(self.zap_yielded.var == ZAP_YIELD.QUEUED)
        self.host_pins = host_pins
        self.pinned: Family | None = None
        if host_pins:
            self.pinned = b.family("host.pinned", sizes.gfn_labels(), BOOL, False,
                                   "userspace holds a pin_user_pages() reference on the shared guest_memfd page")
            self.pins: Field = b.field("host.pins", IntDomain(0, host_pins), 0, "pins taken so far")
        self.refcount_check = b.guard(
            "gmem-outstanding-references",
            "an in-place conversion to private refuses (-EAGAIN) while a page of the range has a "
            "reference beyond guest_memfd's own: kvm_gmem_has_outstanding_references()",
            "dcde2f853ff4 (KVM: guest_memfd: Ensure pages are not in use before conversion), "
            "in-place conversion v8",
        ) if self.inplace else None
        if self.hooks:
            kvm.lock.add_writer(self.at("HOOK_SPLIT"))
        # the steps whose next step takes the write lock
        kvm.lock.add_waiter(self.at("POST", "GMEM_END", *(s for s in HOOK_STEPS if s != "HOOK_SPLIT" and self.hooks)))
        # no invalidation of this thread is in progress: idle, a memslot update, or a
        # conversion in its arch hook before its invalidation
        quiet = self.at("IDLE", "SLOT_ZAP")
        if hook == "before_invalidate":
            quiet = z3.Or(quiet, z3.And(self.at(*HOOK_STEPS[1:]), self.doing(CONVERSION_OP)))
        # the per-VM pre pass's widening; in-place conversion calls no pre pass (its
        # order-0 folios are never mapped huge)
        self.huge_range = b.guard(
            "huge-range",
            "kvm_arch_pre_set_memory_attributes() adds the whole huge page holding the head "
            "and the tail of the range to the invalidation range",
            "commit 9129633d568e (KVM: x86/mmu: Prevent installing hugepages when mem "
            "attributes are changing)",
        ) if not self.inplace else False
        self.quiet = quiet
        # the other threads whose invalidations may be in progress with this one's (an
        # mmu_notifier, a fallocate() thread), one term each: added to until define()
        self.other_invalidators: list[z3.BoolRef] = []

    def track_invalidations(self, b: ModelBuilder) -> None:
        """The fact that ties mmu_invalidate_in_progress to the threads in their
        invalidations; declared before any action, once every thread exists."""
        inval = self.inval
        busy = (z3.Not(self.quiet), *self.other_invalidators)
        counted = inval.in_progress.var == z3.Sum(*[z3.If(t, 1, 0) for t in busy])
        b.fact(
            "invalidation_tracks_ioctl",
            "mmu_invalidate_in_progress counts the threads between an invalidation's begin and "
            "end (the ioctl thread, and the mmu_notifier and the fallocate() thread if the "
            "scenario has them), and seq + in_progress never exceeds the scenario's bound",
            z3.And(
                counted,
                inval.seq.var + inval.in_progress.var <= inval.max_invalidations,
            ),
        )

    def holds_zap_lock(self) -> z3.BoolRef:
        """The thread holds mmu_lock for write in a zap (not yielded)."""
        if self.zap_yielded is None:
            return self.zapping()
        dropped = z3.Or(self.zap_yielded.var == ZAP_YIELD.YIELDED, self.zap_yielded.var == ZAP_YIELD.QUEUED)
        return z3.And(self.zapping(), z3.Not(dropped))

    def discards(self, gfn: int) -> z3.BoolRef:
        """A conversion's or a punch-hole's zap is one userspace asked for, a memslot
        update's is not; a memory failure's discards only the poisoned page."""
        return z3.And(z3.Not(self.at("SLOT_ZAP")), super().discards(gfn))

    def define(self, b: ModelBuilder) -> None:
        start = self.kvm_gmem_set_attributes if self.inplace else self.kvm_pre_set_memory_attributes
        for c in self.conversions:
            b.action(start, ACTOR, conversion=c)
        if self.hook == "after_invalidate":
            for c in self.conversions:
                if c.attributes == "SHARED":
                    b.action(self.kvm_unmap_gfn_range, ACTOR, conversion=c)
        if self.inplace:
            b.action(self.mas_store_prealloc, ACTOR)
            b.action(self.gmem_invalidate_end, ACTOR)
        else:
            for g in range(self.sizes.gfns):
                b.action(self.xa_store, ACTOR, gfn=g)
            b.action(self.kvm_arch_post_set_memory_attributes, ACTOR)
        for g in range(self.sizes.gfns if self.pinned is not None else 0):
            b.action(self.pin_user_pages, HOST, gfn=g)
            b.action(self.unpin_user_page, HOST, gfn=g)

    def holds_invalidate_lock(self) -> z3.BoolRef:
        """In-place conversion: the thread holds guest_memfd's filemap_invalidate_lock for
        write (its conversion, with any arch hook inside it, or a punch-hole)."""
        if not self.inplace:
            return z3.BoolVal(False)
        return self.at(*GMEM_LOCKED, *(HOOK_STEPS if self.hooks else ()))

    # -- helpers --------------------------------------------------------------------

    def _widened_range(self, c: Conversion) -> tuple[z3.ArithRef | int, z3.ArithRef | int]:
        """The invalidation range after kvm_arch_pre_set_memory_attributes() (2M level).

        The head huge page is added when the range does not cover it whole; the tail one
        when it is another huge page that sticks out past the end; either only if it is
        not already mixed (a mixed huge page cannot be mapped huge anyway).
        """
        if not self.huge_range:
            return c.start, c.end
        p = self.sizes.pages_per_huge
        head = c.start - c.start % p
        tail = (c.end - 1) - (c.end - 1) % p
        start: z3.ArithRef | int = c.start
        end: z3.ArithRef | int = c.end
        if head != c.start or head + p > c.end:
            add_head = z3.Not(self.attrs.mixed[head // p].var)
            start = z3.If(add_head, head, c.start)
            end = z3.If(add_head, max(head + p, c.end), c.end)
        if tail != head and tail + p > c.end:
            end = z3.If(z3.Not(self.attrs.mixed[tail // p].var), tail + p, end)
        return start, end

    # -- actions --------------------------------------------------------------------

    @kernel("kvm_vm_set_mem_attributes")
    def kvm_pre_set_memory_attributes(self, conversion: Conversion) -> Step:
        """kvm_vm_set_mem_attributes() up to and including its pre pass.

        Returns early when kvm_range_has_memory_attributes() says the range already has
        the attributes. Otherwise kvm_handle_gfn_range(pre_set_range) takes mmu_lock for
        write once: kvm_mmu_invalidate_begin(), kvm_mmu_invalidate_range_add() of the
        range, kvm_arch_pre_set_memory_attributes() (widening to head/tail huge pages,
        guard `huge-range`), and kvm_unmap_gfn_range() of the leaves of the root whose
        attribute is being revoked (KVM_FILTER_SHARED when going private,
        KVM_FILTER_PRIVATE when going shared), then the TLB flush and unlock.
        With TDX, zapping a mirror leaf makes SEAMCALLs, so the tear-down of the mirror
        continues in steps of its own while this thread keeps the write lock.
        A private->shared conversion with an arch hook that prepares the mirror
        (kvm_arch_gmem_convert(), `hook`) calls it before this step (before_invalidate:
        the step goes on from the hook's CONVERT) or stops after
        kvm_mmu_invalidate_begin() (after_invalidate: the hook runs, then
        kvm_unmap_gfn_range()). The model's conversion is KVM_SET_MEMORY_ATTRIBUTES, which
        stands for guest_memfd's conversion here: the hook sits where it would relative
        to kvm_gmem_invalidate_begin().
        Left out: xa_reserve() failing with -ENOMEM, the remote TLB flush itself.
        """
        return self._start(conversion, "kvm_pre_set_memory_attributes", self._widened_range(conversion))

    @kernel("__kvm_gmem_set_attributes")
    def kvm_gmem_set_attributes(self, conversion: Conversion) -> Step:
        """In-place conversion (attributes.conversion = kvm_gmem_set_attributes):
        KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd -> __kvm_gmem_set_attributes() takes
        filemap_invalidate_lock for write, returns early if the range has the attributes,
        and for a conversion to private unmaps the host's mappings and refuses with -EAGAIN
        while kvm_gmem_has_outstanding_references() (guard `gmem-outstanding-references`:
        a host pin in the range); then kvm_gmem_invalidate_start() with the filter of the
        old type: under mmu_lock for write, kvm_mmu_invalidate_start(), the range added as
        it is (no huge-page widening) and its leaves of the old type zapped. An arch hook
        (RFC v5's kvm_arch_gmem_convert()) runs before this step or stops it after the
        invalidation, as for KVM_SET_MEMORY_ATTRIBUTES. Left out: the maple tree's
        preallocation failing with -ENOMEM, several files or bindings.
        """
        c = conversion
        refused: z3.BoolRef = z3.BoolVal(False)
        if c.attributes == "PRIVATE" and self.refcount_check and self.pinned is not None:
            refused = z3.Or(*[self.pinned[g].var for g in range(c.start, c.end)])
        return self._start(c, "kvm_gmem_set_attributes", (c.start, c.end), refused)

    def _start(self, c: Conversion, name: str, inval_range: tuple[z3.ArithRef | int, z3.ArithRef | int],
               refused: z3.BoolRef | bool = False) -> Step:
        """A conversion's start under mmu_lock for write: begin the invalidation of
        `inval_range`, then zap the revoked type's leaves (or stop for the arch hook)."""
        hooked = self.hook is not None and c.attributes == "SHARED"  # the arch hook prepares the mirror
        start, end = inval_range
        entry = self.at_operation(c, "CONVERT") if hooked and self.hook == "before_invalidate" else self._fresh(c)
        guard = z3.And(entry, self.lock.write_lockable(), z3.Not(refused))
        effect: dict[Field, object] = {
            **self.inval.begin_with_range(start, end),
            **self.record(c),
            self.next_gfn: c.start,
        }
        if hooked and self.hook == "after_invalidate":
            return Step(f"{name}({c.text()}): kvm_mmu_invalidate_begin(); "
                        "kvm_arch_gmem_convert() next", guard, {**effect, self.step: self.steps.HOOK})
        return Step(f"{name}({c.text()})", guard, {**effect, **self._zap(c)})

    def _zap(self, c: Conversion) -> dict[Field, object]:
        """kvm_unmap_gfn_range() of the leaves of the root whose attribute is revoked."""
        revoked = self.direct if c.attributes == "PRIVATE" else self.mirror
        if revoked is self.mirror and self.mirror_teardown is not None:
            return self.mirror_teardown(c.start, c.end, "CONVERT_ZAP")
        return {**revoked.zap_leafs(c.start, c.end), self.step: IOCTL_STEP.STORE}

    def record(self, op: Operation) -> dict[Field, object]:
        out: dict[Field, object] = {self.start: op.start, self.end: op.end}
        if isinstance(op, Conversion):
            out[self.attributes] = getattr(ATTRIBUTES, op.attributes)
        if self.op is not None:
            out[self.op] = IOCTL_OP.code(CONVERSION_OP if isinstance(op, Conversion) else PUNCH_HOLE_OP)
        return out

    def _fresh(self, c: Conversion) -> z3.BoolRef:
        """Conversion `c` may start: the thread is idle, the scenario allows another, and the
        range does not already have the attributes (the early return)."""
        return z3.And(self.step.var == IOCTL_STEP.IDLE,
                      self.inval.seq.var - sum(self.ended_elsewhere, 0) < self.max_conversions,
                      z3.Not(self.attrs.range_has(c.start, c.end, getattr(ATTRIBUTES, c.attributes))))

    def idle(self) -> dict[Field, object]:
        """The operation is over: the thread is idle and its locals are cleared."""
        out: dict[Field, object] = {self.step: IOCTL_STEP.IDLE, self.start: 0, self.end: 0,
                                    self.attributes: ATTRIBUTES.SHARED, self.next_gfn: 0}
        if self.op is not None:
            out[self.op] = IOCTL_OP.CONVERSION
        return out

    def doing(self, kind: str) -> z3.BoolRef:
        """The thread's operation is of `kind` (CONVERSION or PUNCH_HOLE); without punch-holes
        that call the arch hook, only a step tells them apart."""
        if self.op is None:
            return z3.BoolVal(True)
        return self.op.var == IOCTL_OP.code(kind)

    def at_operation(self, op: Operation, step: str) -> z3.BoolRef:
        """The thread is at `step` of `op` (CONVERT: its arch hook returned 0)."""
        kind = CONVERSION_OP if isinstance(op, Conversion) else PUNCH_HOLE_OP
        return z3.And(self.at(step), self.start.var == op.start, self.end.var == op.end, self.doing(kind))

    def hooked(self) -> list[Operation]:
        """The operations that call the arch hook: private->shared conversions, and
        punch-holes when they call it too."""
        convert: list[Operation] = [c for c in self.conversions if self.hook is not None and c.attributes == "SHARED"]
        return convert + list(self.punch_holes if self.punch_hole_hook else ())

    def placement(self, op: Operation) -> str:
        """Where `op` calls the arch hook: a punch-hole after its invalidation began."""
        assert self.hook is not None or isinstance(op, PunchHole)
        return self.hook if isinstance(op, Conversion) and self.hook is not None else "after_invalidate"

    def hook_entry(self, op: Operation) -> tuple[z3.BoolRef, dict[Field, object]]:
        """Where `op` calls its arch hook: before the invalidation (a fresh conversion,
        recorded here) or after it (at HOOK)."""
        if self.placement(op) == "before_invalidate":
            assert isinstance(op, Conversion)
            return self._fresh(op), self.record(op)
        return self.at_operation(op, "HOOK"), {}

    def hook_failed(self, op: Operation) -> dict[Field, object]:
        """The arch hook failed (-ENOMEM): the operation returns the error having changed no
        attribute and truncated nothing; after the invalidation began,
        kvm_mmu_invalidate_end() first."""
        effect: dict[Field, object] = dict(self.inval.end()) if self.placement(op) == "after_invalidate" else {}
        return {**effect, **self.idle()}

    @kernel("kvm_unmap_gfn_range")
    def kvm_unmap_gfn_range(self, conversion: Conversion) -> Step:
        """With the arch hook after the invalidation began: kvm_unmap_gfn_range() of the
        range, the conversion's zap as in kvm_pre_set_memory_attributes(), under mmu_lock
        taken for write again (the hook dropped it). Left out, as there: the TLB flush."""
        c = conversion
        guard = z3.And(self.at_operation(c, "CONVERT"), self.lock.write_lockable())
        return Step(f"kvm_unmap_gfn_range({c.text()})", guard, self._zap(c))

    @kernel("xa_store")
    def xa_store(self, gfn: int) -> Step:
        """One xa_store(&kvm->mem_attr_array, gfn, ...) of kvm_vm_set_mem_attributes().

        The stores run without mmu_lock, one GFN at a time, so faults may interleave
        between them; in_progress and the range cover every GFN being stored.
        """
        last = self.end.var == gfn + 1
        guard = z3.And(self.step.var == IOCTL_STEP.STORE, self.next_gfn.var == gfn)
        effect: dict[Field, object] = {
            self.attrs.attr[gfn]: self.attributes.var,
            self.next_gfn: z3.If(last, 0, gfn + 1),
            self.step: z3.If(last, IOCTL_STEP.POST, IOCTL_STEP.STORE),
        }
        return Step(f"xa_store(mem_attr_array, g{gfn})", guard, effect)

    @kernel("mas_store_prealloc")
    def mas_store_prealloc(self) -> Step:
        """In-place conversion: after kvm_gmem_invalidate_start() (and, to shared,
        kvm_gmem_make_shared(), whose arch callback cannot fail), __kvm_gmem_set_attributes()
        stores the range's new attributes at once with mas_store_prealloc(), without
        mmu_lock: faults are kept out by the invalidation in progress. Left out:
        kvm_arch_gmem_make_shared()'s effect (TDX has none to model)."""
        effect: dict[Field, object] = {self.step: IOCTL_STEP.POST}
        for g in range(self.sizes.gfns):
            inside = z3.And(self.start.var <= g, self.end.var > g)
            effect[self.attrs.attr[g]] = z3.If(inside, self.attributes.var, self.attrs.attr[g].var)
        return Step("mas_store_prealloc(attributes, [start, end))", self.step.var == IOCTL_STEP.STORE, effect)

    @kernel("kvm_gmem_invalidate_end")
    def gmem_invalidate_end(self) -> Step:
        """In-place conversion: kvm_gmem_invalidate_end() -> kvm_mmu_invalidate_end() under
        mmu_lock for write (seq++, in_progress--), then filemap_invalidate_unlock().
        Nothing recomputes KVM_LPAGE_MIXED_FLAG (guest_memfd's folios are order 0)."""
        effect = {**self.inval.end(), **self.idle()}
        guard = z3.And(self.step.var == IOCTL_STEP.POST, self.lock.write_lockable())
        return Step("kvm_gmem_invalidate_end(); filemap_invalidate_unlock()", guard, effect)

    @kernel("pin_user_pages")
    def pin_user_pages(self, gfn: int) -> Step:
        """Userspace pins a shared guest_memfd page (pin_user_pages() through its mmap,
        e.g. for DMA): the page now has a reference guest_memfd does not own. The fault
        that maps it takes filemap_invalidate_lock for read (kvm_gmem_fault_user_mapping()),
        so it waits for a conversion in progress. Left out: the unpinned host mappings
        (unmap_mapping_pages() removes them before the check)."""
        assert self.pinned is not None
        guard = z3.And(self.attrs.attr[gfn].var == ATTRIBUTES.SHARED, z3.Not(self.pinned[gfn].var),
                       self.pins.var < self.host_pins, z3.Not(self.holds_invalidate_lock()))
        return Step(f"host: pin_user_pages(g{gfn})", guard, {self.pinned[gfn]: True, self.pins: self.pins.var + 1})

    @kernel("unpin_user_page")
    def unpin_user_page(self, gfn: int) -> Step:
        """Userspace drops its pin: unpin_user_page()."""
        assert self.pinned is not None
        return Step(f"host: unpin_user_page(g{gfn})", self.pinned[gfn].var, {self.pinned[gfn]: False})

    @kernel("kvm_arch_post_set_memory_attributes")
    def kvm_arch_post_set_memory_attributes(self) -> Step:
        """The post pass: kvm_handle_gfn_range(post_set_range) under mmu_lock for write.

        on_lock is kvm_mmu_invalidate_end() (seq++, in_progress--); then
        kvm_arch_post_set_memory_attributes() clears KVM_LPAGE_MIXED_FLAG of huge pages
        wholly inside the range and recomputes it with hugepage_has_attrs() for the head
        and tail huge pages that stick out. Both happen in one critical section, so no
        fault sees the new seq with stale mixed bits. Left out: the 1G level.
        """
        effect: dict[Field, object] = dict(self.inval.end())
        for r, base in enumerate(self.sizes.region_bases()):
            top = base + self.sizes.pages_per_huge
            touched = z3.And(self.start.var < top, self.end.var > base)
            inside = z3.And(self.start.var <= base, self.end.var >= top)
            has = self.attrs.region_has(r, self.attributes.var)
            mixed = self.attrs.mixed[r]
            effect[mixed] = z3.If(touched, z3.If(inside, False, z3.Not(has)), mixed.var)
        effect |= self.idle()
        guard = z3.And(self.step.var == IOCTL_STEP.POST, self.lock.write_lockable())
        return Step("kvm_arch_post_set_memory_attributes()", guard, effect)
