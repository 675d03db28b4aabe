"""Per-GFN memory attributes and what they allow: KVM_LPAGE_MIXED_FLAG and backing levels.

Kernel: kvm->mem_attr_array (virt/kvm/kvm_main.c), slot->arch.lpage_info[].disallow_lpage
with KVM_LPAGE_MIXED_FLAG (arch/x86/kvm/mmu/mmu.c: hugepage_test_mixed,
hugepage_has_attrs, kvm_mmu_init_memslot_memory_attributes), the guest_memfd folio order
(kvm_gmem_get_pfn -> kvm_max_level_for_order) and host_pfn_mapping_level().

Abstractions: one memslot covers every GFN of the model, so each huge region sits fully
inside it; disallow_lpage keeps only the mixed bit (no write tracking, no unaligned slot
ends); the backing levels are fixed per scenario.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3

from model.lang import BOOL, Family, ModelBuilder

from .sizes import Sizes
from .values import ATTRIBUTES, LEVEL


class MemoryAttributes:
    def __init__(
        self,
        b: ModelBuilder,
        sizes: Sizes,
        initial: Sequence[str],
        private_level: str,
        shared_level: str,
    ) -> None:
        self.sizes = sizes
        self.attr: Family = b.family(
            "mem_attr_array", sizes.gfn_labels(), ATTRIBUTES, list(initial),
            "kvm->mem_attr_array[gfn]: SHARED (no entry) or KVM_MEMORY_ATTRIBUTE_PRIVATE",
        )
        # kvm_mmu_init_memslot_memory_attributes(): exact mixed bits when the slot is created.
        mixed = [len({initial[g] for g in sizes.region_gfns(r)}) > 1 for r in range(sizes.huge_pages)]
        self.mixed: Family = b.family(
            "hugepage_mixed", sizes.region_labels(), BOOL, mixed,
            "KVM_LPAGE_MIXED_FLAG in lpage_info[2M].disallow_lpage of the huge region",
        )
        self.gmem_level: Family = b.family(
            "gmem_max_level", sizes.region_labels(), LEVEL, f"PG_LEVEL_{private_level}",
            "kvm_max_level_for_order() of the guest_memfd folio backing the region",
        )
        self.host_level: Family = b.family(
            "host_pfn_mapping_level", sizes.region_labels(), LEVEL, f"PG_LEVEL_{shared_level}",
            "host_pfn_mapping_level() of the shared memory backing the region",
        )

    def is_private(self, gfn: int) -> z3.BoolRef:
        """kvm_mem_is_private(kvm, gfn)."""
        return self.attr[gfn].var == ATTRIBUTES.PRIVATE

    def region_has(self, region: int, value: z3.ExprRef) -> z3.BoolRef:
        """hugepage_has_attrs() at 2M: every GFN of the region has attributes `value`."""
        return z3.And(*[self.attr[g].var == value for g in self.sizes.region_gfns(region)])

    def region_uniform(self, region: int) -> z3.BoolRef:
        gfns = self.sizes.region_gfns(region)
        first = self.attr[gfns[0]].var
        return z3.And(*[self.attr[g].var == first for g in gfns[1:]])

    def range_has(self, start: int, end: int, value: z3.ExprRef) -> z3.BoolRef:
        """kvm_range_has_memory_attributes(kvm, start, end, ~0, value)."""
        return z3.And(*[self.attr[g].var == value for g in range(start, end)])
