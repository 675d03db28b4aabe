"""Text from files and arguments, made safe to show: on a terminal, in a mail, in a shell.

- `printable()` escapes control and format characters (ESC, BEL, CSI, bidi overrides,
  line separators), so that a message cannot clear the terminal or set its title;
- `shown()` quotes a value in a message, cut to a few dozen characters;
- `shell_word()` quotes a word for a POSIX shell in plain ASCII: `shlex.quote` where that
  is ASCII and printable, else bash's `$'...'` with the UTF-8 bytes escaped, so that a
  reproduce command stays ASCII and can still be pasted.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from model.lang.errors import printable, shown

__all__ = ["ascii_path", "printable", "shell_line", "shell_word", "shown"]


def shell_word(word: str) -> str:
    """`word` quoted for a POSIX shell, in printable ASCII."""
    if word.isascii() and word.isprintable():
        return shlex.quote(word)
    out = []
    for byte in word.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append("\\" + ch if ch in "\\'" else ch if 0x20 <= byte < 0x7F else f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def shell_line(words: Sequence[str]) -> str:
    return " ".join(shell_word(w) for w in words)


def ascii_path(path: str) -> str:
    """A path as plain ASCII: itself when it is printable ASCII, else shell-quoted."""
    return path if path.isascii() and path.isprintable() else shell_word(path)
