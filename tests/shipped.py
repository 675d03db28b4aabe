"""Every model the project ships: each spec's scenario and the textbook examples."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from checker.cli import default_spec
from checker.spec import load
from examples import diehard, twophase
from invariants import Bound
from model.lang import Model

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.toml"))


@cache
def shipped() -> dict[str, tuple[Model, list[Bound]]]:
    out: dict[str, tuple[Model, list[Bound]]] = {}
    for path in SPECS:
        spec = load(path)
        model = spec.build()
        out[path.stem] = (model, spec.bound_invariants(model))
    spec = default_spec()
    model = spec.build()
    out["<default>"] = (model, spec.bound_invariants(model))
    tp = twophase.build()
    out["TwoPhase"] = (tp, [twophase.TC_CONSISTENT.bind(tp)])
    dh = diehard.build()
    out["DieHard"] = (dh, [diehard.NOT_SOLVED.bind(dh)])
    return out
