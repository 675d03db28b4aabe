"""Counterexamples for reviewers: every format for every bug spec, the mail text pinned
byte for byte, replay (also against the model with the fix back on), the regression test
file, the trace graph with its neighbourhood, SVG, and --all-violations.

The pinned mail texts live in tests/golden/; after a deliberate change to the text, run
`UPDATE_GOLDEN=1 python -m pytest tests/test_export.py` and review the diff.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import networkx as nx
import pytest

from checker import export
from checker.cli import main
from checker.replay import SCHEMA
from checker.spec import read

from .docs import spec_sections, table_errors
from .shipped import ROOT, SPECS

GOLDEN = ROOT / "tests" / "golden"
BUGS = [p for p in SPECS if read(p).expect is not None and read(p).expect.result != "pass"]  # type: ignore[union-attr]
ALL = "text,json,dot,graphml,html,pytest"
A1 = ROOT / "specs" / "hugepage-over-converting-attrs__no-huge-range.toml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_regression_file(path: Path) -> None:
    """Import an exported regression test file and run its test function."""
    spec = importlib.util.spec_from_file_location(f"regression_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, n) for n in dir(module) if n.startswith("test_")]
    assert len(tests) == 1
    tests[0]()


def test_every_shipped_bug_spec_is_exported_and_pinned() -> None:
    assert len(BUGS) >= 18
    pinned = {p.stem for p in GOLDEN.glob("*.txt")}
    assert pinned == {p.stem for p in BUGS}, "a golden text without its spec, or a spec without one"


@pytest.mark.parametrize("path", BUGS, ids=lambda p: p.stem)
def test_bug_spec_exports_every_format_replays_and_fails_with_the_fix(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the reproduce command in the text names the spec as given
    name = path.stem
    code, out, _ = run(capsys, "--spec", f"specs/{path.name}", "--export", str(tmp_path), "--format", ALL)
    assert code == 0, out  # the spec's expectation is met
    for ext in ("txt", "json", "dot", "graphml", "html", "py"):
        assert f"wrote {tmp_path / f'{name}.{ext}'}" in out, ext
    if export.graphviz() is not None:
        assert (tmp_path / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    else:
        assert f"note: {name}.svg not written: Graphviz is not installed" in out

    text = (tmp_path / f"{name}.txt").read_text()
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"the mail text of {name} changed; if meant, UPDATE_GOLDEN=1"
    assert text.isascii()
    # 80 columns; only a spec path longer than a line can be may run past, on a line of its own
    long = [line for line in text.splitlines() if len(line) > 80]
    assert all(line.strip().removeprefix("--spec ").removesuffix(" \\") == f"specs/{path.name}"
               for line in long), long

    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["invariant"]["name"] == read(path).expect.invariant  # type: ignore[union-attr]
    assert doc["invariant"]["name"] in (tmp_path / f"{name}.html").read_text()
    jsonschema.validate(doc, SCHEMA)  # the file follows the schema replay checks it against
    # specs/README.md maps this trace onto the race: its step table must be this trace's
    assert not table_errors(spec_sections()[path.name], doc), table_errors(spec_sections()[path.name], doc)

    code, out, _ = run(capsys, "replay", str(tmp_path / f"{name}.json"))
    assert code == 1 and "\nreproduces: " in out, out
    assert "FAILS" not in out and "differs" not in out

    run_regression_file(tmp_path / f"{name}.py")

    guards = read(path).guards_off
    if guards:  # the same trace against the model with the fix back on
        args = [a for g in guards for a in ("--guard", f"{g}=on")]
        code, out, _ = run(capsys, "replay", str(tmp_path / f"{name}.json"), *args)
        assert code == 0 and "\ndoes not reproduce: " in out, out


def test_replay_with_the_fix_names_the_first_step_and_the_failing_part_of_its_guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "json,pytest")
    code, out, _ = run(capsys, "replay", str(tmp_path / f"{A1.stem}.json"), "--guard", "huge-range=on")
    assert code == 0
    lines = out.splitlines()
    # with the whole huge page in the invalidation range, the fault on g0 is stale
    assert "  1 differs  ioctl  kvm_pre_set_memory_attributes([g1,g2) -> PRIVATE)" in lines
    assert "  5 FAILS    vCPU0  is_page_fault_stale() == false" in lines
    flat = " ".join(out.split())
    assert "(g0 >= mmu_invalidate_range_start)" in flat and "mmu_invalidate_range_start = g0" in flat
    assert not any(line.startswith("  6 ") for line in lines), "replay goes no further than the failing step"
    assert lines[-2].startswith("does not reproduce: step 5 (vCPU0: is_page_fault_stale() == false)")

    # the regression test, pointed at the fixed model, fails and names the step
    path = tmp_path / f"{A1.stem}.py"
    path.write_text(path.read_text().replace("'guards': {}", "'guards': {'huge-range': 'on'}"))
    with pytest.raises(AssertionError, match=r"step 5 \(is_page_fault_stale\(\) == false\) no longer applies"):
        run_regression_file(path)


def test_the_regression_file_is_lint_clean_and_runs_under_pytest(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # from a checkout deep enough that the spec's path alone is longer than a line
    deep = tmp_path / ("checkout" * 8) / ("specs" * 10)
    deep.mkdir(parents=True)
    spec = deep / A1.name
    spec.write_text(A1.read_text())
    assert len(str(spec)) > 120
    run(capsys, "--spec", str(spec), "--export", str(tmp_path), "--format", "pytest")
    path = tmp_path / f"{A1.stem}.py"
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # as when the project is installed
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def _exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "json")
    return json.loads((tmp_path / f"{A1.stem}.json").read_text())


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda d: d.update(schema_version=99), "schema_version", "99 is newer than this checker's 4"),
    (lambda d: d.update(schema_version=1), "schema_version", "export the counterexample again"),
    (lambda d: d["model"].update(components=["mmio"]), "model.components", "from a different model"),
    (lambda d: d.update(format="something else"), "format", "not a counterexample file"),
    (lambda d: d.pop("steps"), "steps", "missing"),
    (lambda d: d["invariant"].update(name="no_such_invariant"), "invariant.name", "not an invariant"),
    (lambda d: d["scenario"].update(toml="components = ['nope']"), "scenario.toml", "unknown component"),
])
def test_replay_rejects_files_it_cannot_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              change: Any, key: str, problem: str) -> None:
    doc = _exported(tmp_path, capsys)
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "replay", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: {key}: ") and problem in err, err
    assert "Traceback" not in err


def test_replay_rejects_what_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    code, _, err = run(capsys, "replay", str(path))
    assert code == 2 and err.startswith(f"error: {path}: json: not valid JSON")
    code, _, err = run(capsys, "replay", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json: file: cannot be read" in err


def test_replay_stops_at_a_step_whose_action_the_model_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _exported(tmp_path, capsys)
    doc["steps"][2]["action"] = "renamed_action(vcpu=0)"
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 0
    assert "  3 FAILS" in out and "the model has no action renamed_action(vcpu=0)" in out


def test_replay_against_another_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--spec replays against a patched scenario: here the default, which has every guard on."""
    _exported(tmp_path, capsys)
    code, out, _ = run(capsys, "replay", str(tmp_path / f"{A1.stem}.json"),
                       "--spec", str(ROOT / "specs" / "attributes-default.toml"))
    assert code == 0 and "guards off: none" in out and "does not reproduce" in out


