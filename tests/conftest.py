"""Test-session set-up: Hypothesis profiles, and the slow exhaustive runs scheduled first
when they are selected (so that one worker takes each of them while the other runs
everything else)."""

from __future__ import annotations

import pytest
from hypothesis import settings

# `--hypothesis-profile=long`: the fuzz tests (tests/test_fuzz.py) run this many examples
# per file instead of the few of the default run
settings.register_profile("long", max_examples=300)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

