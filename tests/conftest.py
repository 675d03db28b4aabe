"""Test-session ordering: the exhaustive runs go first, so that one worker takes each of
them while the other worker runs everything else."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("exhaustive") is None)
