"""The command line as a gate: every way a run can end has its own exit code, nothing is
left half-written, every name and input is checked, and no message can drive a terminal.

Each test here stands for one defect a reliability audit found; the name says what must
hold."""

from __future__ import annotations

import ast
import errno
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from checker import cli, files
from checker.cli import main
from checker.files import MAX_INPUT_BYTES, TEMP_SUFFIX

from .shipped import ROOT

A1 = ROOT / "specs" / "hugepage-over-converting-attrs__no-huge-range.toml"
D4 = ROOT / "specs" / "tdx-without-mmio-caching__no-tdx-requires-mmio-caching.toml"
SMALL = 'components = ["attributes"]\n[sizes]\nvcpus = 1\n'


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what fixtures printed
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `args`, which must be refused before any work: exit 2, one line, no output."""
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert out == "", "a refused command must not have started the search"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def spec_file(tmp_path: Path, text: str, name: str = "s.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def a1_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("a1")
    assert main(["--spec", str(A1), "--export", str(out), "--format", "json"]) == 0
    return json.loads((out / f"{A1.stem}.json").read_text())


# -- exit codes: a crash is never a verdict ----------------------------------------------


def test_an_unexpected_exception_is_exit_5_in_one_line(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "compile_model", broken)
    code, _, err = run(capsys, "--depth", "1")
    assert code == 5
    assert err == ("internal error: RuntimeError: boom (run again with --debug for the traceback); "
                   "this is a bug in the checker\n")
    code, _, err = run(capsys, "--depth", "1", "--debug")
    assert code == 5 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    code, _, err = run(capsys, "--depth", "1")
    assert code == 5 and "Traceback (most recent call last)" in err


def test_replay_crash_is_not_read_as_reproduces(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, a1_json: dict[str, object]) -> None:
    path = tmp_path / "a1.json"
    path.write_text(json.dumps(a1_json))

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("x")

    monkeypatch.setattr(cli, "replay_document", broken)
    code, _, err = run(capsys, "replay", str(path))
    assert code == 5 and err.startswith("internal error: KeyError")


@pytest.mark.parametrize(("exception", "code", "message"), [
    (KeyboardInterrupt(), 130, "interrupted\n"),
    (MemoryError(), 6, "system error: out of memory; bound the run with --max-states\n"),
    (OSError(errno.ENOSPC, "No space left on device"), 6, "system error: No space left on device\n"),
])
def test_interrupts_and_system_failures_have_their_own_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, exception: BaseException, code: int,
    message: str,
) -> None:
    def fail(model: object) -> None:
        raise exception

    monkeypatch.setattr(cli, "compile_model", fail)
    got, _, err = run(capsys, "--depth", "1")
    assert (got, err) == (code, message)


def test_help_lists_the_exit_codes_and_version_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for number, meaning in [(5, "internal error"), (6, "system error"), (130, "interrupted"), (143, "terminated")]:
        assert f"{number:>3}  {meaning}" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("kvm-mmu-checker ")


def test_the_installed_script_runs_the_same_entry_point() -> None:
    script = Path(sys.executable).parent / "kvm-mmu-checker"
    assert script.exists(), "pip install -e . installs the kvm-mmu-checker script"
    done = subprocess.run([str(script), "--spec", "", "--depth", "1"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: --spec: an empty name")


# -- exports: validated first, written whole or not at all ---------------------------------


@pytest.mark.parametrize("target", ["/dev/null", "FILE", "FILE/sub"])
def test_an_export_target_is_checked_before_the_search(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       target: str) -> None:
    (tmp_path / "FILE").write_text("x")
    target = target.replace("FILE", str(tmp_path / "FILE"))
    err = usage_error(capsys, "--spec", str(A1), "--export", target)
    assert "is not a directory" in err


def failing_call(real: Callable[..., None], n: int, error: OSError) -> Callable[..., None]:
    """`real`, except that its n-th call raises `error` (a full disk, a failing rename)."""
    calls = 0

    def call(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            raise error
        real(*args)

    return call


def test_a_failed_export_writes_nothing_and_keeps_what_was_there(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{A1.stem}.txt").write_text("the old one")
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files, "_write", failing_call(files._write, 3, full))
    code, _, err = run(capsys, "--spec", str(A1), "--export", str(out), "--format", "text,json,dot,html")
    assert code == 6 and "No space left on device" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{A1.stem}.txt"]
    assert (out / f"{A1.stem}.txt").read_text() == "the old one"


def test_a_failed_rename_puts_back_the_files_it_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    real = os.replace
    monkeypatch.setattr(os, "replace", failing_call(real, 2, OSError(errno.EIO, "Input/output error")))
    with pytest.raises(files.SystemFailure):
        files.write_all(tmp_path, {"a.txt": "new a", "b.txt": "new b", "c.txt": "new c"})
    monkeypatch.setattr(os, "replace", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a" and (tmp_path / "b.txt").read_text() == "old b"


def test_leftovers_of_a_killed_export_are_removed_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".x.txt.{dead.stdout.strip()}{TEMP_SUFFIX}"
    live = tmp_path / f".y.txt.{os.getppid()}{TEMP_SUFFIX}"  # a run still writing
    stale.write_text("half")
    live.write_text("half")
    files.write_all(tmp_path, {"x.txt": "whole"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "x.txt"]
    assert (tmp_path / "x.txt").read_text() == "whole"


def test_written_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        [path] = files.write_all(tmp_path, {"x.txt": "text"})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


# -- names, in both directions ------------------------------------------------------------


def test_an_unknown_guard_switched_on_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = usage_error(capsys, "--guard", "huge-rnage=on", "--depth", "1")
    assert "--guard: unknown guard 'huge-rnage'; allowed: huge-range, range-check, seq-check" in err
    path = spec_file(tmp_path, SMALL + '[guards]\nhuge-rnage = "on"\n')
    err = usage_error(capsys, "--spec", path)
    assert f"{path}: guards.huge-rnage: unknown guard 'huge-rnage'; allowed: huge-range" in err


def test_replay_refuses_an_unknown_guard_instead_of_reproducing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, a1_json: dict[str, object],
) -> None:
    path = tmp_path / "a1.json"
    path.write_text(json.dumps(a1_json))
    err = usage_error(capsys, "replay", str(path), "--guard", "huge-rnage=on")
    assert "unknown guard 'huge-rnage'; allowed: huge-range, range-check, seq-check" in err
    code, out, _ = run(capsys, "replay", str(path), "--guard", "huge-range=on")
    assert code == 0 and "does not reproduce" in out


@pytest.mark.parametrize(("option", "message"), [
    ("--witness", "--witness: unknown witness 'nope'; allowed: fault_between_pre_and_post, huge_leaf_installed"),
    ("--invariant", "--invariant: unknown invariant 'nope'"),
])
def test_witness_and_invariant_names_are_checked_before_the_search(capsys: pytest.CaptureFixture[str], option: str,
                                                                   message: str) -> None:
    assert message in usage_error(capsys, option, "nope")


# -- inputs: bounded, typed -----------------------------------------------------------------


@pytest.mark.parametrize(("data", "where"), [
    ('description = "caf\xe9"\n'.encode("latin-1"), "byte 0xe9 at offset 18"),
    (SMALL.encode("utf-16"), "byte 0xff at offset 0"),
])
def test_a_file_not_in_utf8_is_refused_naming_the_offset(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         data: bytes, where: str) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(data)
    assert f"{path}: file: is not UTF-8 text ({where})" in usage_error(capsys, "--spec", str(path))
    assert "is not UTF-8 text" in usage_error(capsys, "replay", str(path))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_file_that_is_not_regular_is_refused_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero") if kind == "device" else tmp_path
    for command in (["--spec", str(path)], ["replay", str(path)], ["replay", str(A1.with_suffix(".json")),
                                                                   "--spec", str(path)]):
        err = usage_error(capsys, *command)
        assert "is a directory" in err if kind == "directory" else "is not a regular file" in err, err


def test_a_file_over_the_size_limit_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(SMALL + "#" * MAX_INPUT_BYTES)
    assert "is larger than 4 MiB" in usage_error(capsys, "--spec", str(path))


@pytest.mark.parametrize(("text", "message"), [
    ("a = " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper than 32 levels"),
    ("depth = 1" + "0" * 5000 + "\n", "an integer of more than 4300 digits"),
    ("a = " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
])
def test_parser_limits_are_input_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str,
                                        message: str) -> None:
    assert message in usage_error(capsys, "--spec", spec_file(tmp_path, text))
    path = tmp_path / "x.json"
    path.write_text(text.replace("a = ", "").replace("depth = ", ""))
    assert message in usage_error(capsys, "replay", str(path))


# -- replay: the whole document is checked ---------------------------------------------------


def _mutated(doc: dict[str, object], path: str, value: object) -> dict[str, object]:
    copy = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node = copy
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return copy


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "message"), [
    ("steps.0.actor", 7, "steps[0].actor: 7 is not of type string"),
    ("steps.0.text", ["x"], "steps[0].text: ['x'] is not of type string"),
    ("steps.0.changes", {"ioctl.step": "IDLE"}, "steps[0].changes.ioctl.step: 'IDLE' is not of type array"),
    ("steps.0.changes", {"ioctl.step": ["IDLE"]}, "steps[0].changes.ioctl.step: ['IDLE'] has 1 items"),
    ("invariant.name", 3, "invariant.name: 3 is not of type string"),
    ("steps.1.step", 7, "steps[1].step: 7 is not its place in the trace"),
    ("steps.0.action", _DELETE, "steps[0].action: missing"),
    ("steps.0.colour", "red", "steps[0].colour: unknown key"),
    ("scenario.guards", {"huge-range": "maybe"}, "scenario.guards.huge-range: 'maybe' is not allowed"),
    ("scenario.guards", {"no-such": "on"}, "scenario.guards.no-such: unknown guard"),
    ("cycle", {"who": "vCPU0", "first_step": 1, "steps": 8}, "cycle: only a result 'cycle' has a cycle"),
])
def test_replay_checks_the_whole_document(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          a1_json: dict[str, object], path: str, value: object,
                                          message: str) -> None:
    file = tmp_path / "x.json"
    file.write_text(json.dumps(_mutated(a1_json, path, value)))
    assert message in usage_error(capsys, "replay", str(file))


def test_a_cycle_must_end_at_the_last_step(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--spec", str(D4), "--export", str(tmp_path), "--format", "json"]) == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / f"{D4.stem}.json").read_text())
    for first, steps, message in [(0, 7, "cycle.first_step: 0 is less than 1"),
                                  (1, 3, "cycle: steps 1 to 3 do not end at the last step, 7")]:
        file = tmp_path / "bad.json"
        file.write_text(json.dumps(_mutated(_mutated(doc, "cycle.first_step", first), "cycle.steps", steps)))
        assert message in usage_error(capsys, "replay", str(file))


# -- generated code ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ['a"b', 'x"""; import os; os.system("touch PWNED"); """', "q\\", "é\x1b]0;t\x07"])
def test_the_regression_file_is_injection_safe(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    spec = tmp_path / f"{name}__x.toml"
    spec.write_text(A1.read_text())
    assert main(["--spec", str(spec), "--export", str(out), "--format", "pytest"]) == 0
    [path] = out.iterdir()
    source = path.read_text()
    tree = ast.parse(source)
    assert isinstance(tree.body[0], ast.Expr) and f"{name}__x" in ast.literal_eval(tree.body[0].value)
    # run it as pytest would: import the file, call its test
    program = ("import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
               "[f() for n, f in ns.items() if n.startswith('test_')]")
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True,
                          cwd=tmp_path, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "PWNED").exists()


# -- empty and nonsensical options -----------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--spec", ""], "--spec: an empty name"),
    (["replay", "x.json", "--spec", ""], "--spec: an empty name"),
    (["--export", ""], "--export: an empty path"),
    (["--export", "out", "--format", ""], "--format '': an empty format"),
    (["--export", "out", "--format", ",,,"], "--format ',,,': an empty format"),
    (["--format", "json"], "--format chooses what --export writes"),
    (["--time-limit", "nan"], "'nan' is not a finite number of seconds > 0"),
    (["--time-limit", "inf"], "'inf' is not a finite number of seconds > 0"),
    (["--time-limit", "0"], "'0' is not a finite number of seconds > 0"),
    (["--max-states", "0"], "0 is not an integer >= 1"),
    (["--invariant", ""], "argument --invariant: an empty name"),
    (["list", "specs", "--spec", "x"], "--spec names one scenario"),
])
def test_empty_or_nonsensical_options_are_errors(capsys: pytest.CaptureFixture[str], args: list[str],
                                                 message: str) -> None:
    assert message in usage_error(capsys, *args)


HUGE = 'profile = "tdx-hugepage-rfc-v3"\ncomponents = ["tdx_huge"]\n'


@pytest.mark.parametrize(("text", "key", "message"), [
    ("invariants = []\n" + SMALL, "invariants", "an empty list would check nothing but the model's own facts"),
    ('components = []\n', "components", "an empty list: a model needs a component"),
    (HUGE + '[attributes]\nmax_conversions = 99\n', "attributes.max_conversions", "99 is out of range"),
    (HUGE + '[guest]\ncolour = 1\n', "guest.colour", "unknown option"),
])
def test_spec_errors_name_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, key: str,
                                  message: str) -> None:
    path = spec_file(tmp_path, text)
    assert f"{path}: {key}: {message}" in usage_error(capsys, "--spec", path)


# -- budgets ---------------------------------------------------------------------------------------


def test_max_states_stops_at_the_budget_not_at_the_end_of_a_level(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--max-states", "50000")
    assert code == 3 and "stopped: max-states budget reached" in out
    assert "distinct=50000 " in out


def test_the_time_limit_covers_the_build() -> None:
    """Building and compiling the huge-page model takes seconds, in a fresh process."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "checker", "--spec", "tdx-hugepage-default", "--time-limit", "2"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    took = time.monotonic() - start
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.fullmatch(r"stopped: time-limit budget reached while (building|compiling) the model\n", done.stdout)
    assert took < 6, f"{took:.1f} s"


