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
from .exprs import Pick, evaluate, first, free_constants, max_of, min_of
from .extension import Extension
from .fields import Family, Field
from .options import Option, OptionError, resolve
from .printer import show
from .schema import Schema
from .structures import Record, SetField, SetValue, Universe, records
from .usercode import UserCodeError, run_from
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
    "Extension",
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
    "Pick",
    "Record",
    "Schema",
    "SetField",
    "SetValue",
    "SolverUnknown",
    "Step",
    "Universe",
    "UnknownName",
    "UserCodeError",
    "Variant",
    "VariantValue",
    "case_split",
    "checkpoint",
    "choose",
    "compose",
    "decide",
    "evaluate",
    "first",
    "free_constants",
    "kernel",
    "max_of",
    "min_of",
    "models",
    "order",
    "printable",
    "records",
    "resolve",
    "run_from",
    "show",
    "shown",
    "shown_key",
    "then",
    "until",
    "word",
]
