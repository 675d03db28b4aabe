"""The arch hook that splits huge S-EPT leaves before a private->shared conversion zaps.

Kernel: TDX huge pages RFC v5 (Sean Christopherson) 43/45 "KVM: guest_memfd: Add pre-zap
arch hook for shared<=>private conversion" <20260129011517.3545883-44-seanjc@google.com>
and 44/45 as rewritten in <aXt_L6QKB9CSTZcW@google.com>: kvm_gmem_convert() calls
kvm_arch_gmem_convert() -> kvm_x86_ops.gmem_convert = tdx_gmem_convert(), which for a
private->shared conversion takes pamt_cache_lock, then mmu_lock for write, and splits the
huge mirror leaf holding the head and the one holding the tail of the range
(tdx_sept_split_huge_pages() -> kvm_tdp_mmu_mirrors_split_huge_pages(), the API Sean
added for mirror roots in <aXt9pfN8uGLX2c-o@google.com>). tdp_mmu_split_huge_pages_root()
has no page table for the split in hand the first time it meets a huge leaf: it drops
mmu_lock (and RCU), allocates, takes the lock again and walks again from that GFN
(iter.yielded), so the leaf may be gone, or the allocation may fail with -ENOMEM, which
the hook returns and the conversion returns to userspace.

Where the hook runs relative to the conversion's invalidation is variant
`tdx_huge.conversion_split`: before kvm_mmu_invalidate_begin(), so that the hook returns
before the conversion invalidates, or after it and before the zap (Yan Zhao's v3 16/24 on
the in-place conversion branch; v5 43/45 calls it after kvm_gmem_invalidate_begin() in
the punch-hole). The first leaves a window in which no invalidation covers the range and
a fault may map a huge leaf across its boundary (Q2 in CATALOGUE.md).

Abstractions: the hook is called by the model's conversion (KVM_SET_MEMORY_ATTRIBUTES, the
ioctl thread), so pamt_cache_lock, which only the hook takes, needs no field; the split
itself is the tear-down machine's DEMOTE, as for an ACCEPT at 4K. Left out: 1G, Dynamic
PAMT (the top-up of the per-VM PAMT cache inside the allocation window), several
guest_memfd bindings (-ENOMEM after one binding was split leaves it split).
"""

from __future__ import annotations

import z3

from model.lang import Field, ModelBuilder, Step, kernel

from ..set_memory_attributes import ACTOR, Operation, PunchHole, SetMemoryAttributes
from .teardown import SeptTeardown


