"""The modelling core: typed finite fields, a packed state schema, guarded actions over z3
terms, named guards (knobs) and the builder that checks a model when it is built.

Nothing here knows about KVM.
"""

from .actions import Action, Step, choose, kernel, models, then
from .bits import case_split, decide, word
from .builder import Fact, GuardInfo, Model, ModelBuilder, UnknownName
from .component import Component, compose, order
from .deadline import DeadlinePassed, checkpoint, until
from .domains import BOOL, BoolDomain, Domain, EnumDomain, IntDomain
from .errors import ModelError, SolverUnknown, printable, shown, shown_key
from .exprs import evaluate, free_constants
from .fields import Family, Field
from .options import Option, OptionError, resolve
from .printer import show
from .schema import Schema
from .variants import Choices, Variant, VariantValue

__all__ = [
    "BOOL",
    "Action",
    "BoolDomain",
    "Choices",
    "Component",
    "DeadlinePassed",
    "Domain",
    "EnumDomain",
    "Fact",
    "Family",
    "Field",
    "GuardInfo",
    "IntDomain",
    "Model",
    "ModelBuilder",
    "ModelError",
    "Option",
    "OptionError",
    "Schema",
    "SolverUnknown",
    "Step",
    "UnknownName",
    "Variant",
    "VariantValue",
    "case_split",
    "checkpoint",
    "choose",
    "compose",
    "decide",
    "evaluate",
    "free_constants",
    "kernel",
    "models",
    "order",
    "printable",
    "resolve",
    "show",
    "shown",
    "shown_key",
    "then",
    "until",
    "word",
]