def test_every_phase_checks_the_deadline(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Between units of work: here a compiler that checks between actions that take long."""
    from model.lang import checkpoint

    def slow(model: object) -> None:
        while True:
            checkpoint()
            time.sleep(0.05)

    cli.default_spec()  # built once here: the run's own build is then quick
    monkeypatch.setattr(cli, "compile_model", slow)
    start = time.monotonic()
    code, out, _ = run(capsys, "--time-limit", "1")
    assert code == 3 and out == "stopped: time-limit budget reached while compiling the model\n"
    assert time.monotonic() - start < 10


def test_a_neighbourhood_is_bounded_by_the_budgets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "dot",
                       "--neighbourhood", "100", "--max-states", "3000")
    assert code == 3 and "stopped: max-states budget reached while exploring the neighbourhood" in out
    assert list(tmp_path.iterdir()) == []
    # it stops where nothing new is reached, well within the time given
    code, out, _ = run(capsys, "--spec", str(A1), "--export", str(tmp_path), "--format", "graphml",
                       "--neighbourhood", "100", "--time-limit", "300")
    assert code == 0, out


# -- messages ----------------------------------------------------------------------------------------


def test_control_characters_in_keys_are_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = spec_file(tmp_path, '"\\u001b]0;pwned\\u0007\\u001b[2J" = 1\n' + SMALL)
    err = usage_error(capsys, "--spec", path)
    assert "\x1b" not in err and "\x07" not in err and "\\x1b]0;pwned\\x07\\x1b[2J: unknown key" in err


def test_long_values_are_cut_in_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = spec_file(tmp_path, f'components = ["{"x" * 100_000}"]\n')
    err = usage_error(capsys, "--spec", path)
    assert "unknown component 'xxx" in err and len(err) < 400


def test_the_mail_text_stays_ascii_for_a_non_ascii_spec_path(tmp_path: Path) -> None:
    spec = tmp_path / "d\xe9j\xe0-vu__no-huge-range.toml"
    spec.write_text(A1.read_text())
    assert main(["--spec", str(spec), "--export", str(tmp_path), "--format", "text"]) == 0
    text = (tmp_path / f"{spec.stem}.txt").read_text()
    assert text.isascii(), [line for line in text.splitlines() if not line.isascii()]
    assert "$'" in text and "\\xc3\\xa9" in text  # bash's quoting of the UTF-8 bytes: pasteable


# -- a newcomer's first hour ----------------------------------------------------------------------------


def test_list_specs_reads_without_building(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import checker.spec

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("list specs must not build models")

    monkeypatch.setattr(checker.spec, "build", no_build)
    code, out, _ = run(capsys, "list", "specs")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == sorted(p.stem for p in (ROOT / "specs").glob("*.toml"))


def test_spec_accepts_a_shipped_specs_bare_name(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anywhere: the name is looked up among the shipped specs
    code, out, _ = run(capsys, "--spec", A1.stem)
    assert code == 0 and "violation: no_mixed_huge_page after 8 steps" in out
    assert f"python -m checker --spec {A1.stem}\n" in out  # reproduced as typed
    code, _, _ = run(capsys, "--spec", A1.name)
    assert code == 0
    assert "no-such-spec: file: cannot be read" in usage_error(capsys, "--spec", "no-such-spec")


def test_timing_reports_the_peak_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--depth", "3", "--timing", "--ignore-expected")
    assert code == 0 and " peak_rss=" in out and " total=" in out


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_the_progress_line_shows_spec_time_memory_and_budgets() -> None:
    from checker.budget import Budget
    from checker.explicit import Tick
    from checker.meter import Meter

    budget = Budget(max_states=1000, time_limit=100, started=time.perf_counter() - 5)
    terminal = _Terminal()
    with Meter("my-spec", budget, terminal, width=200) as meter:  # type: ignore[arg-type]
        meter.tick(Tick(depth=7, distinct=500, generated=2000, seconds=5.0, expanded=10, frontier=40))
        line = terminal.text
    assert line.startswith("\r\033[Kmy-spec  level 7 25%  distinct 500  generated 2000")
    for part in ("elapsed 0:05", "mem ", "max-states 50%", "time-limit 5%"):
        assert part in line, line
    assert terminal.text.endswith("\r\033[K"), "the line is cleared at the end"



def test_a_neighbourhood_reports_its_progress() -> None:
    from checker.compile import compile_model
    from checker.export import explore_around
    from checker.spec import load
    from checker.trace import replay

    model = load(A1).build()
    compiled = compile_model(model)
    trace = replay(compiled, [])
    seen: list[tuple[int, int, int]] = []
    around = explore_around(compiled, trace, 3, progress=lambda k, states, edges: seen.append((k, states, edges)))
    assert [k for k, _, _ in seen] == [1, 2, 3]
    assert seen[-1][1] == len(around.nodes) and all(a[1] <= b[1] for a, b in itertools.pairwise(seen))
