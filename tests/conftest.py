"""Test-session set-up: Hypothesis profiles, the light default selection, and the slow
exhaustive runs scheduled first when they are selected (so that one worker takes each of
them while the other runs everything else)."""

from __future__ import annotations

import pytest
from hypothesis import settings

# `--hypothesis-profile=long`: the fuzz tests (tests/test_fuzz.py) run this many examples
# per file instead of the few of the default run
settings.register_profile("long", max_examples=300)


# The default selection is the test command a reviewer runs on a laptop: within 3 minutes
# on 2 cores. The families below repeat one costly cross-check for every shipped spec;
# there they keep the listed representatives (every component, the cheapest worlds), and
# `-m gate`, which CI runs after the default selection, runs every parameter. Every spec
# still runs in the default selection under its own profile (tests/test_specs.py): whole
# when it is small, two levels deep when it is not.
REPRESENTATIVES: dict[str, set[str]] = {
    "test_compiled_guards_effects_and_predicates_agree_with_z3": {
        "<default>", "TwoPhase", "DieHard", "MissionariesAndCannibals", "mmio-default", "pinning-default",
        "remove-or-demote-without-track__no-track-before-remove.v6.19", "hugepage-over-converting-attrs__no-huge-range",
    },
    "test_bug_spec_exports_every_format_replays_and_fails_with_the_fix": {
        "fault-vs-conversion-stale-attr__no-seq-check", "unfrozen-mirror-sept-order__no-freeze",
        "punch-hole-hook-exact-range", "per-vm-mmio-value__global-value",
        "pinned-page-lost-after-zap__no-keep-pin-on-parent-zap",
        "tdx-without-mmio-caching__no-tdx-requires-mmio-caching",
    },
    "test_a_mutated_spec_never_crashes_the_checker": {
        "attributes-default", "mmio-two-vms-default", "pinning-default",
        "remove-or-demote-without-track__no-track-before-remove",
    },
    "test_every_spec_has_the_same_verdicts_and_shortest_counterexamples_with_symmetry": {
        "attributes-default", "mmio-default", "fault-vs-conversion-stale-attr__no-seq-check",
        "unfrozen-mirror-sept-order__no-freeze", "punch-hole-hook-exact-range",
    },
    "test_explicit_engine_and_textbook_reference_agree_on_every_shipped_model": {
        "<default>", "TwoPhase", "DieHard", "MissionariesAndCannibals", "attributes-overlap-default", "mmio-default",
        "mmio-two-vms-default", "pinning-default", "fault-vs-conversion-stale-attr__no-seq-check",
        "unfrozen-mirror-sept-order__no-freeze", "punch-hole-hook-exact-range",
    },
}


# single tests of several seconds each (many builds, subprocesses, large worlds), run by the gate
HEAVY = {
    "test_every_guard_has_a_spec_that_shows_what_breaks_without_it",  # builds every default
    "test_a_large_world_left_out_has_the_actions_of_its_small_version",
    "test_a_spec_variant_changes_the_design_and_says_so",
    "test_a_neighbourhood_is_bounded_by_the_budgets",
    "test_a_profile_skipped_for_a_spec_gives_it_the_same_model",
    "test_output_is_deterministic",
    "test_the_regression_file_is_lint_clean_and_runs_under_pytest",
    "test_sigint_from_outside_is_a_one_line_interrupt",
    "test_sigterm_from_outside_during_a_long_search",
    "test_a_punch_hole_without_a_split_removes_the_huge_leaf_whole",
    "test_rfc_v5_on_in_place_conversion_calls_its_hook_but_maps_nothing_huge",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        keep = REPRESENTATIVES.get(name)
        left_out = keep is not None and item.callspec.id not in keep  # type: ignore[attr-defined]
        if name in HEAVY or (left_out and item.get_closest_marker("slow") is None):
            item.add_marker(pytest.mark.gate)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

