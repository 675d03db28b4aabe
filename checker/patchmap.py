"""`python -m checker map PATCH`: what of the model a kernel patch touches.

For every function the patch's hunks change (checker/diffparse.py), under a profile's
kernel map (the newest by default, or --profile): the model actions that model it (the
action methods whose `@kernel("...")` names it, as that tree calls it), what else in the
model mentions it (action docstrings, invariants, guards, variants), the guards and
variants nearby, and the shipped specs whose runs enable those actions (the coverage
index, specs/coverage.json). A function nothing in the model mentions is said to be not
modelled, plainly. The action methods are found by reading the components' classes (and
those of any --extension), so nothing is built or searched.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import model.mmu
from invariants import CATALOGUE
from model.lang import Extension, Variant
from model.mmu import COMPONENTS
from model.mmu.profiles import Profile

from .diagram import wrap
from .diffparse import Patch, Touched
from .extensions import Loaded
from .text import printable

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 100


@dataclass(frozen=True)
class ActionSource:
    """An action method: its name (the action's, in every model that has it), where it is
    defined, and the kernel function it cites."""

    name: str
    owner: str  # Class.method
    where: str  # file:line
    kernel: str
    doc: str
    module: str


@dataclass(frozen=True)
class Finding:
    """What the model has for one touched function."""

    touched: Touched
    actions: tuple[ActionSource, ...]  # those that cite it as their kernel function
    described: tuple[ActionSource, ...]  # those whose docstring names it (a call they model inside)
    mentions: tuple[str, ...]  # invariants that name it
    guards: tuple[str, ...]
    variants: tuple[str, ...]
    specs: tuple[str, ...]

    @property
    def status(self) -> str:
        if self.actions or self.described:
            return "modelled"
        return "mentioned" if (self.mentions or self.guards or self.variants) else "not modelled"


def action_sources(extensions: Iterable[type[Extension]] = (), helpers: bool = False) -> list[ActionSource]:
    """Every action method of the MMU model's components and of `extensions` (with
    `helpers`, the other documented methods of their classes instead: the helpers the
    actions build their steps with, `kernel` empty)."""
    classes: list[type] = [c for m in _mmu_modules() for c in vars(m).values()
                           if inspect.isclass(c) and c.__module__ == m.__name__]
    classes += list(extensions)
    out = []
    for cls in classes:
        for name, fn in vars(cls).items():
            kernel = getattr(fn, "__kernel_function__", None)
            code = getattr(fn, "__code__", None)
            if code is None or (kernel is None) != helpers or not fn.__doc__:
                continue
            out.append(ActionSource(name, f"{cls.__name__}.{name}", f"{_relative(code.co_filename)}:"
                                    f"{code.co_firstlineno}", kernel or "", inspect.getdoc(fn) or "",
                                    cls.__module__))
    return out


def variants_by_module() -> dict[str, list[tuple[str, Variant]]]:
    """The variants of the shipped components, by the module that defines each."""
    keys = {id(v): f"{name}.{v.name}" for name, cls in COMPONENTS.items() for v in cls.variants}
    out: dict[str, list[tuple[str, Variant]]] = {}
    for module in _mmu_modules():
        for v in vars(module).values():
            if isinstance(v, Variant) and id(v) in keys:
                out.setdefault(module.__name__, []).append((keys[id(v)], v))
    return out


def find(patches: Sequence[Patch], profile: Profile, index: dict[str, Any],
         extensions: Sequence[Loaded] = ()) -> list[tuple[Patch, list[Finding]]]:
    """What the model has for each function each patch touches (and `extensions`, the
    patch written as extensions: their actions, and whatever their text names)."""
    classes = [c for e in extensions for c in e.classes]
    sources, helpers = action_sources(classes), action_sources(classes, helpers=True)
    variants = variants_by_module()
    all_variants = [kv for kvs in variants.values() for kv in kvs]
    guards: dict[str, dict[str, str]] = index.get("guards", {})
    specs: dict[str, dict[str, Any]] = index.get("specs", {})
    out = []
    for patch in patches:
        findings = []
        for t in patch.touched:
            fn = t.function
            modelled = tuple(a for a in sources if _tree_name(profile, a.kernel) == fn or _base(a.kernel) == fn)
            said = _word(fn)
            described = tuple(a for a in sources if a not in modelled and said.search(a.doc))
            mentions = [f"helper {h.owner} ({h.where}), which actions build their steps with," for h in helpers
                        if said.search(h.doc)]
            mentions += [f"invariant {i.name}" for i in CATALOGUE if said.search(f"{i.statement} {i.reference}")]
            mentions += [f"extension {', '.join(c.name for c in e.classes)} ({_relative(e.path)})" for e in extensions
                         if said.search(e.text) and not any(a.module == c.__module__ for a in modelled
                                                            for c in e.classes)]
            near_guards = sorted(g for g, info in guards.items()
                                 if said.search(f"{info['summary']} {info['reference']}")
                                 or any(_word(_base(a.kernel)).search(info["summary"]) for a in modelled))
            modules = {a.module for a in modelled}
            near_variants = sorted({key for key, v in all_variants
                                    if said.search(_variant_text(v))}
                                   | {key for m in modules for key, _ in variants.get(m, [])})
            names = {a.name for a in (*modelled, *described)}
            exercising = tuple(sorted(s for s, e in specs.items() if names & set(e.get("actions", []))))
            findings.append(Finding(t, modelled, described, tuple(dict.fromkeys(mentions)), tuple(near_guards),
                                    tuple(near_variants), exercising))
        out.append((patch, findings))
    return out


def report(found: list[tuple[Patch, list[Finding]]], profile: Profile, index: dict[str, Any]) -> list[str]:
    """The map as text, one block per touched function, then what is not covered."""
    lines: list[str] = [f"profile: {profile.name} ({profile.kernel})"]
    guards: dict[str, dict[str, str]] = index.get("guards", {})
    total: list[Finding] = []

    def say(text: str, lead: str, rest: str) -> None:
        lines.extend(wrap(text, WIDTH, lead, rest))

    for patch, findings in found:
        lines.append("")
        say(f"patch: {printable(patch.subject)}" if patch.subject else "patch: (no subject: a plain diff)", "", "  ")
        if not findings:
            say(f"no C function changed (files: {', '.join(printable(f) for f in patch.files)})", "  ", "    ")
        for f in findings:
            total.append(f)
            t = f.touched
            say(f"{printable(t.file)}: {printable(t.function)} ({t.how}): {f.status}", "  ", "    ")
            for a in f.actions:
                say(f"action {a.name} ({a.owner}, {a.where}) [{profile.where(a.kernel)}]", "    ", "      ")
            for a in f.described:
                say(f"action {a.name} ({a.owner}, {a.where}) [{profile.where(a.kernel)}]: its docstring "
                    f"names {printable(t.function)}", "    ", "      ")
            for m in f.mentions:
                say(f"{m} names it", "    ", "      ")
            for g in f.guards:
                say(f"guard {g} ({guards[g]['component']}): {guards[g]['summary']}", "    ", "      ")
            if f.variants:
                say(f"variants: {', '.join(f.variants)}", "    ", "      ")
            if f.actions or f.described:
                say(f"exercised by {len(f.specs)} shipped specs" + (f": {', '.join(f.specs)}" if f.specs else
                                                                    " (no shipped spec enables these actions)"),
                    "    ", "      ")
            if f.status == "not modelled":
                say("the model does not model this function: no action, invariant, guard or variant names it",
                    "    ", "      ")
    uncovered = list(dict.fromkeys(f"{f.touched.function} ({f.touched.file})" for f in total
                                   if f.status == "not modelled"))
    modelled = len({f.touched.function for f in total if f.status == "modelled"})
    mentioned = len({f.touched.function for f in total if f.status == "mentioned"})
    lines.append("")
    say(f"summary: {len({f.touched.function for f in total})} functions touched: {modelled} modelled, "
        f"{mentioned} only mentioned, {len(uncovered)} not modelled"
        + (f": {', '.join(printable(u) for u in uncovered)}" if uncovered else ""), "", "  ")
    return lines


@cache
def _mmu_modules() -> tuple[types.ModuleType, ...]:
    """Every module of the MMU model, imported."""
    return tuple(importlib.import_module(info.name)
                 for info in pkgutil.walk_packages(model.mmu.__path__, "model.mmu."))


def _base(kernel: str) -> str:
    return kernel if kernel.startswith("FNAME(") else kernel.split("(")[0]


def _tree_name(profile: Profile, kernel: str) -> str:
    return _base(profile.name_of(_base(kernel)))


def _word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")


def _variant_text(v: Variant) -> str:
    return " ".join([v.doc, *(f"{x.summary} {x.source}" for x in v.values)])


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path
