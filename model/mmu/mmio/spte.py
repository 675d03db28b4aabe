"""SPTE words at the bit level, for an EPT-based VM (arch/x86/kvm/mmu/spte.h, spte.c, vmx.h).

The model does not store 64-bit words: an SPTE field holds one of a handful of named
patterns (`SPTE`), and each pattern stands for the word below. The kernel's predicates
(`is_mmio_spte`, `is_shadow_present_pte`, `is_ept_ve_possible`, the present checks of
`make_spte` and `FNAME(sync_spte)`) are written here as z3 bit-vector functions of those
words and of the masks, and are case-split over the patterns (`model.lang.bits`).

Bits that matter (EPT, 64-bit host):
- 0, 1, 2: R, W, X (VMX_EPT_RWX_MASK). W without R is an EPT misconfiguration; no RWX
  is an EPT violation (a #VE instead, for a TD, when bit 63 is clear).
- 11: SPTE_MMU_PRESENT_MASK, the only bit is_shadow_present_pte() tests.
- 63: VMX_EPT_SUPPRESS_VE_BIT, also SHADOW_NONPRESENT_VALUE.
- 3..10 and 52..62: the MMIO generation. It lies outside every mask here, so it is kept
  as a separate field (`mmio_gen`) rather than in the word; words below carry 0 there.
- 12..51: the PFN or, for an MMIO SPTE, the GPA. Words carry gfn 1 (bit 12).
Left out: memory-type bits, A/D bits, the L1TF shadow_nonpresent_or_rsvd_mask (0 on EPT).
"""

from __future__ import annotations

import z3

from model.lang import EnumDomain

R, W, X = 1 << 0, 1 << 1, 1 << 2
VMX_EPT_RWX_MASK = R | W | X
VMX_EPT_MISCONFIG_WX_VALUE = W | X
SPTE_MMU_PRESENT_MASK = 1 << 11
VMX_EPT_SUPPRESS_VE_BIT = 1 << 63
SHADOW_NONPRESENT_VALUE = VMX_EPT_SUPPRESS_VE_BIT
FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5A0
SPTE_MMIO_ALLOWED_MASK = (1 << 63) | (((1 << 40) - 1) << 12) | 0b111
PFN = 1 << 12  # gfn / pfn 1, page-aligned

# shadow_present_mask with exec-only EPT (kvm_mmu_set_ept_masks): only the suppress-#VE
# bit, so that a W or X violation does not become a #VE.
SHADOW_PRESENT_MASK = VMX_EPT_SUPPRESS_VE_BIT


def mmio_mask(suppress_ve: bool) -> int:
    """shadow_mmio_mask: RWX | suppress-#VE since 7fa5e2929198, RWX before it."""
    return VMX_EPT_RWX_MASK | (VMX_EPT_SUPPRESS_VE_BIT if suppress_ve else 0)


# kvm->arch.shadow_mmio_value: the VMX EPT-misconfig value, or 0 for a TD.
MMIO_VALUE = EnumDomain("shadow_mmio_value", ["VMX_EPT_MISCONFIG_WX_VALUE", "ZERO"])
MMIO_VALUE_WORD = {"VMX_EPT_MISCONFIG_WX_VALUE": VMX_EPT_MISCONFIG_WX_VALUE, "ZERO": 0}

# The named SPTE patterns and their words.
SPTE = EnumDomain("spte", [
    "SHADOW_NONPRESENT_VALUE",  # not present (zapped, or never mapped)
    "FROZEN_SPTE",  # an atomic zap is in flight
    "PRESENT",  # make_spte() of a RAM page, full access
    "PRESENT_NO_ACCESS",  # make_spte() with pte_access == 0 (FNAME(sync_spte))
    "MMIO_WX",  # make_mmio_spte() with value VMX_EPT_MISCONFIG_WX_VALUE
    "MMIO_ZERO",  # make_mmio_spte() with value 0 (a TD's)
])
SPTE_WORD = {
    "SHADOW_NONPRESENT_VALUE": SHADOW_NONPRESENT_VALUE,
    "FROZEN_SPTE": FROZEN_SPTE,
    "PRESENT": SPTE_MMU_PRESENT_MASK | SHADOW_PRESENT_MASK | VMX_EPT_RWX_MASK | PFN,
    "PRESENT_NO_ACCESS": SPTE_MMU_PRESENT_MASK | SHADOW_PRESENT_MASK | PFN,
    "MMIO_WX": VMX_EPT_MISCONFIG_WX_VALUE | PFN,
    "MMIO_ZERO": 0 | PFN,
}


# -- the kernel's predicates, on words ------------------------------------------------


def is_mmio_spte(spte: z3.BitVecRef, value: z3.BitVecRef, mask: z3.BitVecRef) -> z3.BoolRef:
    """`(spte & shadow_mmio_mask) == kvm->arch.shadow_mmio_value` (enable_mmio_caching apart)."""
    return spte & mask == value


def is_shadow_present_pte(spte: z3.BitVecRef) -> z3.BoolRef:
    return spte & SPTE_MMU_PRESENT_MASK != 0


def has_access(spte: z3.BitVecRef) -> z3.BoolRef:
    """Some of R/W/X is set: hardware can use the entry (all KVM paths assume this of a present SPTE)."""
    return spte & VMX_EPT_RWX_MASK != 0


def is_ept_ve_possible(spte: z3.BitVecRef) -> z3.BoolRef:
    """spte.h: a #VE (not an EPT violation exit) can follow from this SPTE."""
    return z3.And(
        z3.BitVecVal(SHADOW_PRESENT_MASK & VMX_EPT_SUPPRESS_VE_BIT, 64) != 0,
        spte & VMX_EPT_SUPPRESS_VE_BIT == 0,
        spte & VMX_EPT_RWX_MASK != VMX_EPT_MISCONFIG_WX_VALUE,
    )


def ept_misconfig(spte: z3.BitVecRef) -> z3.BoolRef:
    """The CPU reports an EPT misconfiguration: writable but not readable."""
    return spte & (R | W) == W


def ept_not_present(spte: z3.BitVecRef) -> z3.BoolRef:
    """The CPU treats the entry as not present: no R, W or X."""
    return spte & VMX_EPT_RWX_MASK == 0


def suppress_ve(spte: z3.BitVecRef) -> z3.BoolRef:
    return spte & VMX_EPT_SUPPRESS_VE_BIT != 0


def no_effective_present(pte_access: z3.BitVecRef) -> z3.BoolRef:
    """FNAME(sync_spte) / make_spte() since the fix: `(pte_access | shadow_present_mask) ==
    SHADOW_NONPRESENT_VALUE`, i.e. nothing but the non-present value's bits."""
    return pte_access | SHADOW_PRESENT_MASK == SHADOW_NONPRESENT_VALUE


def no_effective_present_unmasked(pte_access: z3.BitVecRef) -> z3.BoolRef:
    """The check before the fix: `!(pte_access | shadow_present_mask)`, which can never be
    true once shadow_present_mask holds the suppress-#VE bit (Chao Gao, Paolo Bonzini)."""
    return pte_access | SHADOW_PRESENT_MASK == 0
