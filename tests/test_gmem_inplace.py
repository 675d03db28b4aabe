"""guest_memfd in-place conversion (attributes.conversion = kvm_gmem_set_attributes, profile
gmem-inplace-v8) on hand-built states: the file's invalidate lock against kvm_gmem_get_pfn(),
the outstanding-reference check, the exact invalidation range, the store at once, order-0
folios, and a punch-hole that zaps both kinds."""

from __future__ import annotations

from typing import Any

from checker.compile import compile_model
from invariants import CATALOGUE, applicable
from model.mmu import Sizes, build
from model.mmu.profiles import load as profile

from .helpers import Lazy, check, labels, state, step

SIZES = Sizes(2, 1, 2)


def world(conversions: list[dict[str, Any]], initial: str = "private", guards_off: tuple[str, ...] = (),
          name: str = "gmem-inplace-v8") -> Lazy:
    options = {"attributes": {"initial_attributes": initial, "private_level": "2M", "shared_level": "2M",
                              "host_pins": 1, "max_conversions": 1, "conversions": conversions},
               "tdx": {"max_punch_holes": 1, "punch_holes": [{"start": 0, "end": 1}], "max_memslot_updates": 0,
                       "nx_recovery": False}}
    return Lazy(lambda: build(["tdx", "guest"], SIZES, options, guards_off=guards_off, profile=profile(name)))


TO_SHARED = [{"start": 1, "end": 2, "attributes": "shared"}]
TO_PRIVATE = [{"start": 1, "end": 2, "attributes": "private"}]
INPLACE = world(TO_SHARED)
C = Lazy(lambda: compile_model(INPLACE.get()))
PER_VM = world(TO_SHARED, name="v7.3")
C_PER_VM = Lazy(lambda: compile_model(PER_VM.get()))
SHARED = "conversion=Conversion(start=1, end=2, attributes='SHARED')"
PRIVATE = "conversion=Conversion(start=1, end=2, attributes='PRIVATE')"


