"""The Counter benchmark: N processes, each cycling through pc 0 -> 1 -> 2 -> 0, the step
from 1 to 2 incrementing a shared counter modulo K. Every pc vector occurs with every
counter value, so exactly 3^N * K states are reachable; the model is the one
benchmarks/run.py also writes in Promela (for SPIN) and TLA+ (for TLC) to compare engines
on the same state space."""

from __future__ import annotations

from model.lang import IntDomain, Model, ModelBuilder


def build(processes: int = 4, modulus: int = 3) -> Model:
    b = ModelBuilder("Counter", kernel_docs=False)
    pc = b.family("pc", [f"p{i}" for i in range(processes)], IntDomain(0, 2), 0)
    counter = b.field("counter", IntDomain(0, modulus - 1), 0)
    b.part("counter", pc)
    if processes > 1:  # every process runs the same code: --symmetry may reduce by them
        b.symmetric("process", "proc", {i: (f"p{i}",) for i in range(processes)})
    for i in range(processes):
        p = pc[f"p{i}"]
        b.add("enter", f"p{i}", p.var == 0, {p: 1}, f"p{i}: pc 0 -> 1", proc=i)
        b.add("increment", f"p{i}", p.var == 1, {p: 2, counter: (counter.var + 1) % modulus},
              f"p{i}: pc 1 -> 2, counter := (counter + 1) % {modulus}", proc=i)
        b.add("leave", f"p{i}", p.var == 2, {p: 0}, f"p{i}: pc 2 -> 0", proc=i)
    return b.build("Counter")


PROPERTIES = ()  # a state-space benchmark: the engines only count states
EXPECT = {"result": "pass", "complete": True, "distinct": 3**4 * 3}
