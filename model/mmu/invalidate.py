"""The MMU invalidation sequence: mmu_invalidate_seq, _in_progress and the range.

Kernel: virt/kvm/kvm_main.c (kvm_mmu_invalidate_begin, kvm_mmu_invalidate_range_add,
kvm_mmu_invalidate_end) and include/linux/kvm_host.h (mmu_invalidate_retry_gfn).

Abstractions:
- The range is [mmu_invalidate_range_start, mmu_invalidate_range_end) in GFNs of the
  model; INVALID_GPA is one value past the last GFN end.
- The kernel leaves a stale range behind when in_progress drops to 0; nothing reads it
  until the next begin resets it, so the model resets it at end (dead value, fewer states).
- The sequence number counts completed invalidations and is bounded by the number of
  invalidations the scenario allows, so it never wraps.
- in_progress counts the threads between begin and end: one (the ioctl thread) unless the
  scenario has another invalidator (the mmu_notifier, option mmu_notifiers), when
  invalidations overlap and the range is the union (min of starts, max of ends) of every
  range added since in_progress was last 0, as kvm_mmu_invalidate_range_add() keeps it.
"""

from __future__ import annotations

import z3

from model.lang import Field, IntDomain, ModelBuilder

from .sizes import Sizes


class Invalidation:
    """Fields of `struct kvm` that order faults against invalidations."""

    def __init__(self, b: ModelBuilder, sizes: Sizes, max_invalidations: int, concurrent: int = 1) -> None:
        n = sizes.gfns
        self.invalid_gpa = n + 1
        names = {g: f"g{g}" for g in range(n + 1)} | {n + 1: "INVALID_GPA"}
        self.seq_domain = IntDomain(0, max_invalidations)
        self.max_invalidations = max_invalidations
        self.seq: Field = b.field(
            "mmu_invalidate_seq", self.seq_domain, 0,
            "kvm->mmu_invalidate_seq: bumped by kvm_mmu_invalidate_end()",
        )
        self.concurrent = concurrent  # the most invalidations in progress at once
        self.union = b.guard(
            "range-union",
            "kvm_mmu_invalidate_range_add() widens a range already in progress to the smallest "
            "range holding both, which persists until every invalidation in progress ends; off, "
            "the new range replaces it",
            "kvm_mmu_invalidate_range_add() in virt/kvm/kvm_main.c: \"Fully tracking multiple "
            "concurrent ranges has diminishing returns. Keep things simple and just find the "
            "minimal range which includes the current and new ranges.\"",
        ) if concurrent > 1 else True
        self.in_progress: Field = b.field(
            "mmu_invalidate_in_progress", IntDomain(0, concurrent), 0,
            "kvm->mmu_invalidate_in_progress: invalidations between begin and end",
        )
        gpa = IntDomain(0, n + 1, names)
        self.range_start: Field = b.field(
            "mmu_invalidate_range_start", gpa, self.invalid_gpa,
            "kvm->mmu_invalidate_range_start (INVALID_GPA until a range is added)",
        )
        self.range_end: Field = b.field(
            "mmu_invalidate_range_end", gpa, self.invalid_gpa, "kvm->mmu_invalidate_range_end",
        )

    def begin_with_range(self, start: z3.ArithRef | int, end: z3.ArithRef | int) -> dict[Field, object]:
        """kvm_mmu_invalidate_begin() on an idle VM, then kvm_mmu_invalidate_range_add(start, end).

        With in_progress going 0 -> 1 the range starts out INVALID_GPA, so the first add
        sets it outright; widening adds (min/max) are folded into `start`/`end` by the caller.
        With overlapping invalidations (`concurrent` > 1) the add widens a range in
        progress to the union.
        """
        if self.concurrent == 1:
            return {self.in_progress: 1, self.range_start: start, self.range_end: end}
        empty = self.range_start.var == self.invalid_gpa
        if not self.union:
            empty = z3.BoolVal(True)  # type: ignore[assignment]
        lo, hi = self.range_start.var, self.range_end.var
        return {self.in_progress: self.in_progress.var + 1,
                self.range_start: z3.If(empty, start, z3.If(start < lo, start, lo)),  # type: ignore[operator]
                self.range_end: z3.If(empty, end, z3.If(end > hi, end, hi))}  # type: ignore[operator]

    def end(self) -> dict[Field, object]:
        """kvm_mmu_invalidate_end(): seq++, smp_wmb(), in_progress--. The range is dead
        once in_progress is 0 (reset here); while another invalidation is in progress it
        stays the union."""
        effect: dict[Field, object] = {
            self.seq: self.seq.var + 1,
            self.in_progress: self.in_progress.var - 1,
            self.range_start: self.invalid_gpa,
            self.range_end: self.invalid_gpa,
        }
        if self.concurrent > 1:
            last = self.in_progress.var == 1
            for f in (self.range_start, self.range_end):
                effect[f] = z3.If(last, self.invalid_gpa, f.var)
        return effect

    def gfn_in_range(self, gfn: z3.ArithRef) -> z3.BoolRef:
        """The range part of mmu_invalidate_retry_gfn(): in progress and gfn in [start, end)."""
        return z3.And(
            self.in_progress.var > 0,
            gfn >= self.range_start.var,
            gfn < self.range_end.var,
        )
