"""The pinning component: the RFC's hooks on hand-built states, and each invariant."""

from __future__ import annotations

import pytest

from checker.compile import compile_model
from checker.spec import parse
from model.lang import Model

from .helpers import check, labels, state, step

SPEC = """
profile = "pinned-spte-rfc"
components = ["pinning"]
[sizes]
vcpus = 1
pages_per_huge = 2
[pinning]
encrypted = "ES"
"""


def build(keep_pin: bool = True) -> Model:
    return parse(SPEC, "<test>", "t").build({"keep-pin-on-parent-zap": keep_pin})


def pinned_g0(model: Model, **extra: object) -> dict[str, int]:
    return state(model, {"spte[g0]": "PRESENT_PINNED", "rmap[g0]": True, "page_pinned[g0]": True,
                         "pin_holder[g0]": "SPTE", "guest_data[g0]": True, **extra})


def test_map_pins_an_encrypted_gfn_and_not_a_shared_one() -> None:
    model = build()
    c = compile_model(model)
    enc = step(c, state(model), "set_spte(vcpu=0, gfn=0)")
    assert enc is not None and labels(model, enc, "spte[g0]", "page_pinned[g0]", "pin_holder[g0]") == (
        "PRESENT_PINNED", "true", "SPTE")
    shared = step(c, state(model), "set_spte(vcpu=0, gfn=1)")
    assert shared is not None and labels(model, shared, "spte[g1]", "page_pinned[g1]") == ("PRESENT", "false")


def test_a_zap_through_the_rmap_keeps_pin_pfn_and_rmap_entry() -> None:
    model = build()
    c = compile_model(model)
    after = step(c, pinned_g0(model), "kvm_zap_rmapp(gfn=0)")
    assert after is not None
    assert labels(model, after, "spte[g0]", "rmap[g0]", "page_pinned[g0]") == ("ZAPPED_PINNED", "true", "true")
    unpinned = step(c, state(model, {"spte[g1]": "PRESENT", "rmap[g1]": True}), "kvm_zap_rmapp(gfn=1)")
    assert unpinned is not None and labels(model, unpinned, "spte[g1]", "rmap[g1]") == ("NOT_PRESENT", "false")


def test_a_refault_unzaps_onto_the_kept_pfn() -> None:
    model = build()
    c = compile_model(model)
    zapped = pinned_g0(model, **{"spte[g0]": "ZAPPED_PINNED"})
    after = step(c, zapped, "refault_zapped_pinned(vcpu=0, gfn=0)")
    assert after is not None and labels(model, after, "spte[g0]", "spte.pfn[g0]") == ("PRESENT_PINNED", "P")
    assert step(c, zapped, "set_spte(vcpu=0, gfn=0)") is None


@pytest.mark.parametrize(("keep", "pinned", "holder"), [(True, "true", "VM_PIN_LIST"), (False, "false", "NONE")])
def test_a_parent_zap_unpins_only_without_the_guard(keep: bool, pinned: str, holder: str) -> None:
    model = build(keep)
    after = step(compile_model(model), pinned_g0(model), "kvm_mmu_zap_all_fast()")
    assert after is not None
    assert labels(model, after, "spte[g0]", "rmap[g0]", "parent_sp") == ("NOT_PRESENT", "false", "false")
    assert labels(model, after, "page_pinned[g0]", "pin_holder[g0]") == (pinned, holder)


def test_only_an_unpinned_page_migrates_and_encrypted_data_moving_is_recorded() -> None:
    model = build()
    c = compile_model(model)
    assert step(c, pinned_g0(model), "migrate_page(gfn=0)") is None
    lost = step(c, state(model, {"guest_data[g0]": True}), "migrate_page(gfn=0)")
    assert lost is not None and not check(model, "pinned_never_moved", lost)
    present = step(c, state(model, {"spte[g1]": "PRESENT", "rmap[g1]": True}), "migrate_page(gfn=1)")
    assert present is not None and labels(model, present, "spte[g1]", "host_pfn[g1]") == ("NOT_PRESENT", "P'")


def test_vm_destruction_releases_every_pin() -> None:
    model = build()
    after = step(compile_model(model), pinned_g0(model, **{"pin_holder[g0]": "VM_PIN_LIST"}), "kvm_destroy_vm()")
    assert after is not None and labels(model, after, "page_pinned[g0]", "vm_alive") == ("false", "false")
    assert check(model, "unpin_once", after)


def test_invariants_on_hand_built_states() -> None:
    model = build()
    good = pinned_g0(model)
    for name in ("pin_survives_zap", "pinned_in_rmap", "pinned_never_moved", "unpin_once", "refault_same_pfn"):
        assert check(model, name, good), name
    assert not check(model, "pin_survives_zap", good | {"page_pinned[g0]": 0, "pin_holder[g0]": 0})
    assert not check(model, "pinned_in_rmap", good | {"rmap[g0]": 0})
    assert not check(model, "pinned_in_rmap", good | {"parent_sp": 0})
    assert not check(model, "pinned_never_moved", good | {"encrypted_page_moved[g0]": 1})
    assert not check(model, "unpin_once", good | {"pin_holder[g0]": 0})  # pinned, nobody will unpin
    assert not check(model, "unpin_once", state(model, {"pin_holder[g1]": "SPTE", "page_pinned[g1]": True}))
    zapped = pinned_g0(model, **{"spte[g0]": "ZAPPED_PINNED"})
    assert check(model, "refault_same_pfn", zapped)
    assert not check(model, "refault_same_pfn", zapped | {"host_pfn[g0]": 1})