def test_exports_are_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    formats = ALL + (",svg" if export.graphviz() else "")
    for d in ("a", "b"):
        run(capsys, "--spec", str(A1), "--export", str(tmp_path / d), "--format", formats, "--neighbourhood", "1")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == len(formats.split(","))
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n


def test_neighbourhood_adds_the_other_choices_around_the_trace(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--spec", str(A1), "--export", str(tmp_path / "k0"), "--format", "graphml")
    run(capsys, "--spec", str(A1), "--export", str(tmp_path / "k1"), "--format", "graphml", "--neighbourhood", "1")
    run(capsys, "--spec", str(A1), "--export", str(tmp_path / "k2"), "--format", "graphml", "--neighbourhood", "2")
    g0, g1, g2 = (nx.read_graphml(tmp_path / k / f"{A1.stem}.graphml") for k in ("k0", "k1", "k2"))
    assert g0.number_of_nodes() == 9 and g0.number_of_edges() == 8
    assert g0.number_of_nodes() < g1.number_of_nodes() < g2.number_of_nodes()
    on_trace = [n for n, d in g1.nodes(data=True) if d["on_trace"]]
    assert sorted(on_trace) == sorted(g0.nodes)
    # with k = 1 every state off the trace is one step from it; with k = 2, two at most
    trace = set(on_trace)
    assert all(any(p in trace for p in g1.predecessors(n)) for n in g1.nodes if n not in trace)
    far = [n for n in g2.nodes if n not in trace and not any(p in trace for p in g2.predecessors(n))]
    assert far and all(any(any(q in trace for q in g2.predecessors(p)) for p in g2.predecessors(n)) for n in far)
    # at the start, vCPU0 could also have begun its fault before the ioctl: a branch off s0
    assert any(d["actor"] == "vCPU0" and not d["on_trace"] for _, _, d in g1.out_edges("s0", data=True))
    # the off-trace states that already break the invariant are marked
    assert any(d["violated"] for n, d in g2.nodes(data=True) if not d["on_trace"])


def test_neighbourhood_needs_a_graph_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "text",
                             "--neighbourhood", "1")
    assert code == 2 and "--neighbourhood shapes the trace graph" in err


