"""WHAT MUST HOLD: named z3 predicates over the model's fields, grouped by concern."""

from .attributes import INVARIANTS as ATTRIBUTES
from .core import Bound, Invariant, Kind, applicable, select
from .hugepage import INVARIANTS as HUGEPAGE
from .mmio import INVARIANTS as MMIO
from .pinning import INVARIANTS as PINNING
from .tdx import INVARIANTS as TDX

CATALOGUE: tuple[Invariant, ...] = (*ATTRIBUTES, *TDX, *HUGEPAGE, *MMIO, *PINNING)

__all__ = ["CATALOGUE", "Bound", "Invariant", "Kind", "applicable", "select"]
