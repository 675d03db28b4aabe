"""Errors raised while a model is being defined or built."""

from __future__ import annotations


class ModelError(Exception):
    """A mistake in a model definition, found when the model is built.

    The message always says what was wrong and what to do about it.
    """


class SolverUnknown(Exception):
    """z3 answered `unknown` (or timed out): nothing may be concluded from it."""
