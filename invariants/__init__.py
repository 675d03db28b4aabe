"""WHAT MUST HOLD: named z3 predicates over the model's fields, grouped by concern."""

from .attributes import INVARIANTS as ATTRIBUTES
from .core import Bound, Invariant, Kind, applicable, select

CATALOGUE: tuple[Invariant, ...] = (*ATTRIBUTES,)

__all__ = ["CATALOGUE", "Bound", "Invariant", "Kind", "applicable", "select"]
