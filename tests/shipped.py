"""Every model the project ships: each spec's scenario and the textbook examples."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from checker.cli import default_spec
from checker.spec import load
from examples import diehard, missionaries, twophase
from invariants import Bound
from model.lang import Model

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.toml"))


NAMES = sorted([p.stem for p in SPECS] + ["<default>", "TwoPhase", "DieHard", "MissionariesAndCannibals"])


@cache
def shipped_model(name: str) -> tuple[Model, list[Bound]]:
    """The model of one shipped scenario (a spec's stem, `<default>`, or a textbook
    example) and what it checks; built when first asked for, not when tests are collected."""
    if name == "TwoPhase":
        tp = twophase.build()
        return tp, [twophase.TC_CONSISTENT.bind(tp)]
    if name == "DieHard":
        dh = diehard.build()
        return dh, [diehard.NOT_SOLVED.bind(dh)]
    if name == "MissionariesAndCannibals":
        mc = missionaries.build()
        return mc, [missionaries.SOLUTION.bind(mc)]
    spec = default_spec() if name == "<default>" else load(ROOT / "specs" / f"{name}.toml")
    model = spec.build()
    return model, spec.bound_invariants(model)
