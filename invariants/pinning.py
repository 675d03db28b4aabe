"""Pinned SPTEs (CATALOGUE.md: P-Inv1..P-Inv5): a pin survives a zap, is found through the rmap, is dropped
once, and a pinned (encrypted) page never moves."""

from __future__ import annotations

import z3

from model.lang import Model
from model.mmu.pinning import PIN_HOLDER, PIN_SPTE, PinningComponent

from .core import Invariant, Kind

RFC = "RFC 'Introduce pinned SPTEs framework' 4/8 (20200731212323.21746-5-sean.j.christopherson@intel.com)"


def _pin(m: Model) -> PinningComponent:
    part = m.parts["pinning"]
    assert isinstance(part, PinningComponent)
    return part


def _holds_pin(p: PinningComponent, g: int) -> z3.BoolRef:
    s = p.spte[g].var
    return z3.Or(s == PIN_SPTE.PRESENT_PINNED, s == PIN_SPTE.ZAPPED_PINNED)


def _each(m: Model, fn) -> z3.BoolRef:  # type: ignore[no-untyped-def]
    p = _pin(m)
    return z3.And([fn(p, g) for g in range(p.sizes.gfns)])


def _pin_survives_zap(m: Model) -> z3.BoolRef:
    return _each(m, lambda p, g: z3.Implies(_holds_pin(p, g), p.pinned[g].var))


def _pinned_in_rmap(m: Model) -> z3.BoolRef:
    return _each(m, lambda p, g: z3.Implies(_holds_pin(p, g), z3.And(p.rmap[g].var, p.sp_present.var)))


def _pinned_never_moved(m: Model) -> z3.BoolRef:
    return _each(m, lambda p, g: z3.Not(p.moved[g].var))


def _unpin_once(m: Model) -> z3.BoolRef:
    def one(p: PinningComponent, g: int) -> z3.BoolRef:
        h = p.holder[g].var
        return z3.And(
            p.pinned[g].var == (h != PIN_HOLDER.NONE),
            z3.Implies(h == PIN_HOLDER.SPTE, _holds_pin(p, g)),
            z3.Implies(_holds_pin(p, g), h != PIN_HOLDER.NONE),
        )
    return _each(m, one)


def _refault_same_pfn(m: Model) -> z3.BoolRef:
    return _each(m, lambda p, g: z3.Implies(p.spte[g].var == PIN_SPTE.ZAPPED_PINNED,
                                            p.spte_page[g].var == p.host_page[g].var))


def _zapped_pinned(m: Model) -> z3.BoolRef:
    p = _pin(m)
    return z3.Or([p.spte[g].var == PIN_SPTE.ZAPPED_PINNED for g in range(p.sizes.gfns)])


def _unpinned_page_migrated(m: Model) -> z3.BoolRef:
    p = _pin(m)
    return z3.Or([z3.And(p.migrations[g].var > 0, p.alive.var) for g in range(p.sizes.gfns)])


INVARIANTS = (
    Invariant(
        "pin_survives_zap", Kind.ALWAYS,
        "a pinned SPTE, present or zapped (ZAPPED_PINNED), still holds its page's pin: a zap "
        "through the rmap never unpins (P-Inv1)",
        RFC + ": kvm_zap_rmapp() -> kvm_mmu_zap_pinned_spte()", ("pinning",), _pin_survives_zap,
    ),
    Invariant(
        "pinned_in_rmap", Kind.ALWAYS,
        "a pinned SPTE, present or zapped, is reachable through the rmap (and its shadow page "
        "exists), so drop_spte() can find it and unpin it (P-Inv3)",
        RFC + ": rmap_get_first() accepts present or pinned", ("pinning",), _pinned_in_rmap,
    ),
    Invariant(
        "pinned_never_moved", Kind.ALWAYS,
        "a page holding an SEV guest's encrypted data is never migrated or reused by the host "
        "while the VM lives (P-Inv4, P-Inv5)",
        "C1; Brijesh Singh 2020-08-03 and 2020-10-26 (3bf90589-...@amd.com, a1ecadce-...@amd.com)",
        ("pinning",), _pinned_never_moved,
    ),
    Invariant(
        "unpin_once", Kind.ALWAYS,
        "every pin has exactly one holder (a pinned SPTE, or the VM's pinned-page list) that "
        "will drop it, and nothing unpinned is still held",
        RFC + ": drop_spte() -> rmap_remove() -> drop_pinned_spte()", ("pinning",), _unpin_once,
    ),
    Invariant(
        "refault_same_pfn", Kind.ALWAYS,
        "a zapped-pinned SPTE kept the pfn the host still maps, so a refault maps the same page "
        "(P-Inv2)",
        RFC + ": mmu_set_spte() WARN_ON_ONCE(pfn != spte_to_pfn(old))", ("pinning",), _refault_same_pfn,
    ),
    Invariant(
        "zapped_pinned_spte", Kind.SOMETIMES,
        "an SPTE is zapped but pinned: not present, pfn and rmap entry kept",
        RFC + ": SPTE_PINNED_MASK | pfn", ("pinning",), _zapped_pinned,
    ),
    Invariant(
        "unpinned_page_migrated", Kind.SOMETIMES,
        "the host migrated a page while the VM lives (only unpinned pages can move)",
        "mm migrate_pages(); kvm_set_pte_rmapp()", ("pinning",), _unpinned_page_migrated,
    ),
)
