"""Value sets the MMU model shares between its parts, named as in the kernel."""

from __future__ import annotations

from model.lang import EnumDomain

# kvm->mem_attr_array: an absent entry is 0 (shared); KVM_MEMORY_ATTRIBUTE_PRIVATE is bit 3.
ATTRIBUTES = EnumDomain("kvm_memory_attributes", ["SHARED", "PRIVATE"])

# enum pg_level, the two levels of the scaled-down world.
LEVEL = EnumDomain("pg_level", ["PG_LEVEL_4K", "PG_LEVEL_2M"])

# A 2M-level SPTE: not present, a non-leaf pointing to a 4K table, a huge leaf, or
# FROZEN_SPTE (a mirror SPTE whose SEAMCALL is in flight; never seen in a direct root).
SPTE_2M = EnumDomain("spte_2m", ["NONPRESENT", "NONLEAF", "LEAF", "FROZEN"])

# A 4K-level SPTE (only meaningful while its 2M-level parent is a non-leaf).
SPTE_4K = EnumDomain("spte_4k", ["NONPRESENT", "LEAF", "FROZEN"])

# An S-EPT entry at the 2M level, as the TDX module holds it: free, a non-leaf added by
# TDH.MEM.SEPT.ADD (upstream TDX maps private memory at 4K only, so nothing else), or,
# with huge pages, a 2M leaf in the states of a 4K one, or a non-leaf blocked by
# TDH.MEM.RANGE.BLOCK before TDH.MEM.PAGE.PROMOTE.
SEPT_2M = EnumDomain(
    "sept_2m",
    ["FREE", "NONLEAF", "PENDING", "MAPPED", "BLOCKED", "PENDING_BLOCKED", "NONLEAF_BLOCKED"],
)

# An S-EPT leaf at 4K: free; PENDING after TDH.MEM.PAGE.AUG; MAPPED after the guest's
# TDG.MEM.PAGE.ACCEPT; BLOCKED / PENDING_BLOCKED after TDH.MEM.RANGE.BLOCK of a MAPPED /
# PENDING entry.
SEPT_4K = EnumDomain("sept_4k", ["FREE", "PENDING", "MAPPED", "BLOCKED", "PENDING_BLOCKED"])

# How many TDH.MEM.TRACKs ago an entry was blocked (its blocking epoch relative to the
# TD epoch); "2 or more" is one value, since the module only asks whether the blocking
# epoch is older than the epoch of every vCPU still running in the guest.
BLOCK_AGE = EnumDomain("bepoch_age", ["CURRENT", "PREVIOUS", "OLDER"])

# Where a TD vCPU is: outside the guest, or inside it at the current TD epoch or at the
# previous one (TDH.MEM.TRACK cannot advance past an epoch a running vCPU entered at).
VCPU_MODE = EnumDomain("vcpu_mode", ["OUTSIDE_GUEST_MODE", "IN_GUEST_CURRENT", "IN_GUEST_PREVIOUS"])

# The private page of a GFN in guest_memfd: allocated in the file, or freed to the host.
PAGE = EnumDomain("gmem_page", ["ALLOCATED", "FREED"])
