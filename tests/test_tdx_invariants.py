"""Each TDX invariant and witness on hand-built states."""

from __future__ import annotations

import pytest

from checker.sanity import vacuous
from invariants import CATALOGUE, applicable
from model.mmu import Sizes, build
from model.mmu.profiles import load as profile

from .helpers import Lazy, check, state

PROFILE = Lazy(lambda: profile("v6.16"))
MODEL = Lazy(lambda: build(["tdx", "guest"], Sizes(2, 1, 2), {"attributes": {"initial_attributes": "private"}},
                    profile=PROFILE.get()))
TABLE = {"sept_2m[g0]": "NONLEAF", "mirror_spte_2m[g0]": "NONLEAF"}
LEAF = {**TABLE, "mirror_spte_4k[g0]": "LEAF", "sept_4k[g0]": "PENDING"}
ZAPPING = {"ioctl.step": "CONVERT_ZAP", "sept_zap.step": "TRACK", "mmu_invalidate_in_progress": 1}


def holds(name: str, changes: dict[str, object]) -> bool:
    return check(MODEL, name, state(MODEL, changes))


@pytest.mark.parametrize(("changes", "ok"), [
    ({}, True),
    (TABLE, True),
    (LEAF, True),
    ({**LEAF, "sept_4k[g0]": "MAPPED"}, True),
    ({"mirror_spte_2m[g0]": "NONLEAF"}, False),  # a mirror table the S-EPT lacks
    ({**LEAF, "sept_4k[g0]": "FREE"}, False),  # a mirror leaf the S-EPT lacks
    ({**LEAF, "sept_4k[g0]": "BLOCKED"}, False),  # mapped by the mirror, blocked in the S-EPT
    # inside its owner's window: vCPU0 wrote the table and has not done TDH.MEM.SEPT.ADD yet
    ({"mirror_spte_2m[g0]": "NONLEAF", "fault.step[vcpu0]": "FROZEN_TOP", "fault.is_private[vcpu0]": True}, True),
    ({**LEAF, "sept_4k[g0]": "FREE", "fault.step[vcpu1]": "FROZEN_LEAF", "fault.is_private[vcpu1]": True}, True),
    ({**LEAF, "sept_4k[g0]": "FREE", "fault.step[vcpu1]": "FROZEN_LEAF", "fault.is_private[vcpu1]": True,
      "fault.gfn[vcpu1]": 1}, False),  # vCPU1 owns g1's SPTE, not g0's
])
def test_external_mirrors_mirror(changes: dict[str, object], ok: bool) -> None:
    assert holds("external_mirrors_mirror", changes) is ok


@pytest.mark.parametrize(("changes", "ok"), [
    (LEAF, True),
    ({"sept_2m[g0]": "NONLEAF"}, False),  # an S-EPT table without its mirror table
    ({**TABLE, "sept_4k[g1]": "MAPPED"}, False),  # an S-EPT leaf without its mirror leaf
    ({**TABLE, "sept_4k[g1]": "BLOCKED"}, False),
    ({**TABLE, "sept_4k[g1]": "BLOCKED", **ZAPPING}, True),  # the zapper holds the write lock
    ({**TABLE, "sept_4k[g1]": "PENDING", "fault.step[vcpu0]": "AUGED", "fault.gfn[vcpu0]": 1,
      "fault.is_private[vcpu0]": True, "mirror_spte_4k[g1]": "FROZEN"}, True),  # AUG done, not yet written
])
def test_no_orphan_external(changes: dict[str, object], ok: bool) -> None:
    assert holds("no_orphan_external", changes) is ok


