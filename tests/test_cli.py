"""The command line: exit codes, clear errors for bad input, exports, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from checker.cli import main

from .shipped import ROOT

A1 = ROOT / "specs" / "hugepage-over-converting-attrs__no-huge-range.toml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_spec(tmp_path: Path, text: str, name: str = "bad.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = '''components = ["attributes"]
[sizes]
vcpus = 1
'''


@pytest.mark.parametrize(("text", "key", "allowed"), [
    ("colour = 1\n" + GOOD, "colour", "components"),
    ('components = ["attributes"]\n[sizes]\nvcpus = "two"\n', "sizes.vcpus", "an integer in 1..4"),
    ('components = ["attributes"]\n[sizes]\nvcpus = 9\n', "sizes.vcpus", "an integer in 1..4"),
    (GOOD + '[guards]\nno-such-guard = "off"\n', "guards.no-such-guard", "huge-range, range-check, seq-check"),
    (GOOD + '[guards]\nseq-check = "maybe"\n', "guards.seq-check", "'off' | 'on'"),
    ('invariants = ["no_such_invariant"]\n' + GOOD, "invariants", "no_mixed_huge_page"),
    ('components = ["tdx9"]\n', "components", "attributes"),
    (GOOD + '[attributes]\nprivate_level = "1G"\n', "attributes.private_level", "'4K' | '2M'"),
    (GOOD + '[attributes]\nconversions = [{start = 3, end = 9, attributes = "private"}]\n',
     "attributes.conversions[0].start/end", "0 <= start < end <= 4"),
    (GOOD + '[attributes]\ninitial_attributes = "SPX"\n', "attributes.initial_attributes", "4 letters S/P"),
    (GOOD + '[expect]\nresult = "maybe"\n', "expect.result", "'pass' | 'violation'"),
    (GOOD + '[expect]\nresult = "violation"\ninvariant = "huge_leaf_installed"\n', "expect.invariant",
     "no_mixed_huge_page"),
    (GOOD + '[expect]\nresult = "pass"\nwitnesses = ["nope"]\n', "expect.witnesses", "huge_leaf_installed"),
    ("depth = -1\n" + GOOD, "depth", "an integer >= 0"),
    ('check_progress = "yes"\n' + GOOD, "check_progress", "true | false"),
    (GOOD + '[expect]\nresult = "pass"\nprofiles = ["v7.3"]\n', "expect.profiles", "other profiles than"),
    (GOOD + '[expect]\nresult = "pass"\nprofiles = ["v6.16", "v6.16"]\n', "expect.profiles", "each profile once"),
    (GOOD + '[expect]\nresult = "pass"\nprofiles = ["v9.9"]\n', "expect.profiles", "v6.16"),
    (GOOD + '[expect]\nresult = "pass"\n[expect.under."v7.3"]\ndistinct = 3\n', "expect.under.v7.3",
     "a profile under which only the figures differ"),
    (GOOD + '[expect]\nresult = "pass"\n[expect.under."v6.19"]\nresult = "pass"\n', "expect.under.v6.19.result",
     "within, distinct, depth, witnesses"),
    (GOOD + '[expect]\nresult = "pass"\n[expect.under."v9.9"]\ndepth = 3\n', "expect.under.v9.9", "v6.16"),
    (GOOD + '[expect]\nresult = "pass"\n[expect.under."v6.19"]\ndistinct = 0\n', "expect.under.v6.19.distinct",
     "an integer >= 1"),
    ("components = [\n", "toml", ""),
])
def test_bad_specs_exit_2_naming_file_key_and_allowed_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, allowed: str
) -> None:
    path = write_spec(tmp_path, text)
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "--spec", path, "--export", str(out_dir))
    assert code == 2
    assert err.startswith(f"error: {path}: {key}:"), err
    assert allowed in err
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists(), "nothing may be written for a bad spec"


def test_missing_spec_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--spec", "no/such/file.toml")
    assert code == 2 and "no/such/file.toml: file: cannot be read" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--guard", "seq-check"], "write NAME=off or NAME=on"),
    (["--guard", "nope=off"], "--guard: unknown guard 'nope'; allowed: huge-range, range-check, seq-check"),
    (["--invariant", "nope"], "--invariant: unknown invariant 'nope'"),
    (["--depth", "-3"], "argument --depth: -3 is not an integer >= 0"),
    (["--format", "pdf"], "unknown format 'pdf'"),
])
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_budget_stop_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--max-states", "500")
    assert code == 3
    assert "complete=no" in out and "stopped: max-states" in out


def test_depth_bound_without_violation_exits_0_and_reports_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--depth", "5", "--ignore-expected")
    assert code == 0
    assert "depth=5 complete=no" in out and "stopped: depth bound 5 reached" in out


def test_guard_override_finds_the_bug_in_the_default_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--guard", "huge-range=off")
    assert code == 1
    assert "violation: no_mixed_huge_page after 8 steps" in out
    assert "Guard off:  huge-range: " in out and "Reproduce:\n  python -m checker --guard huge-range=off" in out


def test_a1_counterexample_reads_as_a_race(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two columns, ioctl and vCPU0, time running down, as in the catalogue's race diagrams."""
    # run as a user would, from the checkout: the reproduce command names the spec as given,
    # so an absolute path as deep as the clone would decide the width of that one line
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "--spec", str(A1.relative_to(ROOT)))
    assert code == 0
    text = out[out.index("KVM: x86/mmu:"):out.index("\nwitness")]
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    head = lines.index("    ioctl" + " " * 31 + "vCPU0")
    assert lines[head + 1] == "    -----" + " " * 31 + "-----"
    steps = [line for line in lines if line[:3].strip().isdigit()]
    assert len(steps) == 8
    # the ioctl's steps start in the first column, vCPU0's in the second
    assert steps[0] == "  1 1.1 kvm_pre_set_memory_attributes([g1,"
    assert steps[1] == "  2" + " " * 37 + "2.1 kvm_mmu_faultin_pfn(g0, shared):"
    assert steps[7] == "  8 1.2 xa_store(mem_attr_array, g1)"
    changed = lines.index("        mem_attr_array[g1]:")  # under step 8, in the ioctl's column
    assert lines[changed + 1] == "          SHARED -> PRIVATE" and lines[changed - 1] == steps[7]
    assert "fails at: mem_attr_array[g1] == SHARED" in text
    assert "where mem_attr_array[g1] = PRIVATE" in text


