"""Each invariant on hand-built states, and none of them trivially true or false."""

from __future__ import annotations

import pytest

from checker.sanity import vacuous
from invariants import CATALOGUE, Kind, applicable
from model.mmu import Sizes, build

from .helpers import Lazy, check, state

MODEL = Lazy(lambda: build(["attributes"], Sizes(2, 1, 4), {"attributes": {"initial_attributes": "SPPP"}}))


@pytest.mark.parametrize(("changes", "holds"), [
    ({}, True),
    ({"direct_spte_2m[g0]": "LEAF"}, False),  # shared huge leaf over PRIVATE g1..g3
    ({"mirror_spte_2m[g0]": "LEAF"}, False),  # private huge leaf over SHARED g0
    ({"mirror_spte_2m[g0]": "LEAF", "mem_attr_array[g0]": "PRIVATE"}, True),
    ({"direct_spte_2m[g0]": "NONLEAF", "direct_spte_4k[g0]": "LEAF"}, True),  # 4K leaves are never mixed
])
def test_no_mixed_huge_page(changes: dict[str, object], holds: bool) -> None:
    assert check(MODEL, "no_mixed_huge_page", state(MODEL, changes)) is holds


@pytest.mark.parametrize(("changes", "holds"), [
    ({"direct_spte_2m[g0]": "NONLEAF", "direct_spte_4k[g0]": "LEAF"}, True),
    ({"direct_spte_2m[g0]": "NONLEAF", "direct_spte_4k[g1]": "LEAF"}, False),  # g1 is PRIVATE
    ({"mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g0]": "LEAF"}, False),  # g0 is SHARED
    ({"mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g3]": "LEAF"}, True),
    ({"mirror_spte_2m[g0]": "NONPRESENT", "mirror_spte_4k[g0]": "LEAF"}, True),  # no table: not mapped
    # while an invalidation is in progress a stale mapping may exist
    ({"direct_spte_2m[g0]": "NONLEAF", "direct_spte_4k[g1]": "LEAF", "mmu_invalidate_in_progress": 1}, True),
])
def test_mapping_matches_attribute(changes: dict[str, object], holds: bool) -> None:
    assert check(MODEL, "mapping_matches_attribute", state(MODEL, changes)) is holds


@pytest.mark.parametrize(("changes", "holds"), [
    ({}, True),  # SPPP is mixed and the bit is set at slot creation
    ({"hugepage_mixed[g0]": False}, False),
    ({"mem_attr_array[g0]": "PRIVATE", "hugepage_mixed[g0]": False}, True),
    ({"mem_attr_array[g0]": "PRIVATE"}, False),  # uniform but flagged mixed
    ({"mem_attr_array[g0]": "PRIVATE", "mmu_invalidate_in_progress": 1}, True),  # not yet recomputed
])
def test_mixed_flag_exact(changes: dict[str, object], holds: bool) -> None:
    assert check(MODEL, "mixed_flag_exact", state(MODEL, changes)) is holds


def test_witnesses_on_hand_built_states() -> None:
    assert not check(MODEL, "fault_between_pre_and_post", state(MODEL))
    during = {"mmu_invalidate_in_progress": 1, "fault.step[vcpu1]": "NOT_STALE"}
    assert check(MODEL, "fault_between_pre_and_post", state(MODEL, during))
    assert not check(MODEL, "fault_between_pre_and_post", state(MODEL, during | {"fault.step[vcpu1]": "PFN"}))
    assert not check(MODEL, "huge_leaf_installed", state(MODEL, {"direct_spte_2m[g0]": "NONLEAF"}))
    assert check(MODEL, "huge_leaf_installed", state(MODEL, {"mirror_spte_2m[g0]": "LEAF"}))


def test_no_invariant_is_decided_by_the_domains_alone() -> None:
    """An invariant no state can break, or a witness no state can reach, would check
    nothing: each must be true in some state of the domains and false in another."""
    bounds = [i.bind(MODEL) for i in applicable(CATALOGUE, MODEL)]
    assert len(bounds) == 5
    assert vacuous(MODEL, bounds) == []


def test_every_invariant_states_itself_and_cites_the_kernel() -> None:
    for inv in CATALOGUE:
        assert inv.statement and inv.reference and inv.kind in (Kind.ALWAYS, Kind.SOMETIMES, Kind.PROGRESS)
        assert (inv.kind is Kind.PROGRESS) == (inv.waiting is not None)
    names = [i.name for i in CATALOGUE]
    assert len(names) == len(set(names))
