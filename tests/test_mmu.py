"""Each action of the attributes/huge-page model, pinned on hand-built states."""

from __future__ import annotations

from functools import cache

import pytest

from checker.compile import Compiled, compile_model
from model.mmu import Sizes, build

from .helpers import labels, state, step

PRE = "kvm_pre_set_memory_attributes(conversion={c})"


def conv(start: int, end: int, attributes: str) -> str:
    return PRE.format(c=f"Conversion(start={start}, end={end}, attributes='{attributes}')")


def fault(action: str, vcpu: int, gfn: int, private: bool) -> str:
    return f"{action}(vcpu={vcpu}, gfn={gfn}, private={private})"


@cache
def world(initial: str = "shared", off: tuple[str, ...] = (), regions: int = 1, pages: int = 4,
          private_level: str = "2M", shared_level: str = "2M", conversions: int = 2) -> Compiled:
    options = {"attributes": {"initial_attributes": initial, "private_level": private_level,
                              "shared_level": shared_level, "max_conversions": conversions}}
    return compile_model(build(["attributes"], Sizes(2, regions, pages), options, off))


# -- KVM_SET_MEMORY_ATTRIBUTES --------------------------------------------------------


def test_pre_pass_widens_the_range_to_the_huge_page_only_with_the_guard() -> None:
    c = world()
    after = step(c, state(c.model), conv(1, 2, "PRIVATE"))
    assert labels(c.model, after, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g0", "g4")
    assert labels(c.model, after, "mmu_invalidate_in_progress", "ioctl.step") == ("1", "STORE")
    c = world(off=("huge-range",))
    after = step(c, state(c.model), conv(1, 2, "PRIVATE"))
    assert labels(c.model, after, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g1", "g2")


def test_pre_pass_does_not_widen_over_a_huge_page_that_is_already_mixed() -> None:
    c = world(initial="SSPP")
    after = step(c, state(c.model), conv(1, 2, "PRIVATE"))
    assert labels(c.model, after, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g1", "g2")


def test_pre_pass_widens_head_and_tail_huge_pages_of_a_range_across_regions() -> None:
    c = world(initial="SSPP", regions=2, pages=2)
    after = step(c, state(c.model), conv(1, 3, "SHARED"))
    assert labels(c.model, after, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g0", "g4")
    after = step(c, state(c.model), conv(2, 3, "SHARED"))  # head only: tail is the same page
    assert labels(c.model, after, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g2", "g4")


def test_going_private_zaps_the_whole_shared_huge_leaf_and_leaves_the_mirror_alone() -> None:
    c = world()
    st = state(c.model, {"direct_spte_2m[g0]": "LEAF", "mirror_spte_2m[g0]": "NONLEAF"})
    after = step(c, st, conv(1, 2, "PRIVATE"))
    assert labels(c.model, after, "direct_spte_2m[g0]", "mirror_spte_2m[g0]") == ("NONPRESENT", "NONLEAF")


def test_going_shared_zaps_only_the_private_leaves_in_range_and_keeps_the_table() -> None:
    c = world(initial="private")
    st = state(c.model, {"mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g0]": "LEAF",
                         "mirror_spte_4k[g1]": "LEAF", "mirror_spte_4k[g2]": "LEAF"})
    after = step(c, st, conv(1, 3, "SHARED"))
    assert labels(c.model, after, "mirror_spte_2m[g0]", "mirror_spte_4k[g0]", "mirror_spte_4k[g1]",
                  "mirror_spte_4k[g2]") == ("NONLEAF", "LEAF", "NONPRESENT", "NONPRESENT")


def test_pre_pass_waits_for_readers_and_skips_ranges_that_already_have_the_attributes() -> None:
    c = world()
    reading = state(c.model, {"fault.step[vcpu1]": "LOCKED"})
    assert step(c, reading, conv(1, 2, "PRIVATE")) is None
    assert step(c, state(c.model, {"fault.step[vcpu1]": "PFN"}), conv(1, 2, "PRIVATE")) is not None
    assert step(c, state(c.model), conv(1, 2, "SHARED")) is None  # kvm_range_has_memory_attributes()


def test_conversions_stop_at_the_scenario_bound() -> None:
    c = world(conversions=1)
    assert step(c, state(c.model, {"mmu_invalidate_seq": 1}), conv(1, 2, "PRIVATE")) is None


def test_store_pass_writes_one_gfn_at_a_time_then_goes_to_the_post_pass() -> None:
    c = world()
    st = step(c, state(c.model), conv(1, 3, "PRIVATE"))
    assert step(c, st, "xa_store(gfn=2)") is None
    st = step(c, st, "xa_store(gfn=1)")
    assert labels(c.model, st, "mem_attr_array[g1]", "ioctl.step", "ioctl.next_gfn") == ("PRIVATE", "STORE", "g2")
    st = step(c, st, "xa_store(gfn=2)")
    assert labels(c.model, st, "mem_attr_array[g2]", "ioctl.step") == ("PRIVATE", "POST")


def test_post_pass_ends_the_invalidation_and_recomputes_the_mixed_bit() -> None:
    c = world()
    st = step(c, state(c.model), conv(1, 2, "PRIVATE"))
    st = step(c, st, "xa_store(gfn=1)")
    post = "kvm_arch_post_set_memory_attributes()"
    assert step(c, {**st, "fault.step[vcpu0]": 5}, post) is None  # a reader holds mmu_lock
    st = step(c, st, post)
    assert labels(c.model, st, "mmu_invalidate_seq", "mmu_invalidate_in_progress", "mmu_invalidate_range_start",
                  "hugepage_mixed[g0]", "ioctl.step") == ("1", "0", "INVALID_GPA", "true", "IDLE")
    # converting the rest of the region makes it uniform again: the bit is cleared
    st = step(c, st, conv(0, 4, "PRIVATE"))
    for g in range(4):
        st = step(c, st, f"xa_store(gfn={g})")
    st = step(c, st, post)
    assert labels(c.model, st, "hugepage_mixed[g0]", "mmu_invalidate_seq") == ("false", "2")


# -- the fault path -------------------------------------------------------------------


def test_a_fault_starts_only_where_the_access_is_not_mapped() -> None:
    c = world()
    start = fault("kvm_mmu_faultin_pfn", 0, 1, False)
    st = step(c, state(c.model, {"mmu_invalidate_seq": 1}), start)
    assert labels(c.model, st, "fault.step[vcpu0]", "fault.gfn[vcpu0]", "fault.mmu_seq[vcpu0]") == \
        ("SEQ_SNAPSHOT", "g1", "1")
    assert step(c, state(c.model, {"direct_spte_2m[g0]": "LEAF"}), start) is None
    assert step(c, state(c.model, {"mirror_spte_2m[g0]": "LEAF"}), start) is not None  # other root


def test_attribute_mismatch_exits_to_userspace() -> None:
    c = world()
    st = step(c, state(c.model), fault("kvm_mmu_faultin_pfn", 0, 0, True))
    assert step(c, st, fault("faultin_pfn", 0, 0, True)) is None
    out = step(c, st, fault("kvm_mmu_prepare_memory_fault_exit", 0, 0, True))
    assert labels(c.model, out, "fault.step[vcpu0]", "fault.is_private[vcpu0]") == ("IDLE", "false")


@pytest.mark.parametrize(("private", "gmem", "want"), [(True, "2M", "PG_LEVEL_2M"), (True, "4K", "PG_LEVEL_4K"),
                                                       (False, "4K", "PG_LEVEL_2M")])
def test_faultin_takes_max_level_from_guest_memfd_for_private_memory(private: bool, gmem: str, want: str) -> None:
    c = world(initial="private" if private else "shared", private_level=gmem)
    st = step(c, state(c.model), fault("kvm_mmu_faultin_pfn", 0, 0, private))
    st = step(c, st, fault("faultin_pfn", 0, 0, private))
    assert labels(c.model, st, "fault.step[vcpu0]", "fault.max_level[vcpu0]") == ("PFN", want)


def _at(c: Compiled, where: str, private: bool = False, changes: dict[str, object] | None = None) -> dict[str, int]:
    """vCPU0 at `where` in a fault on g0, with fault->max_level 2M, plus `changes`."""
    base: dict[str, object] = {"fault.step[vcpu0]": where, "fault.gfn[vcpu0]": 0, "fault.is_private[vcpu0]": private,
                               "fault.max_level[vcpu0]": "PG_LEVEL_2M"}
    return state(c.model, base | (changes or {}))


IN_RANGE = {"mmu_invalidate_in_progress": 1, "mmu_invalidate_range_start": "g0", "mmu_invalidate_range_end": "g1",
            "ioctl.step": "STORE"}
OUT_OF_RANGE = IN_RANGE | {"mmu_invalidate_range_start": "g1", "mmu_invalidate_range_end": "g2"}


@pytest.mark.parametrize(("off", "changes", "stale"), [
    ((), {}, False),
    ((), {"mmu_invalidate_seq": 1}, True),
    (("seq-check",), {"mmu_invalidate_seq": 1}, False),
    ((), IN_RANGE, True),
    ((), OUT_OF_RANGE, False),
    (("range-check",), IN_RANGE, False),
])
def test_is_page_fault_stale_checks_seq_and_range_under_their_guards(
    off: tuple[str, ...], changes: dict[str, object], stale: bool
) -> None:
    c = world(off=off)
    st = _at(c, "LOCKED", changes=changes)
    retry = step(c, st, fault("is_page_fault_stale", 0, 0, False))
    go_on = step(c, st, fault("page_fault_not_stale", 0, 0, False))
    assert (retry is not None, go_on is not None) == (stale, not stale)
    if retry is not None:
        assert labels(c.model, retry, "fault.step[vcpu0]") == ("IDLE",)


@pytest.mark.parametrize(("private", "changes", "level"), [
    (False, {}, "PG_LEVEL_2M"),
    (False, {"hugepage_mixed[g0]": True}, "PG_LEVEL_4K"),
    (False, {"host_pfn_mapping_level[g0]": "PG_LEVEL_4K"}, "PG_LEVEL_4K"),
    (True, {"host_pfn_mapping_level[g0]": "PG_LEVEL_4K"}, "PG_LEVEL_2M"),
    (True, {"fault.max_level[vcpu0]": "PG_LEVEL_4K"}, "PG_LEVEL_4K"),
])
def test_hugepage_adjust_reads_the_mixed_bit_and_the_backing(
    private: bool, changes: dict[str, object], level: str
) -> None:
    c = world(initial="private" if private else "shared")
    st = step(c, _at(c, "NOT_STALE", private, changes), fault("kvm_mmu_hugepage_adjust", 0, 0, private))
    assert labels(c.model, st, "fault.step[vcpu0]", "fault.goal_level[vcpu0]") == ("MAP", level)


def _mapping(c: Compiled, goal: str, private: bool = False, sptes: dict[str, str] | None = None) -> dict[str, int]:
    """vCPU0 walking for a fault on g1 towards `goal`, with some SPTEs already set."""
    changes: dict[str, object] = {
        "fault.step[vcpu0]": "MAP", "fault.gfn[vcpu0]": 1, "fault.is_private[vcpu0]": private,
        "fault.max_level[vcpu0]": "PG_LEVEL_2M", "fault.goal_level[vcpu0]": goal,
    }
    return state(c.model, changes | (sptes or {}))


def test_walk_links_a_table_then_installs_the_4k_leaf() -> None:
    c = world()
    st = _mapping(c, "PG_LEVEL_4K")
    assert step(c, st, fault("map_target_level_4k", 0, 1, False)) is None
    st = step(c, st, fault("tdp_mmu_link_sp", 0, 1, False))
    assert labels(c.model, st, "direct_spte_2m[g0]") == ("NONLEAF",)
    st = step(c, st, fault("map_target_level_4k", 0, 1, False))
    assert labels(c.model, st, "direct_spte_4k[g1]", "direct_spte_4k[g0]", "fault.step[vcpu0]") == \
        ("LEAF", "NONPRESENT", "IDLE")


def test_walk_splits_a_huge_leaf_for_a_4k_goal_and_then_finds_it_spurious() -> None:
    c = world()
    st = _mapping(c, "PG_LEVEL_4K", sptes={"direct_spte_2m[g0]": "LEAF"})
    st = step(c, st, fault("tdp_mmu_split_huge_page", 0, 1, False))
    assert labels(c.model, st, "direct_spte_2m[g0]", *[f"direct_spte_4k[g{g}]" for g in range(4)]) == \
        ("NONLEAF", "LEAF", "LEAF", "LEAF", "LEAF")
    assert step(c, st, fault("map_target_level_4k", 0, 1, False)) is None
    done = step(c, st, fault("map_spurious", 0, 1, False))
    assert labels(c.model, done, "fault.step[vcpu0]") == ("IDLE",)


def test_a_huge_leaf_replaces_a_non_leaf_and_frees_its_table() -> None:
    c = world(initial="private")
    st = _mapping(c, "PG_LEVEL_2M", private=True,
                  sptes={"mirror_spte_2m[g0]": "NONLEAF", "mirror_spte_4k[g2]": "LEAF"})
    st = step(c, st, fault("map_target_level_2m", 0, 1, True))
    assert labels(c.model, st, "mirror_spte_2m[g0]", "mirror_spte_4k[g2]") == ("LEAF", "NONPRESENT")


# -- overlapping invalidations: the mmu_notifier -------------------------------------------

@cache
def overlapping(off: tuple[str, ...] = ()) -> Compiled:
    options = {"attributes": {"initial_attributes": "shared", "max_conversions": 1, "mmu_notifiers": 1,
                              "conversions": [{"start": 1, "end": 2, "attributes": "private"}]}}
    return compile_model(build(["attributes"], Sizes(1, 1, 4), options, off))


def test_overlapping_invalidations_count_and_keep_the_union() -> None:
    """kvm_mmu_invalidate_begin() counts, kvm_mmu_invalidate_range_add() widens the range in
    progress to the union, and the range stays until the last end; guard range-union off,
    the later range replaces it."""
    c = overlapping()
    begun = step(c, state(c.model), conv(1, 2, "PRIVATE"))
    assert begun is not None
    both = step(c, begun, "kvm_mmu_notifier_invalidate_range_start(start=3, end=4)")
    assert both is not None
    assert labels(c.model, both, "mmu_invalidate_in_progress", "mmu_invalidate_range_start",
                  "mmu_invalidate_range_end") == ("2", "g0", "g4")
    one_left = step(c, both, "kvm_mmu_notifier_invalidate_range_end()")
    assert one_left is not None
    assert labels(c.model, one_left, "mmu_invalidate_in_progress", "mmu_invalidate_seq",
                  "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("1", "1", "g0", "g4")
    alone = step(c, state(c.model), "kvm_mmu_notifier_invalidate_range_start(start=3, end=4)")
    assert alone is not None and labels(c.model, alone, "mmu_invalidate_range_start") == ("g3",)
    lost = overlapping(("range-union",))
    begun = step(lost, state(lost.model), conv(1, 2, "PRIVATE"))
    assert begun is not None
    replaced = step(lost, begun, "kvm_mmu_notifier_invalidate_range_start(start=3, end=4)")
    assert replaced is not None
    assert labels(lost.model, replaced, "mmu_invalidate_range_start", "mmu_invalidate_range_end") == ("g3", "g4")


def test_a_conversion_may_start_after_an_mmu_notifier_invalidation_ended() -> None:
    """The scenario's conversion bound counts conversions, not the notifier's seq bumps:
    after the notifier's invalidation ended, the one conversion allowed may still start."""
    c = overlapping()
    started = step(c, state(c.model), "kvm_mmu_notifier_invalidate_range_start(start=3, end=4)")
    assert started is not None
    ended = step(c, started, "kvm_mmu_notifier_invalidate_range_end()")
    assert ended is not None and labels(c.model, ended, "mmu_invalidate_seq") == ("1",)
    converted = step(c, ended, conv(1, 2, "PRIVATE"))
    assert converted is not None and labels(c.model, converted, "mmu_invalidate_in_progress") == ("1",)
    assert step(c, {**converted, **{k: v for k, v in state(c.model, {"mmu_invalidate_seq": 2}).items()
                                    if k == "mmu_invalidate_seq"}}, conv(1, 2, "PRIVATE")) is None


def test_the_mmu_notifier_zaps_the_shared_side_only() -> None:
    c = overlapping()
    mapped = state(c.model, {"direct_spte_2m[g0]": "LEAF", "mirror_spte_2m[g0]": "NONLEAF",
                             "mirror_spte_4k[g1]": "LEAF"})
    after = step(c, mapped, "kvm_mmu_notifier_invalidate_range_start(start=0, end=2)")
    assert after is not None
    assert labels(c.model, after, "direct_spte_2m[g0]", "mirror_spte_4k[g1]") == ("NONPRESENT", "LEAF")
    assert step(c, {**after, "fault.step[vcpu0]": 3}, "kvm_mmu_notifier_invalidate_range_end()") is None  # a reader


def test_no_mmu_notifier_with_in_place_conversion() -> None:
    from model.lang import OptionError
    from model.mmu.profiles import load

    with pytest.raises(OptionError, match="no mmu_notifier invalidates"):
        build(["attributes"], Sizes(1, 1, 2), {"attributes": {"mmu_notifiers": 1}}, profile=load("gmem-inplace-v8"))
