"""`python -m checker --model FILE.py`: check a model written outside the tree.

The file is run as a module of its own (so it may import `model.lang` and `invariants`)
and must define:

- `build()`: a function of no arguments returning a `model.lang.Model` (built with
  `ModelBuilder`, usually `ModelBuilder(name, kernel_docs=False)`);

and may define:

- `PROPERTIES`: the properties to check, `invariants.Invariant` objects (ALWAYS,
  SOMETIMES or PROGRESS); `--invariant NAME` picks among them;
- `DEPTH`: the default depth bound (an int >= 0; `--depth` overrides it);
- `EXPECT`: the expected result, a dict with the keys of a spec's `[expect]` table:
  `result` ("pass", "violation" or "cycle"), `invariant`, `within`, `complete`,
  `distinct`, `depth`, `witnesses`.

The run is a spec run in every other respect (`ModelFile` stands in for the `Spec`):
the same output after its first line, exit codes and exports. A mistake in the file (a
syntax error, an exception while it loads or builds, a missing or malformed entry point)
is an InputError naming the file and line: exit 2, never a traceback. A counterexample
document of a --model run carries the model file's text (`scenario.model`), and `replay`
runs that text again, so it needs no file but the document.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from invariants import Bound, Invariant, Kind, applicable, select
from invariants.core import facts
from model.lang import Model, UserCodeError, run_from

from .errors import InputError, UsageError
from .files import read_text
from .spec import Expect
from .text import printable

ENTRY = "build"
EXPECT_KEYS = ("result", "invariant", "within", "complete", "distinct", "depth", "witnesses")
# what a spec run has and a model file does not: each is a usage error with --model
SPEC_ONLY = (("spec", "--spec"), ("profile", "--profile"), ("against", "--against"), ("extension", "--extension"),
             ("guard", "--guard"), ("without_extensions", "--without-extensions"))

T = TypeVar("T")


class ModelFileError(InputError):
    """A bad model file: names the file (and line), what is wrong and what is allowed."""


@dataclass
class ModelFile:
    """A model file, loaded: what a check run asks of a `Spec`."""

    source: str  # the file, as given
    name: str  # the file's stem: exports are DIR/<name>.<ext>
    code: str = field(repr=False)  # the Python source
    module: types.ModuleType = field(repr=False)
    properties: tuple[Invariant, ...] = ()
    depth: int | None = None
    expectation: Expect | None = None
    check_deadlock: bool = False
    check_progress: bool = True
    symmetry: bool = False  # --symmetry reduces by what the model declares symmetric
    extensions: tuple[Any, ...] = ()  # a model file loads no patch extension
    profile_name: str = "none"  # a model file stands for no kernel profile
    expected_under: tuple[str, ...] = ()
    text: str = ""  # a spec's TOML, which a counterexample document records: a model file has none
    _model: Model | None = field(default=None, repr=False)

    @property
    def expect(self) -> Expect | None:
        return self.expectation

    @property
    def expectation_applies(self) -> bool:
        return self.expectation is not None

    @property
    def label(self) -> str:
        """What a spec run prints as its profile: a model file has none."""
        return self.profile_name

    @property
    def catalogue(self) -> tuple[Invariant, ...]:
        return self.properties

    def build(self, guards: Mapping[str, bool] | None = None) -> Model:
        """The file's model (built once); its EXPECT checked against its PROPERTIES."""
        if guards:
            raise UsageError("--guard applies to a spec; a model file switches its own guards in build()")
        if self._model is None:
            built = self._run(lambda: self.module.build(), f"{ENTRY}()")
            if not isinstance(built, Model):
                raise ModelFileError(self._at(f"def {ENTRY}"), ENTRY, f"returned {printable(type(built).__name__)}",
                                     "a model.lang.Model (return b.build())")
            self._check_expect(built)
            self._model = built
        return self._model

    def bound_invariants(self, model: Model, names: tuple[str, ...] | None = None) -> list[Bound]:
        """The file's PROPERTIES (or those named by --invariant), then the model's facts."""
        usable = [i.name for i in self._run(lambda: applicable(self.properties, model), "PROPERTIES")]
        for name in names or ():
            if name not in usable:
                raise ModelFileError(self.source, "--invariant", f"unknown property {printable(name)[:60]!r}",
                                     ", ".join(usable) or "none (the file defines no PROPERTIES)")
        return self._run(lambda: select(self.properties, model, names), "PROPERTIES") + facts(model)

    def document(self) -> dict[str, str]:
        """What a counterexample document would keep of the file to replay it without it."""
        return {"path": self.source, "sha256": hashlib.sha256(self.code.encode()).hexdigest(), "text": self.code}

    def header(self, model: Model) -> str:
        """The run's first line."""
        return (f"model: {printable(model.name)} ({printable(self.source)}; components: "
                f"{', '.join(model.parts) or 'none'}; guards off: {', '.join(model.guards_off()) or 'none'})")

    def _check_expect(self, model: Model) -> None:
        e = self.expectation
        if e is None:
            return
        bounds = self.bound_invariants(model)
        kinds = {"violation": Kind.ALWAYS, "cycle": Kind.PROGRESS}
        if e.result in kinds:
            kind = kinds[e.result]
            names = [b.name for b in bounds if b.kind is kind]
            if e.invariant not in names:
                raise ModelFileError(self._at("EXPECT"), "EXPECT.invariant",
                                     f"{printable(str(e.invariant))[:60]!r} is not a {kind.value} property of "
                                     "this model", ", ".join(names) or "none")
        sometimes = [b.name for b in bounds if b.kind is Kind.SOMETIMES]
        for w in e.witnesses:
            if w not in sometimes:
                raise ModelFileError(self._at("EXPECT"), "EXPECT.witnesses",
                                     f"{printable(w)[:60]!r} is not a SOMETIMES property of this model",
                                     ", ".join(sometimes) or "none")

    def _run(self, step: Callable[[], T], what: str) -> T:
        """Run the file's own code; a mistake in it is an error at its line."""
        return _blamed(self.source, step, what)

    def _at(self, name: str) -> str:
        return f"{self.source}:{_line(self.code, name)}"


