"""TDP MMU roots: one 2M-level SPTE per huge region and one 4K SPTE per GFN under it.

Kernel: arch/x86/kvm/mmu/tdp_mmu.c. Shared GFNs are mapped through the direct root
(KVM_DIRECT_ROOTS); private GFNs through the mirror root (KVM_MIRROR_ROOTS), as in a VM
with separate private and shared roots, where kvm_gfn_range_filter_to_root_types()
honours KVM_FILTER_PRIVATE / KVM_FILTER_SHARED. The mirror root's external S-EPT is not
part of this module.

Shape rule (kept by every action): a 4K SPTE is NONPRESENT unless its 2M-level parent is
NONLEAF, since the 4K table exists only under a non-leaf. Leaf zaps leave an emptied 4K
table in place, as tdp_mmu_zap_leafs() does. PFNs, permissions and A/D bits are not
modelled: a leaf only says "this GFN is mapped through this root".
"""

from __future__ import annotations

import z3

from model.lang import Family, Field, ModelBuilder

from .sizes import Sizes
from .values import SPTE_2M, SPTE_4K


class Root:
    """The SPTEs of one root: `spte_2m[r]` per huge region, `spte_4k[g]` per GFN."""

    def __init__(self, b: ModelBuilder, sizes: Sizes, name: str, private: bool) -> None:
        self.name = name
        self.private = private
        self.sizes = sizes
        self.spte_2m: Family = b.family(
            f"{name}_spte_2m", sizes.region_labels(), SPTE_2M, "NONPRESENT",
            f"the 2M-level SPTE of each huge region in the {name} root",
        )
        self.spte_4k: Family = b.family(
            f"{name}_spte_4k", sizes.gfn_labels(), SPTE_4K, "NONPRESENT",
            f"the 4K SPTE of each GFN in the {name} root",
        )

    def top(self, gfn: int) -> Field:
        return self.spte_2m[self.sizes.region_of(gfn)]

    def maps(self, gfn: int) -> z3.BoolRef:
        """A present leaf of this root covers `gfn` (a huge leaf or a 4K leaf)."""
        top = self.top(gfn).var
        return z3.Or(
            top == SPTE_2M.LEAF,
            z3.And(top == SPTE_2M.NONLEAF, self.spte_4k[gfn].var == SPTE_4K.LEAF),
        )

    def huge_leaf(self, region: int) -> z3.BoolRef:
        return self.spte_2m[region].var == SPTE_2M.LEAF

    def split_huge_page(self, region: int) -> dict[Field, object]:
        """tdp_mmu_split_huge_page(): the region's huge leaf becomes a non-leaf whose 4K
        table maps the same pages."""
        return {self.spte_2m[region]: SPTE_2M.NONLEAF,
                **{self.spte_4k[g]: SPTE_4K.LEAF for g in self.sizes.region_gfns(region)}}

    def zap_leafs(self, start: int, end: int) -> dict[Field, object]:
        """tdp_mmu_zap_leafs(root, start, end) under the write lock.

        Every present leaf that intersects [start, end) becomes SHADOW_NONPRESENT_VALUE; a
        huge leaf that crosses the boundary is zapped whole (the iterator visits it at its
        aligned base), and non-leaf tables stay.
        """
        effect: dict[Field, object] = {}
        for r in range(self.sizes.huge_pages):
            gfns = self.sizes.region_gfns(r)
            if gfns.stop <= start or gfns.start >= end:
                continue
            top = self.spte_2m[r]
            effect[top] = z3.If(top.var == SPTE_2M.LEAF, SPTE_2M.NONPRESENT, top.var)
            for g in range(max(start, gfns.start), min(end, gfns.stop)):
                effect[self.spte_4k[g]] = SPTE_4K.NONPRESENT
        return effect
