"""Errors raised while a model is being defined or built, and how they quote values.

A value from a spec is quoted with `shown()`: its repr, with control and format
characters escaped (`printable()`), cut to a few dozen characters. So no message can
drive a terminal or run for pages, whatever the spec holds.
"""

from __future__ import annotations

import unicodedata

VALUE_LIMIT = 60  # characters of a value quoted in a message


class ModelError(Exception):
    """A mistake in a model definition, found when the model is built.

    The message always says what was wrong and what to do about it.
    """


class SolverUnknown(Exception):
    """z3 answered `unknown` (or timed out): nothing may be concluded from it."""


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with control and format characters (ESC, BEL, CSI, bidi overrides, line
    separators) escaped as in a Python string."""
    return "".join(_escape(ch) if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch
                   for ch in text)


def shown(value: object, limit: int = VALUE_LIMIT) -> str:
    """A value quoted in a message: its repr, cut to `limit` characters."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer past str()'s digit limit, deep nesting
        text = f"<a {type(value).__name__} too large to show>"
    text = printable(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown_key(key: str, limit: int = 40) -> str:
    """A key from a spec as a message names it: printable, cut to `limit` characters."""
    text = printable(key)
    return text if len(text) <= limit else text[:limit - 3] + "..."
