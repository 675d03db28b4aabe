"""The TDX component: the mirror root's external S-EPT, kept in step by KVM and the module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.lang import Component, ModelBuilder, Option, OptionError, resolve, shown

from ..set_memory_attributes import SetMemoryAttributes
from ..sizes import Sizes
from . import mirror_fault, propagation
from .gmem import PINNING, FallocateThread, GuestMemfd, PunchHole
from .mirror_fault import ITER_OLD_SPTE, WALK, MirrorFault
from .propagation import CENTRAL, PROPAGATION, CentralPropagation
from .sept import ExternalSept
from .teardown import BUSY_RETRY, SeptTeardown
from .zappers import AtomicZaps, FastZap


class TdxComponent(Component):
    """Upstream KVM TDX with private memory at 4K: mirror root, S-EPT, tear-down, gmem."""

    name = "tdx"
    summary = (
        "the TDX mirror root and the external S-EPT (freeze, TDH.MEM.SEPT.ADD / PAGE.AUG, "
        "BLOCK / TRACK / REMOVE under the write lock, BUSY), the TDX module as an oracle, "
        "guest_memfd pages and pins with punch-hole, NX recovery and fast zaps"
    )
    requires = ("attributes",)
    variants = (PINNING, BUSY_RETRY, PROPAGATION, WALK)
    options = (
        Option("max_punch_holes", int, 1, "fallocate(PUNCH_HOLE) calls allowed", minimum=0, maximum=2),
        Option("punch_holes", list, [],
               "a list of {start, end} tables (GFNs [start, end)); empty means any range"),
        Option("max_memslot_updates", int, 1,
               "updates of another memslot (each calls kvm_mmu_zap_all_fast)", minimum=0, maximum=2),
        Option("nx_recovery", bool, True,
               "run the NX huge page recovery worker, a zapper under the read lock"),
        Option("zap_yields", bool, False,
               "tdp_mmu_zap_leafs() may drop mmu_lock between SPTEs (tdp_mmu_iter_cond_resched()), "
               "letting faults and other lock holders run in the middle of a zap"),
        Option("memory_failures", list, [],
               "GFNs whose private page may take a memory failure (memory_failure() -> "
               "kvm_gmem_error_folio()), each once"),
        Option("punch_hole_thread", bool, False,
               "fallocate(PUNCH_HOLE) runs on a thread of its own (under filemap_invalidate_lock), "
               "so its invalidation may overlap a KVM_SET_MEMORY_ATTRIBUTES conversion's (under slots_lock)"),
    )

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)
        self.punch_holes = _punch_holes(self.config["punch_holes"], sizes)
        self.memory_failures = _gfns(self.config["memory_failures"], "memory_failures", sizes)
        self.huge = False  # set by the huge-page component: 2M S-EPT leaves

    def configure(self, enabled: Mapping[str, Component]) -> None:
        attrs = enabled["attributes"]
        refine = attrs.fault_refinement  # type: ignore[attr-defined]
        refine.locked_steps = mirror_fault.STEPS
        central, walk = self.variant.is_("propagation", CENTRAL), self.variant.is_("walk", ITER_OLD_SPTE)
        if central:
            refine.locked_steps += propagation.STEPS
        if walk:
            refine.locked_steps += mirror_fault.READ_STEPS + (propagation.READ_STEPS if central else ())
        refine.private_walk_elsewhere = True
        refine.private_4k_only = True  # tdx_gmem_private_max_mapping_level()
        attrs.extra_invalidations = self.config["max_punch_holes"]  # type: ignore[attr-defined]
        attrs.zap_yields = self.config["zap_yields"]  # type: ignore[attr-defined]
        attrs.other_threads += self.config["punch_hole_thread"]  # type: ignore[attr-defined]
        attrs.memory_failures = bool(self.memory_failures) and not self.config["punch_hole_thread"]  # type: ignore[attr-defined]
        attrs.extra_invalidations += len(self.memory_failures)  # type: ignore[attr-defined]

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        attrs = deps["attributes"]
        kvm = attrs.kvm  # type: ignore[attr-defined]
        self.kvm, self.fault, self.ioctl = kvm, attrs.fault, attrs.ioctl  # type: ignore[attr-defined]
        sizes = self.sizes
        self.sept = ExternalSept(b, sizes, self.huge)
        self.gmem = GuestMemfd(b, sizes, self.punch_holes, self.config["max_punch_holes"],
                               pins=self.variant.is_("pinning", "get_page-until-remove"),
                               memory_failures=self.memory_failures)
        if self.memory_failures:
            self.fault.refine.private_hwpoison = self.gmem.poisoned
        self.fault.refine.gmem_get_pfn = self.gmem.get_pfn
        self.mirror_fault = MirrorFault(b, self.fault, kvm.mirror, self.sept, self.gmem, self.variant["walk"])
        self.central = CentralPropagation(self.mirror_fault, self.sept, self.gmem) \
            if self.variant.is_("propagation", CENTRAL) else None
        self.teardown = SeptTeardown(b, kvm.mirror, self.sept, self.gmem, self.mirror_fault.dirty,
                                     self.variant["busy_retry"])
        self.teardown.bind(self.ioctl)
        self.ioctl.mirror_teardown = self.teardown.start
        thread = self._punch_hole_thread(b)
        self.gmem.bind(self.ioctl, kvm.inval, kvm.lock, self.teardown.start, thread)
        self.ioctl.ended_elsewhere.append(self.gmem.ended())
        self.atomic = AtomicZaps(b, kvm.direct, kvm.mirror, self.mirror_fault.dirty, self.variant["propagation"],
                                 self.central) if self.config["nx_recovery"] else None
        self.fast_zap = FastZap(b, kvm.direct, self.config["max_memslot_updates"])
        self.fast_zap.bind(self.ioctl, kvm.lock, self.teardown)

    def _punch_hole_thread(self, b: ModelBuilder) -> FallocateThread | SetMemoryAttributes:
        """Who runs the punch-holes: the ioctl thread, or (option punch_hole_thread) a
        fallocate() thread whose invalidation counts beside the ioctl thread's."""
        if not self.config["punch_hole_thread"]:
            return self.ioctl
        why = [(self.ioctl.inplace, "an in-place conversion takes filemap_invalidate_lock for write too, so the "
                                    "punch-hole and the conversion are one thread's work"),
               (self.config["zap_yields"], "the model has one tear-down iterator: a zap that yielded holds it"),
               (self.ioctl.punch_hole_hook, "the arch hook's steps are the ioctl thread's")]
        for refused, problem in why:
            if refused:
                raise OptionError("tdx.punch_hole_thread", problem, "false here")
        thread = FallocateThread(b, self.sizes, self.kvm.lock, bool(self.memory_failures))
        self.teardown.add_thread(thread)
        self.ioctl.other_invalidators.append(thread.busy())
        return thread

    def define(self, b: ModelBuilder) -> None:
        self.mirror_fault.define(b)
        if self.central is not None:
            self.central.define(b)
        self.teardown.define(b)
        self.gmem.define(b)
        if self.atomic is not None:
            self.atomic.bind(self.kvm.lock)
            self.atomic.define(b)
        self.fast_zap.define(b)


def _punch_holes(entries: list[Any], sizes: Sizes) -> list[PunchHole]:
    n = sizes.gfns
    if not entries:
        return [PunchHole(s, e) for s in range(n) for e in range(s + 1, n + 1)]
    out: list[PunchHole] = []
    for i, entry in enumerate(entries):
        key = f"punch_holes[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"start", "end"}:
            raise OptionError(key, f"{shown(entry)} is not a table of start, end", "{start = GFN, end = GFN}")
        start, end = entry["start"], entry["end"]
        ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
        if not ok or not 0 <= start < end <= n:
            raise OptionError(f"{key}.start/end", f"[{shown(start)}, {shown(end)}) is not a range of GFNs",
                              f"0 <= start < end <= {n}")
        out.append(PunchHole(start, end))
    return out


def _gfns(entries: list[Any], key: str, sizes: Sizes) -> tuple[int, ...]:
    n = sizes.gfns
    for i, g in enumerate(entries):
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < n:
            raise OptionError(f"{key}[{i}]", f"{shown(g)} is not a GFN", f"0 <= GFN < {n}")
    if len(set(entries)) != len(entries):
        raise OptionError(key, "a GFN is listed twice", "each GFN once")
    return tuple(entries)