class GmemConvertHook:
    def __init__(self, ioctl: SetMemoryAttributes, teardown: SeptTeardown, splits: bool) -> None:
        self.ioctl, self.z = ioctl, teardown
        self.mirror, self.sizes, self.lock = teardown.mirror, teardown.sizes, ioctl.lock
        self.splits = splits  # guard `split-cross-boundary`: off, the hook splits nothing

    def define(self, b: ModelBuilder) -> None:
        for op in self.ioctl.hooked():
            for action in (self.tdx_gmem_convert, self.tdx_gmem_convert_split, self.tdp_mmu_alloc_sp_for_split,
                           self.tdp_mmu_alloc_sp_for_split_gone, self.tdp_mmu_alloc_sp_for_split_enomem,
                           self.tdx_sept_split_huge_pages_done):
                # an allocation retried often enough succeeds
                b.action(action, ACTOR, strong=action == self.tdp_mmu_alloc_sp_for_split, operation=op)

    # -- helpers --------------------------------------------------------------------

    def _crossing(self, c: Operation) -> list[tuple[z3.BoolRef, int]]:
        """The huge mirror leaves holding the head or the tail of the range, when either
        is not aligned: what tdx_sept_split_huge_pages() splits."""
        return self.z.crossing(c.start, c.end) if self.splits else []

    def _any_crossing(self, c: Operation) -> z3.BoolRef:
        return z3.Or(*[cond for cond, _ in self._crossing(c)])

    def _split_first(self, c: Operation) -> dict[Field, object]:
        """tdp_mmu_split_huge_page() of the first crossing leaf (head before tail): the
        huge leaf becomes a non-leaf whose 4K table maps the same pages, then the
        tear-down machine's RANGE.BLOCK, TRACK, kick and DEMOTE."""
        effect: dict[Field, object] = {}
        for cond, base in reversed(self._crossing(c)):
            region = self.sizes.region_of(base)
            for f, value in {**self.mirror.split_huge_page(region), **self.z.begin(region, "DEMOTE")}.items():
                effect[f] = z3.If(cond, value, effect.get(f, f.var))  # type: ignore[arg-type]
        return effect

    def _relocked(self, c: Operation) -> z3.BoolRef:
        """Back from allocating for conversion `c`'s split, with mmu_lock for write again."""
        return z3.And(self.ioctl.at_operation(c, "HOOK_ALLOC"), self.lock.write_lockable())

    # -- actions --------------------------------------------------------------------

    @kernel("tdx_gmem_convert")
    def tdx_gmem_convert(self, operation: Operation) -> Step:
        """kvm_gmem_convert() -> kvm_arch_gmem_convert() -> tdx_gmem_convert() for a
        private->shared conversion: guard(mutex)(pamt_cache_lock), guard(write_lock)(mmu_lock),
        and no huge mirror leaf holds the head or the tail of the range (none is mapped,
        they are 4K already, or the range is aligned): it returns 0 and the conversion goes
        on."""
        c = operation
        entry, record = self.ioctl.hook_entry(c)
        guard = z3.And(entry, self.lock.write_lockable(), z3.Not(self._any_crossing(c)))
        return Step(f"tdx_gmem_convert({_text(c)}): write_lock; no huge leaf to split -> 0; write_unlock",
                    guard, {**record, self.ioctl.step: self.ioctl.steps.CONVERT})

    @kernel("tdp_mmu_split_huge_pages_root")
    def tdx_gmem_convert_split(self, operation: Operation) -> Step:
        """tdx_gmem_convert() under the write lock finds a huge mirror leaf holding the head
        or the tail of the range: tdp_mmu_split_huge_pages_root() has no page table to
        split it into yet, so it drops mmu_lock to allocate one."""
        c = operation
        entry, record = self.ioctl.hook_entry(c)
        guard = z3.And(entry, self.lock.write_lockable(), self._any_crossing(c))
        return Step(f"tdx_gmem_convert({_text(c)}): write_lock; tdx_sept_split_huge_pages(): huge leaf at the "
                    "head/tail; write_unlock to allocate", guard,
                    {**record, self.ioctl.step: self.ioctl.steps.HOOK_ALLOC})

    @kernel("tdp_mmu_alloc_sp_for_split")
    def tdp_mmu_alloc_sp_for_split(self, operation: Operation) -> Step:
        """tdp_mmu_alloc_sp_for_split() succeeds; tdp_mmu_split_huge_pages_root() takes mmu_lock for write
        again and walks again from the same GFN (iter.yielded): the huge leaf is still
        there and tdp_mmu_split_huge_page() splits it."""
        c = operation
        guard = z3.And(self._relocked(c), self._any_crossing(c),
                       self.z.step.var == self.z.steps.IDLE)
        return Step(f"tdp_mmu_alloc_sp_for_split(); write_lock; tdp_mmu_split_huge_page() at the head/tail "
                    f"of {_text(c)}", guard, {**self._split_first(c), self.ioctl.step: self.ioctl.steps.HOOK_SPLIT})

    @kernel("tdp_mmu_alloc_sp_for_split")
    def tdp_mmu_alloc_sp_for_split_gone(self, operation: Operation) -> Step:
        """tdp_mmu_alloc_sp_for_split() succeeds and the walk after taking mmu_lock again finds no huge
        leaf at the head or the tail any more (zapped while the lock was dropped): the
        hook returns 0."""
        c = operation
        guard = z3.And(self._relocked(c), z3.Not(self._any_crossing(c)))
        return Step(f"tdp_mmu_alloc_sp_for_split(); write_lock; nothing left to split in {_text(c)} -> 0; "
                    "write_unlock", guard, {self.ioctl.step: self.ioctl.steps.CONVERT})

    @kernel("tdp_mmu_alloc_sp_for_split")
    def tdp_mmu_alloc_sp_for_split_enomem(self, operation: Operation) -> Step:
        """tdp_mmu_alloc_sp_for_split() fails: tdp_mmu_split_huge_pages_root() returns
        -ENOMEM, the hook returns it and the conversion fails, changing no attribute (a leaf
        split before stays split)."""
        c = operation
        guard = self._relocked(c)
        return Step(f"tdp_mmu_alloc_sp_for_split() -> NULL: -ENOMEM; {_text(c)} fails", guard,
                    self.ioctl.hook_failed(c))

    @kernel("tdx_sept_split_huge_pages")
    def tdx_sept_split_huge_pages_done(self, operation: Operation) -> Step:
        """tdx_sept_split_huge_pages(): the split's SEAMCALLs are done. After DEMOTE the walk goes on with no page table
        in hand: another crossing leaf drops mmu_lock to allocate again, none returns 0.
        After a failure (KVM_BUG_ON already fired) the hook returns an error and the
        conversion fails."""
        c = operation
        done, failed = self.z.step.var == self.z.steps.DONE, self.z.step.var == self.z.steps.FAILED
        guard = z3.And(self.ioctl.at_operation(c, "HOOK_SPLIT"), z3.Or(done, failed))
        release = self.z.release()
        after = z3.If(self._any_crossing(c), self.ioctl.steps.HOOK_ALLOC, self.ioctl.steps.CONVERT)
        effect: dict[Field, object] = {**release}
        for f, value in self.ioctl.hook_failed(c).items():
            ok = after if f is self.ioctl.step else f.var
            effect[f] = z3.If(done, ok, value)  # type: ignore[arg-type]
        return Step(f"tdx_sept_split_huge_pages({_text(c)}): split done; next head/tail leaf, or return", guard, effect)



def _text(op: Operation) -> str:
    """How a line names the operation the hook runs for."""
    return f"punch-hole {op.text()}" if isinstance(op, PunchHole) else op.text()
