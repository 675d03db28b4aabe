"""Loading extensions: Python files from outside the tree that change the model for one
patch (see model/lang/extension.py for what an extension may do).

A spec names them (`extensions = ["my_patch.py"]`, relative to the spec's directory) or
the command line adds them (`--extension FILE`). Each file is read bounded, compiled and
run as a module of its own; it must define at least one subclass of
`model.lang.Extension`. Every mistake, in the file or in its classes, is an InputError
naming the file and the line, never a traceback. A counterexample document carries the
text of every extension its run loaded, so replay needs no file but the document.
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from invariants import CATALOGUE, Invariant
from model.lang import Extension, UserCodeError, run_from
from model.mmu import COMPONENTS

from .errors import InputError
from .files import read_text
from .text import printable


class ExtensionError(InputError):
    """A bad extension: names the file (and line), the problem and what is allowed."""


@dataclass(frozen=True)
class Loaded:
    """One extension file, loaded."""

    name: str  # as the spec or the command line gave it
    via: str  # "spec" or "--extension"
    path: str  # the file, as shown in messages
    text: str
    digest: str  # sha256 of the text
    classes: tuple[type[Extension], ...]

    def document(self) -> dict[str, str]:
        """What a counterexample document keeps of it: enough to load it again."""
        return {"name": self.name, "via": self.via, "sha256": self.digest, "text": self.text}


_LOADED: dict[tuple[str, str], tuple[type[Extension], ...]] = {}  # (path, digest) -> its classes


def load(name: str, via: str, base: Path | None, source: str, key: str, text: str | None = None) -> Loaded:
    """The extension `name` (a path, relative to `base` when given), or, with `text`, that
    text under that name (a document's copy). `source` and `key` name where it was asked
    for, for the error when the file cannot be read."""
    if not name:
        raise ExtensionError(source, key, "an empty file name", "a Python file that defines an Extension")
    path = Path(name) if base is None or Path(name).is_absolute() else base / name
    shown = str(path)
    if text is None:
        if path.suffix != ".py":
            raise ExtensionError(source, key, f"{printable(name)!r} is not a .py file",
                                 "a Python file that defines an Extension")
        try:
            text = read_text(path, shown)
        except InputError as e:
            raise ExtensionError(source, key, f"{printable(name)!r}: {e}") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    if (shown, digest) not in _LOADED:
        _LOADED[(shown, digest)] = _classes(text, shown, digest)
    return Loaded(name, via, shown, text, digest, _LOADED[(shown, digest)])


def check_together(loaded: list[Loaded], source: str) -> None:
    """Extensions of one run: names unique among them, what each requires present."""
    names: dict[str, str] = {}
    for ext in loaded:
        for cls in ext.classes:
            if cls.name in names:
                raise ExtensionError(source, "extensions", f"two extensions are named {cls.name!r} "
                                     f"({names[cls.name]} and {ext.path})", "distinct names")
            names[cls.name] = ext.path
    props: dict[str, str] = {}
    for ext in loaded:
        for cls in ext.classes:
            for dep in cls.requires:
                if dep not in COMPONENTS and dep not in names:
                    raise ExtensionError(f"{ext.path}:{_line(ext.text, cls)}", "requires",
                                         f"unknown component {dep!r}", ", ".join([*COMPONENTS, *names]))
            for p in cls.properties:
                if p.name in props:
                    raise ExtensionError(f"{ext.path}:{_line(ext.text, cls)}", "properties",
                                         f"{p.name!r} is also a property of {props[p.name]}", "distinct names")
                props[p.name] = ext.path


def _classes(text: str, path: str, digest: str) -> tuple[type[Extension], ...]:
    try:
        code = compile(text, path, "exec")
    except SyntaxError as e:
        raise ExtensionError(f"{path}:{e.lineno or 0}", "syntax", str(e.msg)) from None
    module = types.ModuleType(f"kvm_mmu_extension_{digest[:16]}")
    module.__file__ = path
    sys.modules[module.__name__] = module  # dataclasses and typing look their module up
    try:
        run_from(path, lambda: exec(code, module.__dict__))
    except UserCodeError as e:
        raise ExtensionError(e.where, "load", e.what) from None
    classes = tuple(v for v in vars(module).values()
                    if isinstance(v, type) and issubclass(v, Extension) and v.__module__ == module.__name__)
    if not classes:
        raise ExtensionError(path, "file", "defines no extension",
                             "a subclass of model.lang.Extension with a name and a summary")
    for cls in classes:
        _check(cls, text, path)
        cls.origin = path
        cls.digest = digest
    return classes


def _check(cls: type[Extension], text: str, path: str) -> None:
    where = f"{path}:{_line(text, cls)}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ExtensionError(where, f"class {cls.__name__}", f"{printable(repr(name))} is not a name",
                             "name = an identifier (it names the spec's options table too)")
    if name in COMPONENTS:
        raise ExtensionError(where, f"{cls.__name__}.name", f"{name!r} is a shipped component's name",
                             f"a name other than {', '.join(COMPONENTS)}")
    if not isinstance(getattr(cls, "summary", None), str) or not cls.summary.strip():
        raise ExtensionError(where, f"{cls.__name__}.summary", "missing", "one line: the patch it models")
    known = {i.name for i in CATALOGUE}
    for p in cls.properties:
        if not isinstance(p, Invariant):
            raise ExtensionError(where, f"{cls.__name__}.properties", f"{printable(repr(p))[:60]} is not an "
                                 "Invariant", "invariants.Invariant objects (ALWAYS, SOMETIMES or PROGRESS)")
        if p.name in known:
            raise ExtensionError(where, f"{cls.__name__}.properties", f"{p.name!r} is already in the catalogue",
                                 "a name of its own")


def _line(text: str, cls: type) -> int:
    """The line of `class Name` in the file."""
    m = re.search(rf"^[ \t]*class\s+{re.escape(cls.__name__)}\b", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else 0
