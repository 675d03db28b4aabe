"""The Counter model as benchmarks/field.py writes it for SPIN and TLC has the state space
of examples/counter.py, so their benchmark figures compare the same search (skipped where
the tools are not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch
from examples import counter

_SPEC = importlib.util.spec_from_file_location("field", Path(__file__).resolve().parent.parent / "benchmarks/field.py")
assert _SPEC is not None and _SPEC.loader is not None
field = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(field)


@pytest.mark.parametrize("engine", ["spin", "tlc"])
def test_spin_and_tlc_count_the_counter_s_states(engine: str) -> None:
    ours = ExplicitSearch(compile_model(counter.build(3, 4)), [], Budget()).run().distinct
    theirs = getattr(field, engine)(3, 4)
    if theirs is None:
        pytest.skip(f"{engine} is not installed (see benchmarks/field.py)")
    assert ours == theirs["distinct"] == 3**3 * 4
    assert theirs["cpu"] > 0 and theirs["peak_rss"] > 0