def test_the_conversion_invalidates_exactly_its_range_and_stores_at_once() -> None:
    """__kvm_gmem_set_attributes(): the range as it is (per-VM widens it to the huge page,
    guard huge-range), then mas_store_prealloc() of every GFN in one step, then
    kvm_gmem_invalidate_end(); KVM_SET_MEMORY_ATTRIBUTES is gone."""
    begun = step(C, state(INPLACE), f"kvm_gmem_set_attributes({SHARED})")
    assert begun is not None
    assert labels(INPLACE, begun, "mmu_invalidate_range_start", "mmu_invalidate_range_end", "ioctl.step") == (
        "g1", "g2", "STORE")
    stored = step(C, begun, "mas_store_prealloc()")
    assert stored is not None
    assert labels(INPLACE, stored, "mem_attr_array[g0]", "mem_attr_array[g1]", "ioctl.step") == (
        "PRIVATE", "SHARED", "POST")
    ended = step(C, stored, "gmem_invalidate_end()")
    assert ended is not None
    assert labels(INPLACE, ended, "mmu_invalidate_in_progress", "mmu_invalidate_seq", "hugepage_mixed[g0]") == (
        "0", "1", "false")  # nothing tracks the mixed huge page: order-0 folios are never mapped huge
    per_vm = step(C_PER_VM, state(PER_VM), f"kvm_pre_set_memory_attributes({SHARED})")
    assert per_vm is not None
    assert labels(PER_VM, per_vm, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g0", "g2")
    assert not any(k.startswith(("kvm_pre_set_memory_attributes", "xa_store")) for k in INPLACE.get().by_key)
    assert "huge-range" not in INPLACE.get().guards and "huge-range" in PER_VM.get().guards


def test_get_pfn_waits_for_the_file_lock_and_maps_order_0_folios() -> None:
    """kvm_gmem_get_pfn() takes filemap_invalidate_lock for read: no fault gets its pfn while
    the conversion (or a punch-hole) holds it for write. Shared faults go through guest_memfd
    too, and its folios are order 0: max_level 4K even with 2M backing options."""
    for m, c, waits in ((INPLACE, C, True), (PER_VM, C_PER_VM, False)):
        snap = {"fault.step[vcpu0]": "SEQ_SNAPSHOT", "fault.gfn[vcpu0]": 0, "fault.is_private[vcpu0]": True}
        for held in ("STORE", "POST", "PUNCH_ZAP", "TRUNCATE"):
            st = state(m, {**snap, "ioctl.step": held})
            assert (step(c, st, "faultin_pfn(vcpu=0, gfn=0, private=True)") is None) is waits, (held, waits)
    at = {"fault.step[vcpu0]": "SEQ_SNAPSHOT", "fault.gfn[vcpu0]": 1, "mem_attr_array[g1]": "SHARED"}
    for m, c, level in ((INPLACE, C, "PG_LEVEL_4K"), (PER_VM, C_PER_VM, "PG_LEVEL_2M")):
        got = step(c, state(m, at), "faultin_pfn(vcpu=0, gfn=1, private=False)")
        assert got is not None and labels(m, got, "fault.max_level[vcpu0]") == (level,)


def test_a_conversion_to_private_waits_for_the_hosts_pin() -> None:
    """kvm_gmem_has_outstanding_references(): -EAGAIN while userspace pins a page of the
    range (guard gmem-outstanding-references); the pin itself waits for the file lock."""
    for guards_off, refused in (((), True), (("gmem-outstanding-references",), False)):
        m = world(TO_PRIVATE, initial="shared", guards_off=guards_off)
        c = Lazy(lambda m=m: compile_model(m.get()))
        pinned = state(m, {"host.pinned[g1]": True, "host.pins": 1})
        after = step(c, pinned, f"kvm_gmem_set_attributes({PRIVATE})")
        assert (after is None) is refused
        assert step(c, state(m), f"kvm_gmem_set_attributes({PRIVATE})") is not None
        stored = state(m, {"host.pinned[g1]": True, "host.pins": 1, "mem_attr_array[g1]": "PRIVATE"})
        assert not check(m, "no_host_reference_to_private", stored)
    busy = state(INPLACE, {"mem_attr_array[g1]": "SHARED", "ioctl.step": "STORE"})
    assert step(C, busy, "pin_user_pages(gfn=1)") is None
    assert step(C, {**busy, "ioctl.step": 0}, "pin_user_pages(gfn=1)") is not None


def test_a_punch_hole_zaps_both_kinds() -> None:
    """kvm_gmem_get_all_gfns_filter(): with in-place conversion a punch-hole invalidates
    KVM_FILTER_SHARED | KVM_FILTER_PRIVATE; per-VM, only the private side."""
    mapped = {"mirror_spte_2m[g0]": "NONLEAF", "direct_spte_2m[g0]": "NONLEAF", "direct_spte_4k[g0]": "LEAF"}
    for m, c, zapped in ((INPLACE, C, "NONPRESENT"), (PER_VM, C_PER_VM, "LEAF")):
        after = step(c, state(m, mapped), "kvm_gmem_punch_hole(hole=PunchHole(start=0, end=1))")
        assert after is not None and labels(m, after, "direct_spte_4k[g0]") == (zapped,)


def test_which_invariants_apply() -> None:
    inplace = {i.name for i in applicable(CATALOGUE, INPLACE.get())}
    per_vm = {i.name for i in applicable(CATALOGUE, PER_VM.get())}
    assert "no_host_reference_to_private" in inplace and "no_host_reference_to_private" not in per_vm
    assert "mixed_flag_exact" in per_vm and "mixed_flag_exact" not in inplace
    assert "no_mixed_huge_page" in inplace


def test_rfc_v5_on_in_place_conversion_calls_its_hook_but_maps_nothing_huge() -> None:
    """RFC v5 with attributes.conversion = kvm_gmem_set_attributes (a spec's [variants]): the
    in-place conversion calls tdx_gmem_convert() after its invalidation began, as RFC v5's
    own conversion does; guest_memfd's folios are order 0, so a private fault's max level is
    4K and the hook never finds a huge leaf to split (ARCHITECTURE.md: the combination waits
    for huge folios)."""
    options = {"attributes": {"initial_attributes": "private", "max_conversions": 1, "conversions": TO_SHARED},
               "tdx": {"max_punch_holes": 0, "max_memslot_updates": 0, "nx_recovery": False}}
    v5 = profile("tdx-hugepage-rfc-v5").with_variants({"attributes.conversion": "kvm_gmem_set_attributes"}, "test")
    m = Lazy(lambda: build(["tdx_huge"], SIZES, options, profile=v5))
    c = Lazy(lambda: compile_model(m.get()))
    begun = step(c, state(m), f"kvm_gmem_set_attributes({SHARED})")
    assert begun is not None and labels(m, begun, "ioctl.step", "mmu_invalidate_range_start") == ("HOOK", "g1")
    faulting = state(m, {"fault.step[vcpu0]": "SEQ_SNAPSHOT", "fault.gfn[vcpu0]": 0, "fault.is_private[vcpu0]": True})
    got = step(c, faulting, "faultin_pfn(vcpu=0, gfn=0, private=True)")
    assert got is not None and labels(m, got, "fault.max_level[vcpu0]") == ("PG_LEVEL_4K",)
    per_vm = Lazy(lambda: build(["tdx_huge"], SIZES, options, profile=profile("tdx-hugepage-rfc-v5")))
    got = step(Lazy(lambda: compile_model(per_vm.get())), state(per_vm, {"fault.step[vcpu0]": "SEQ_SNAPSHOT",
               "fault.gfn[vcpu0]": 0, "fault.is_private[vcpu0]": True}), "faultin_pfn(vcpu=0, gfn=0, private=True)")
    assert got is not None and labels(per_vm, got, "fault.max_level[vcpu0]") == ("PG_LEVEL_2M",)
