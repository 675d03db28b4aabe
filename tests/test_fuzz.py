"""Fuzzing the gate: mutated specs and counterexample files must never crash the checker.

Every shipped spec and two exported counterexamples (a violation and a lasso) are
mutated: keys deleted or added, values of the wrong type, extreme numbers, bad
encodings, truncation, deep nesting. Whatever comes out, the checker must answer with
an exit code of 0-3 (never 5, an internal error), print no traceback, and stay within a
bounded time. The default profile runs a few examples per file; for more:

    python -m pytest tests/test_fuzz.py --hypothesis-profile=long
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import resource
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.cli import main

from .shipped import ROOT, SPECS

A1 = ROOT / "specs" / "hugepage-over-converting-attrs__no-huge-range.toml"
D4 = ROOT / "specs" / "tdx-without-mmio-caching__no-tdx-requires-mmio-caching.toml"
TIME_LIMIT = 5  # seconds per checker run: a mutated world may be large
SLACK = 20  # what a run may take beyond it (start-up, a z3 call the alarm waits for)
MEMORY = 6 << 30  # bytes the test process may reach

Path_ = tuple[Any, ...]


# -- writing TOML back -----------------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_dumps(doc: dict[str, Any]) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# -- mutations -----------------------------------------------------------------------------------


def paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key or index inside `node`, parents first."""
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += paths(v, (*prefix, k))
    return out


def at(node: Any, path: Path_) -> Any:
    for p in path:
        node = node[p]
    return node


ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
ANY_VALUE = st.recursive(
    st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(), ODD_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
    max_leaves=6,
)
EXTREME = st.sampled_from([-1, 0, 1, 2**31, 2**63, -2**63, 2**64 + 1, 10**30, 1e308, -0.0, float("nan"),
                           float("inf")])


@st.composite
def mutated(draw: st.DrawFn, data: dict[str, Any], dumps: Any) -> bytes:
    """A mutation of `data` (a parsed document), written back with `dumps`, as bytes."""
    doc = json.loads(json.dumps(data))
    where = paths(doc)
    kind = draw(st.sampled_from(["delete", "unknown", "type", "extreme", "encoding", "truncate", "nest",
                                 "huge-int"]))
    if kind in ("delete", "type", "extreme") and where:
        path = draw(st.sampled_from(where))
        parent, key = at(doc, path[:-1]), path[-1]
        if kind == "delete":
            del parent[key]
        else:
            parent[key] = draw(ANY_VALUE if kind == "type" else EXTREME)
    elif kind == "unknown":
        tables = [()] + [p for p in where if isinstance(at(doc, p), dict)]
        at(doc, draw(st.sampled_from(tables)))[draw(ODD_TEXT)] = draw(ANY_VALUE)
    text = dumps(doc)
    if kind == "nest":
        depth = draw(st.integers(20, 3000))
        text = text.replace("= ", "= " + "[" * depth + "1" + "]" * depth + " #", 1) if "= " in text else \
            text.replace(": ", ": " + "[" * depth + "1" + "]" * depth + ", \"x\": ", 1)
    if kind == "huge-int":
        text = text.replace("= ", "= 1" + "0" * 5000 + " #", 1) if "= " in text else \
            text.replace(": ", ": 1" + "0" * 5000 + ", \"x\": ", 1)
    raw = text.encode("utf-8")
    if kind == "encoding":
        how = draw(st.sampled_from(["utf-16", "latin-1 byte", "random bytes"]))
        if how == "utf-16":
            raw = text.encode("utf-16")
        else:
            spot = draw(st.integers(0, len(raw)))
            insert = b"\xe9" if how == "latin-1 byte" else draw(st.binary(min_size=1, max_size=8))
            raw = raw[:spot] + insert + raw[spot:]
    if kind == "truncate":
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


def check(args: list[str], path: Path, raw: bytes) -> None:
    """Run the checker on the mutated file: an answer in 0-3, no traceback, in bounded time."""
    path.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    took = time.monotonic() - start
    assert code in (0, 1, 2, 3), f"exit {code}\n{err.getvalue()}"
    assert "Traceback" not in err.getvalue(), err.getvalue()
    assert took < TIME_LIMIT + SLACK, f"{took:.1f} s"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < MEMORY


# a few examples per file in the default run (each may build a TDX model); the `long`
# profile (tests/conftest.py) asks for more, and gets them
EXAMPLES = settings.default.max_examples if settings.default.max_examples >= 300 else 3
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_a_mutated_spec_never_crashes_the_checker(spec: Path) -> None:
    data = tomllib.loads(spec.read_text())

    @FUZZ
    @given(mutated(data, toml_dumps))
    def run(raw: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / spec.name  # the same name: a spec's name is its file's
            check(["--spec", str(path), "--depth", "3", "--max-states", "5000", "--time-limit", str(TIME_LIMIT)],
                  path, raw)

    run()


@functools.cache
def exported(spec: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        assert main(["--spec", str(spec), "--export", tmp, "--format", "json"]) == 0
        return json.loads((Path(tmp) / f"{spec.stem}.json").read_text())


@pytest.mark.parametrize("spec", [A1, D4], ids=["violation", "cycle"])
def test_a_mutated_counterexample_never_crashes_replay(spec: Path) -> None:
    data = exported(spec)

    @FUZZ
    @given(mutated(data, lambda d: json.dumps(d, indent=1)))
    def run(raw: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.json"
            check(["replay", str(path)], path, raw)

    run()