def test_without_graphviz_svg_is_a_usage_error_and_dot_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "graphviz", lambda: None)
    code, _, err = run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "svg")
    assert code == 2 and "apt install graphviz" in err
    assert not any(tmp_path.iterdir()), "nothing may be written"
    code, out, _ = run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "dot")
    assert code == 0 and "svg not written: Graphviz is not installed" in out and "apt install graphviz" in out
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".dot"]


@pytest.mark.skipif(export.graphviz() is None, reason="Graphviz is not installed (apt install graphviz)")
def test_dot_renders_svg_when_graphviz_is_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "dot")
    svg = (tmp_path / f"{A1.stem}.svg").read_text()
    assert "<svg" in svg and "kvm_pre_set_memory_attributes" in svg


def test_all_violations_reports_the_shortest_counterexample_of_each(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", str(A1), "--all-violations", "--export", str(tmp_path),
                       "--format", "text,json")
    assert code == 1
    assert "violation: no_mixed_huge_page after 8 steps\nviolation: mapping_matches_attribute after 9 steps" in out
    assert "violated (2 of 4 invariants): no_mixed_huge_page (8 steps), mapping_matches_attribute (9 steps)" in out
    assert "complete=yes" in out  # it went on to the fixpoint
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{A1.stem}.{inv}.{ext}" for inv in ("no_mixed_huge_page", "mapping_matches_attribute")
                           for ext in ("txt", "json"))
    second = (tmp_path / f"{A1.stem}.mapping_matches_attribute.txt").read_text()
    assert second.startswith("KVM: x86/mmu: mapping_matches_attribute violated after 9 steps")
    assert "--invariant mapping_matches_attribute" in second
    # each file replays on its own, and its reproduce command finds the same trace
    for inv in ("no_mixed_huge_page", "mapping_matches_attribute"):
        code, replayed, _ = run(capsys, "replay", str(tmp_path / f"{A1.stem}.{inv}.json"))
        assert code == 1 and f"reproduces: {inv} violated" in replayed
    code, alone, _ = run(capsys, "--spec", str(A1), "--invariant", "mapping_matches_attribute")
    assert code == 1 and second in alone