_LOADED: dict[tuple[str, str], ModelFile] = {}  # (path, sha256 of the text) -> the file, loaded


def load(path: str) -> ModelFile:
    """The model file `path`, run as a module of its own and checked."""
    if not path:
        raise UsageError("--model: an empty file name; give a Python file that defines build()")
    if Path(path).suffix != ".py":
        raise ModelFileError(path, "--model", "not a .py file", "a Python file that defines build()")
    return from_text(read_text(path, path), path)


def from_text(text: str, path: str) -> ModelFile:
    """The model file `path` whose source is `text` (a document's copy, or the file's)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    key = (path, digest)
    if key not in _LOADED:
        _LOADED[key] = _load(path, text, digest)
    return _LOADED[key]


def _load(path: str, text: str, digest: str) -> ModelFile:
    try:
        code = compile(text, path, "exec")
    except SyntaxError as e:
        raise ModelFileError(f"{path}:{e.lineno or 0}", "syntax", printable(str(e.msg))) from None
    module = types.ModuleType(f"kvm_mmu_model_{digest[:16]}")
    module.__file__ = path
    sys.modules[module.__name__] = module  # dataclasses and typing look their module up
    _blamed(path, lambda: exec(code, module.__dict__), "load")
    entry = getattr(module, ENTRY, None)
    if not callable(entry):
        raise ModelFileError(path, ENTRY, "missing" if entry is None else "is not a function",
                             "def build() -> model.lang.Model")

    def where(name: str) -> str:
        return f"{path}:{_line(text, name)}"

    properties = getattr(module, "PROPERTIES", ())
    if isinstance(properties, (str, bytes, Mapping)) or not isinstance(properties, (list, tuple)):
        raise ModelFileError(where("PROPERTIES"), "PROPERTIES", f"{printable(repr(properties))[:60]} is not a "
                             "list or tuple", "invariants.Invariant objects (ALWAYS, SOMETIMES or PROGRESS)")
    seen: set[str] = set()
    for p in properties:
        if not isinstance(p, Invariant):
            raise ModelFileError(where("PROPERTIES"), "PROPERTIES", f"{printable(repr(p))[:60]} is not an Invariant",
                                 "invariants.Invariant objects (ALWAYS, SOMETIMES or PROGRESS)")
        if p.name in seen:
            raise ModelFileError(where("PROPERTIES"), "PROPERTIES", f"{printable(p.name)!r} twice", "distinct names")
        seen.add(p.name)
    depth = getattr(module, "DEPTH", None)
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ModelFileError(where("DEPTH"), "DEPTH", f"{printable(repr(depth))[:60]} is not an int >= 0",
                             "the default depth bound, an int >= 0")
    expect = _expect(getattr(module, "EXPECT", None), where("EXPECT"))
    return ModelFile(path, Path(path).stem, text, module, tuple(properties), depth, expect)


def _expect(raw: Any, where: str) -> Expect | None:
    """EXPECT, checked key by key like a spec's [expect] table."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ModelFileError(where, "EXPECT", f"{printable(repr(raw))[:60]} is not a dict",
                             f"a dict with keys among {', '.join(EXPECT_KEYS)}")
    for k in raw:
        if k not in EXPECT_KEYS:
            raise ModelFileError(where, f"EXPECT[{printable(repr(k))[:40]}]", "unknown key", ", ".join(EXPECT_KEYS))
    result = raw.get("result")
    if result not in ("pass", "violation", "cycle"):
        raise ModelFileError(where, "EXPECT['result']", f"{printable(repr(result))[:60]} is not allowed",
                             "'pass' | 'violation' | 'cycle'")
    invariant = raw.get("invariant")
    if result == "pass" and invariant is not None:
        raise ModelFileError(where, "EXPECT['invariant']", "a pass names no invariant", "no 'invariant' key")
    if result != "pass" and not isinstance(invariant, str):
        raise ModelFileError(where, "EXPECT['invariant']", "missing or not a str",
                             f"the property a {result} breaks")
    counts = {}
    for k in ("within", "distinct", "depth"):
        v = raw.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ModelFileError(where, f"EXPECT[{k!r}]", f"{printable(repr(v))[:60]} is not an int >= 0", "")
        counts[k] = v
    complete = raw.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise ModelFileError(where, "EXPECT['complete']", f"{printable(repr(complete))[:60]} is not a bool", "")
    witnesses = raw.get("witnesses", ())
    if isinstance(witnesses, str) or not isinstance(witnesses, (list, tuple)) or \
            not all(isinstance(w, str) for w in witnesses):
        raise ModelFileError(where, "EXPECT['witnesses']", f"{printable(repr(witnesses))[:60]} is not a list of "
                             "names", "SOMETIMES properties that must be reached")
    return Expect(result, invariant, counts["within"], complete, counts["distinct"], counts["depth"],
                  tuple(witnesses))


def _blamed(path: str, step: Callable[[], T], what: str) -> T:
    """Run code of the file at `path`; any mistake in it is a ModelFileError at the line
    of the file that was running (the innermost one)."""
    try:
        return run_from(path, step)
    except UserCodeError as e:
        raise ModelFileError(e.where, what, printable(e.what)) from None


def _line(text: str, name: str) -> int:
    """The line that defines `name` (`def name`, or `name =` at the top level), or 0."""
    pattern = rf"^{re.escape(name)}\b" if name.startswith("def ") else rf"^{re.escape(name)}\s*(:[^=]*)?="
    m = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else 0


# -- the command line ---------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    """What a --model run cannot take: a usage error, before anything is read."""
    for attr, option in SPEC_ONLY:
        if getattr(args, attr, None):
            what = ("are mutually exclusive: --model checks a model file, --spec a scenario of the kernel model"
                    if option == "--spec" else "applies to a spec (the kernel model), not to a model file")
            raise UsageError(f"--model and {option} {what}" if option == "--spec" else f"{option} {what}")
