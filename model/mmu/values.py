"""Value sets the MMU model shares between its parts, named as in the kernel."""

from __future__ import annotations

from model.lang import EnumDomain

# kvm->mem_attr_array: an absent entry is 0 (shared); KVM_MEMORY_ATTRIBUTE_PRIVATE is bit 3.
ATTRIBUTES = EnumDomain("kvm_memory_attributes", ["SHARED", "PRIVATE"])

# enum pg_level, the two levels of the scaled-down world.
LEVEL = EnumDomain("pg_level", ["PG_LEVEL_4K", "PG_LEVEL_2M"])

# A 2M-level SPTE: not present, a non-leaf pointing to a 4K table, or a huge leaf.
SPTE_2M = EnumDomain("spte_2m", ["NONPRESENT", "NONLEAF", "LEAF"])

# A 4K-level SPTE (only meaningful while its 2M-level parent is a non-leaf).
SPTE_4K = EnumDomain("spte_4k", ["NONPRESENT", "LEAF"])
