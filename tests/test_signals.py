"""Ctrl-C and SIGTERM: one line, exit 130 or 143, and an export directory that holds
either nothing new or the whole set of files, at any point of the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checker.export import graphviz
from checker.files import TEMP_SUFFIX

from .shipped import ROOT

A1 = ROOT / "specs" / "hugepage-over-converting-attrs__no-huge-range.toml"
FORMATS = "text,json,dot,graphml,html,pytest"
SET = {f"{A1.stem}.{ext}" for ext in ("txt", "json", "dot", "graphml", "html", "py")}
if graphviz() is not None:  # dot also renders svg
    SET.add(f"{A1.stem}.svg")
CODES = {"SIGINT": (130, "interrupted"), "SIGTERM": (143, "terminated")}


def as_from_a_terminal() -> None:
    """In the child: SIGINT as a terminal leaves it. A shell starts background jobs with
    SIGINT ignored, and a child inherits that (so would a test suite run with `&`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def exported(directory: Path) -> set[str]:
    names = {p.name for p in directory.iterdir()}
    assert not [n for n in names if n.endswith(TEMP_SUFFIX)], f"temporary files left: {names}"
    return names - {"before.txt"}


@pytest.mark.parametrize("point", ["search", "render", "write", "commit"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_leaves_nothing_half_written(tmp_path: Path, point: str, sig: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "before.txt").write_text("kept")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "signal_driver.py"), point, sig, "--spec", str(A1), "--export",
         str(out), "--format", FORMATS],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False, preexec_fn=as_from_a_terminal,
    )
    code, line = CODES[sig]
    assert done.returncode == code, done.stderr
    assert done.stderr == line + "\n", done.stderr
    names = exported(out)
    # held off during the renames, the signal ends the run only once every file is in place
    assert names == (SET if point == "commit" else set()), names
    assert (out / "before.txt").read_text() == "kept"


def test_sigterm_from_outside_during_a_long_search(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "checker", "--spec", "tdx-default", "--export", str(out), "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=as_from_a_terminal,
    )
    time.sleep(8)  # building, compiling or searching: the answer is the same
    assert proc.poll() is None, "tdx-default takes minutes"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err == "terminated\n", err
    assert not out.exists() or exported(out) == set()


def test_sigint_from_outside_is_a_one_line_interrupt(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "checker", "--spec", "tdx-default"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=as_from_a_terminal)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "interrupted\n", err


def test_a_signal_that_falls_in_a_destructor_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raised inside __del__, KeyboardInterrupt would be printed and lost."""
    import threading

    from checker import interrupts

    started: list[tuple[float, object]] = []

    class Timer:
        def __init__(self, seconds: float, function: object, args: tuple[object, ...]) -> None:
            started.append((seconds, args))
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(threading, "Timer", Timer)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test
    interrupts.reset()

    class Dying:
        def __del__(self) -> None:
            interrupts._stop(signal.SIGINT, sys._getframe())

    Dying()  # its __del__ runs at once, and must not raise
    assert started == [(interrupts.RESEND, (os.getpid(), signal.SIGINT))]
    assert interrupts.requested() == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        interrupts._stop(signal.SIGINT, sys._getframe())
    interrupts.reset()


def test_an_interrupt_wrapped_by_a_library_is_still_an_interrupt(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ctypes (z3's bindings) turns an exception raised in a conversion into ArgumentError."""
    import ctypes

    from checker import cli, interrupts

    def wrapped(model: object) -> None:
        interrupts._requested = signal.SIGTERM  # what the handler records before it raises
        raise ctypes.ArgumentError("argument 2: Terminated")

    monkeypatch.setattr(cli, "compile_model", wrapped)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    assert cli.main(["--depth", "1"]) == 143
    assert capsys.readouterr().err == "terminated\n"
    interrupts.reset()
