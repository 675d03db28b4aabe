"""Actions: atomic guarded steps with concrete parameters.

A model author writes an action as a method decorated with `@kernel("function")`, whose
docstring says what kernel code it models and what it leaves out, and which returns a
`Step`: a display line, a guard and an effect, both as z3 terms over the state fields.
The builder calls it once for each concrete parameter tuple, so guards and effects are
quantifier-free. A model that is not about the kernel (`ModelBuilder(name,
kernel_docs=False)`) needs neither the decorator nor the docstring, and may add an action
without a method (`ModelBuilder.add`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import z3

from .fields import Field

Value = z3.ExprRef | int | bool


@dataclass(frozen=True)
class Step:
    """What one action instance does: `text` names the kernel call as a reviewer would."""

    text: str
    guard: z3.BoolRef | bool
    effect: Mapping[Field, Value]


F = TypeVar("F", bound=Callable[..., Step])


def models(function: str) -> Callable[[F], F]:
    """Mark an action method with the function (or protocol step) it models."""

    def mark(fn: F) -> F:
        fn.__kernel_function__ = function  # type: ignore[attr-defined]
        return fn

    return mark


kernel = models  # MMU actions name a kernel function


@dataclass(frozen=True, eq=False)
class Action:
    """One atomic step of the model with its parameters fixed."""

    id: int
    name: str  # the method's name
    params: tuple[tuple[str, Any], ...]
    actor: str  # who takes the step: "vCPU0", "ioctl", "TDX module", ...
    process: str  # whose progress it is, for weak fairness: the actor, or the caller it answers
    kernel: str  # the kernel function it models
    text: str  # the display line for this instance
    doc: str
    guard: z3.BoolRef
    effect: tuple[tuple[Field, z3.ExprRef], ...]
    # strongly fair: a lasso on which it is enabled (even now and then) must take it; for
    # an answer that a transient answer (BUSY) can stand in for, but not forever
    strong: bool = False
    origin: str = ""  # file:line of the code that defined (or last refined) it, for error messages

    @property
    def args(self) -> dict[str, Any]:
        """The instance's parameters by name (`a.args["gfn"]`)."""
        return dict(self.params)

    @property
    def key(self) -> str:
        """A unique, stable name for this instance: `name(p=v, ...)`."""
        return key_of(self.name, self.params)


def key_of(name: str, params: tuple[tuple[str, Any], ...]) -> str:
    """The key of the instance of action `name` with these parameters."""
    args = ", ".join(f"{k}={v}" for k, v in params)
    return f"{name}({args})"


def choose(cond: z3.BoolRef, then: Mapping[Field, object], otherwise: Mapping[Field, object]) -> dict[Field, object]:
    """One effect that is `then` where `cond` holds and `otherwise` elsewhere; a field only
    one side writes keeps its value on the other. Fields stay in first-written order."""
    out: dict[Field, object] = {}
    for f in [*then, *(g for g in otherwise if g not in then)]:
        out[f] = z3.If(cond, then.get(f, f.var), otherwise.get(f, f.var))  # type: ignore[arg-type]
    return out


def then(first: Mapping[Field, object], second: Mapping[Field, object]) -> dict[Field, object]:
    """One effect that is `first` followed by `second` (whose terms read the state `first`
    leaves): for a step that runs two kernel calls back to back."""
    pairs = [(f.var, _term(f, v)) for f, v in first.items()]
    out: dict[Field, object] = dict(first)
    for f, v in second.items():
        out[f] = z3.substitute(_term(f, v), *pairs) if pairs else _term(f, v)
    return out


def _term(f: Field, value: object) -> z3.ExprRef:
    if isinstance(value, z3.ExprRef):
        return value
    return f.domain.z3_value(f.domain.coerce(value, f"then(): {f.name}"))
