"""Extensions: components written outside the tree, for the patch under review.

An extension is a `Component` like the shipped ones, loaded from a Python file that a
spec names (`extensions = ["my_patch.py"]`) or the command line gives (`--extension`),
after the profile's components. It uses the same builder: it declares fields, families,
guards and facts (`declare`), adds actions (`define`), and may change what is already
there, by stable key: `ModelBuilder.refine()` (a guard conjoined or replaced, writes
added or replaced), `ModelBuilder.split()` (an interleaving point inside an action) and
`ModelBuilder.writers()` (the actions that write a field). Besides, as class data:

- `properties`: invariants, witnesses and progress properties (`invariants.Invariant`),
  checked beside the catalogue's;
- `values`: new values of the components' variants (`"tdx.pinning": (VariantValue(...,
  like="none"),)`): a spec chooses one in `[variants]`, the component reads the value it
  is `like`, the extension reads the choice with `ModelBuilder.variant()`;
- `functions`: the kernel map for the functions its actions cite (file -> names).

Everything is checked as the shipped model is, and a mistake names the extension's file
and line. A spec that loads no extension builds exactly what it built before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .builder import ModelBuilder
from .component import Component
from .options import resolve
from .variants import VariantValue


class Extension(Component):
    """A component from outside the tree. Subclass it; `name` and `summary` are required,
    `requires` names the components it changes (they are enabled with it)."""

    properties: ClassVar[tuple[Any, ...]] = ()  # invariants.Invariant objects
    values: ClassVar[Mapping[str, Sequence[VariantValue]]] = {}  # "component.variant" -> added values
    functions: ClassVar[Mapping[str, Sequence[str]]] = {}  # kernel file -> functions the actions cite
    origin: ClassVar[str] = ""  # the file it was loaded from (set by the loader)
    digest: ClassVar[str] = ""  # the sha256 of that file's text (set by the loader)

    def __init__(self, sizes: Any, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        """Fields, families, guards and facts of the patch (none by default)."""

    def define(self, b: ModelBuilder) -> None:
        """Actions of the patch, and changes to the actions already there (none by default)."""