def test_export_writes_the_default_format_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "--spec", str(A1), "--export", str(tmp_path))
    assert code == 0
    assert [p.name for p in tmp_path.iterdir()] == [f"{A1.stem}.txt"]
    assert (tmp_path / f"{A1.stem}.txt").read_text().startswith("KVM: x86/mmu: no_mixed_huge_page violated")


def test_output_is_deterministic() -> None:
    cmd = [sys.executable, "-m", "checker", "--spec", str(A1), "--ignore-expected"]
    first = subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
    second = subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout and first.stdout


@pytest.mark.parametrize(("what", "expect"), [
    ("guards", "huge-range (attributes, on)"),
    ("invariants", "no_mixed_huge_page (ALWAYS)"),
    ("actions", "kvm_arch_post_set_memory_attributes()"),
    ("components", "attributes:"),
    ("specs", "hugepage-over-converting-attrs__no-huge-range  "),
])
def test_list(capsys: pytest.CaptureFixture[str], what: str, expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "list", what)
    assert code == 0 and expect in out


def test_witness_trace_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--witness", "huge_leaf_installed")
    assert code == 0
    assert "Witness: huge_leaf_installed reached after 6 steps" in out


def test_an_invariant_the_domains_decide_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    from checker.sanity import vacuous
    from invariants import Invariant, Kind

    from .shipped import shipped_model

    model, bounds = shipped_model("<default>")
    always = Invariant("tautology", Kind.ALWAYS, "seq is in range", "-", (),
                       lambda m: m.field("mmu_invalidate_seq").var >= 0).bind(model)
    never = Invariant("impossible", Kind.SOMETIMES, "seq is negative", "-", (),
                      lambda m: m.field("mmu_invalidate_seq").var < 0).bind(model)
    assert vacuous(model, bounds) == []
    assert vacuous(model, [always, never]) == [
        "invariant tautology holds in every state of the domains: it cannot fail",
        "witness impossible holds in no state of the domains: it cannot be reached",
    ]
    contradiction = Invariant("contradiction", Kind.ALWAYS, "seq is negative", "-", (),
                              lambda m: m.field("mmu_invalidate_seq").var < 0).bind(model)
    assert vacuous(model, [contradiction]) == [
        "invariant contradiction holds in no state of the domains: it fails in every state",
    ]


def test_a_witness_named_for_another_profile_is_checked_under_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, GOOD + '[expect]\nresult = "pass"\n[expect.under."v6.19"]\nwitnesses = ["nope"]\n')
    code, out, err = run(capsys, "--spec", path, "--profile", "v6.19")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: expect.under.v6.19.witnesses: 'nope' is not a SOMETIMES witness"), err
    assert run(capsys, "--spec", path, "--depth", "1")[0] == 0  # under its own profile nothing names it
