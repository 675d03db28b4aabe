"""The shipped specs' coverage index (`specs/coverage.json`): for every shipped spec, the
action names its run (under its own profile) enables, and every guard the shipped models
declare. `python -m checker map` reads it to say which specs exercise the actions a patch
touches, without running them; `python -m checker index` writes it, and the spec tests
check it against the coverage of their own runs, so it cannot go stale unseen.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import coverage
from .budget import Budget
from .compile import compile_model
from .errors import InputError
from .explicit import ExplicitSearch
from .files import read_text, write_all
from .spec import SHIPPED, load

INDEX = SHIPPED / "coverage.json"
FORMAT = "kvm-mmu-checker spec coverage"
VERSION = 1


def enabled_names(cov: coverage.Coverage) -> list[str]:
    """The action names some explored state enables, sorted."""
    return sorted(n.name for n in cov.names if n.instances_enabled)


def entry(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Run the spec at `path` under its own profile with coverage: its index entry, and
    the guards of its model."""
    spec = load(path)
    model = spec.build()
    budget = Budget()
    budget.depth = spec.depth
    search = ExplicitSearch(compile_model(model), spec.bound_invariants(model), budget, spec.check_deadlock,
                            coverage=True)
    cov = coverage.compute(search.run(), model, spec.name)
    guards = {g.name: {"component": g.component, "summary": g.summary, "reference": g.reference}
              for g in model.guards.values()}
    return {"profile": spec.profile_name, "actions": enabled_names(cov)}, guards


def read(path: Path = INDEX) -> dict[str, Any]:
    """The index; an InputError naming the file if it is missing or not one."""
    try:
        doc = json.loads(read_text(path, str(path)))
    except json.JSONDecodeError as e:
        raise InputError(str(path), "file", f"is not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise InputError(str(path), "format", "not a spec coverage index of this checker",
                         f"{FORMAT!r} version {VERSION} (python -m checker index writes it)")
    return doc


def write(paths: Iterable[Path], keep: Mapping[str, Any] | None = None, target: Path = INDEX) -> Path:
    """Index the specs at `paths`; entries of `keep` (a previous index) for other specs
    stay. Written whole or not at all."""
    specs: dict[str, Any] = dict((keep or {}).get("specs", {}))
    guards: dict[str, Any] = dict((keep or {}).get("guards", {}))
    for path in paths:
        print(f"indexing {path.stem}", file=sys.stderr, flush=True)
        specs[path.stem], found = entry(path)
        guards.update(found)
    doc = {"format": FORMAT, "version": VERSION,
           "specs": dict(sorted(specs.items())), "guards": dict(sorted(guards.items()))}
    [written] = write_all(target.parent, {target.name: json.dumps(doc, indent=1) + "\n"})
    return written