@pytest.mark.parametrize(("changes", "ok"), [
    ({}, True),
    ({"mirror_spte_2m[g0]": "FROZEN"}, False),  # frozen, nobody owns it
    ({"mirror_spte_2m[g0]": "FROZEN", "fault.step[vcpu0]": "FROZEN_TOP", "fault.is_private[vcpu0]": True}, True),
    ({**TABLE, "mirror_spte_4k[g1]": "FROZEN", "fault.step[vcpu0]": "FROZEN_LEAF",
      "fault.is_private[vcpu0]": True}, False),  # vCPU0 owns g0's SPTE, g1's is frozen by nobody
    ({**TABLE, "mirror_spte_4k[g0]": "FROZEN", "fault.step[vcpu0]": "FROZEN_LEAF", "fault.is_private[vcpu0]": True,
      "fault.step[vcpu1]": "AUGED", "fault.is_private[vcpu1]": True}, False),  # two owners
])
def test_frozen_owned(changes: dict[str, object], ok: bool) -> None:
    assert holds("frozen_owned", changes) is ok


def test_no_kvm_bug() -> None:
    assert holds("no_kvm_bug", {})
    assert not holds("no_kvm_bug", {"kvm->vm_bugged": True})


@pytest.mark.parametrize(("changes", "ok"), [
    ({"gmem_page[g0]": "FREED"}, True),
    ({**LEAF, "gmem_page[g0]": "FREED"}, False),  # the S-EPT still maps a freed page
    ({**TABLE, "sept_4k[g0]": "BLOCKED", "gmem_page[g0]": "FREED"}, False),
    ({"td.tlb.vcpu1[g0]": True, "gmem_page[g0]": "FREED"}, False),  # a TLB still holds it
    ({"td.tlb.vcpu1[g0]": True}, True),
])
def test_no_free_while_mapped(changes: dict[str, object], ok: bool) -> None:
    assert holds("no_free_while_mapped", changes) is ok


@pytest.mark.parametrize(("changes", "ok"), [
    ({"td.accepted[g0]": True, **TABLE, "sept_4k[g0]": "MAPPED"}, True),
    ({"td.accepted[g0]": True, **TABLE, "sept_4k[g0]": "BLOCKED"}, True),  # on its way out
    ({"td.accepted[g0]": True}, False),  # accepted, and the S-EPT no longer has it
    ({"td.accepted[g0]": True, **TABLE, "sept_4k[g0]": "PENDING"}, False),  # re-added: contents zeroed
])
def test_no_lost_accepted_data(changes: dict[str, object], ok: bool) -> None:
    assert holds("no_lost_accepted_data", changes) is ok


def test_witnesses_on_hand_built_states() -> None:
    both = {"fault.step[vcpu0]": "FROZEN_TOP", "fault.is_private[vcpu0]": True,
            "fault.step[vcpu1]": "MAP", "fault.is_private[vcpu1]": True, "fault.gfn[vcpu1]": 1}
    assert holds("frozen_entry_contended", {**both, "mirror_spte_2m[g0]": "FROZEN"})
    assert not holds("frozen_entry_contended", both)
    assert not holds("frozen_entry_contended", {**both, "mirror_spte_2m[g0]": "FROZEN", "fault.step[vcpu1]": "IDLE"})
    assert holds("seamcall_busy", {"kvm_tdx->wait_for_sept_zap": True})
    assert holds("seamcall_busy", {"fault.step[vcpu0]": "RESTORE_LEAF"})
    assert not holds("seamcall_busy", {"fault.step[vcpu0]": "RESTORE_LEAF", "kvm->vm_bugged": True})
    removing = {**ZAPPING, "sept_zap.step": "REMOVE", **TABLE, "sept_4k[g0]": "BLOCKED",
                "sept_bepoch[g0]": "OLDER", "td.accepted[g0]": True}
    assert holds("accepted_page_removed_by_conversion", removing)
    assert not holds("accepted_page_removed_by_conversion", {**removing, "sept_bepoch[g0]": "CURRENT"})
    assert not holds("accepted_page_removed_by_conversion", {**removing, "ioctl.step": "PUNCH_ZAP"})


def test_no_tdx_invariant_is_decided_by_the_domains_alone() -> None:
    bounds = [i.bind(MODEL) for i in applicable(CATALOGUE, MODEL)]
    assert {b.name for b in bounds} >= {"external_mirrors_mirror", "no_orphan_external", "frozen_owned",
                                        "no_kvm_bug", "no_free_while_mapped", "no_lost_accepted_data",
                                        "no_mixed_huge_page"}
    assert vacuous(MODEL, bounds) == []
