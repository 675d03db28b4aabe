"""Components: named parts of a model that a spec enables or leaves out.

A component declares its fields, guards and facts first (`declare`), and adds its
actions second (`define`), after every enabled component has declared: an action may
then read fields of the components it requires, and a writer may wait for readers that
another component registered. A disabled component adds nothing, so small questions
keep small state spaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from .builder import ModelBuilder, UnknownName
from .errors import ModelError
from .options import Option
from .usercode import UserCodeError, run_from
from .variants import Choices, Variant


class Component:
    name: ClassVar[str]
    summary: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    variants: ClassVar[tuple[Variant, ...]] = ()
    # the profile's choice for each of `variants`, set by compose() before configure()
    variant: Choices

    def configure(self, enabled: Mapping[str, Component]) -> None:
        """Before anything is declared: adjust the components this one refines (optional).

        A component that takes over part of another (the TDX mirror takes over the
        attributes component's private fault path) says so here, so that the other one
        declares the right fields and leaves out the actions it no longer owns.
        """

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        raise NotImplementedError

    def define(self, b: ModelBuilder) -> None:
        raise NotImplementedError


def order(available: Mapping[str, type[Component]], wanted: Sequence[str]) -> list[str]:
    """`wanted` plus everything it requires, each after its requirements."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise ModelError(f"components require each other in a cycle: {' -> '.join((*path, name))}")
        if name not in available:
            raise UnknownName("component", name, available)
        for dep in available[name].requires:
            visit(dep, (*path, name))
        done.append(name)

    for w in wanted:
        visit(w, ())
    return done


def compose(b: ModelBuilder, instances: Sequence[Component]) -> None:
    """Configure, then declare, then define every component, in the given order; each
    first gets the profile's choice of its variants."""
    enabled = {c.name: c for c in instances}
    for c in instances:
        declared = [v.with_values(b.added_values.get(f"{c.name}.{v.name}", ()), f"variant {c.name}.{v.name}")
                    for v in c.variants]
        c.variant = Choices(c.name, declared, b.variants)
    for c in instances:
        _blamed(c, lambda c=c: c.configure(enabled))
    seen: dict[str, Component] = {}
    for c in instances:
        b.part(c.name, c)
        _blamed(c, lambda c=c: c.declare(b, seen))
        seen[c.name] = c
    for c in instances:
        b.component = c.name
        _blamed(c, lambda c=c: c.define(b))


def _blamed(c: Component, run: Callable[[], None]) -> None:
    """Run one phase of `c`; a mistake in a component loaded from a file outside the
    tree (an extension: `origin` is its file) names that file and the line of it that
    was running, whatever the exception."""
    origin = getattr(c, "origin", "")
    if not origin:
        run()
        return
    try:
        run_from(origin, run)
    except UserCodeError as e:
        raise UserCodeError(e.where, f"extension {c.name!r}: {e.what}") from None

