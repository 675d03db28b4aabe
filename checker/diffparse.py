"""Reading a kernel patch: the functions its hunks touch.

A patch is a unified diff, or an mbox of one or more mails each carrying one (as
`git format-patch` and `b4 am` write them). For each hunk of a C file, the function a
changed line belongs to is found as git's own funcname does, from the hunk header's
context, then from every function definition the hunk shows (a line that starts at
column 0 with a declarator followed by `(` and does not end in `;`, or a `#define
NAME(`); a line `}` at column 0 ends the function. A definition only removed is a
function the patch removes; one only added, a function it adds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InputError

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@ ?(.*)$")
_DEFINITION = re.compile(r"^[A-Za-z_][^=;]*?\b([A-Za-z_]\w*)\s*\(")
_MACRO = re.compile(r"^#\s*define\s+([A-Za-z_]\w*)\(")
_NOT_FUNCTIONS = {"if", "for", "while", "switch", "return", "sizeof", "typeof", "defined", "else", "do",
                  "case", "goto", "__attribute__", "asm", "__asm__"}
_C_FILES = (".c", ".h")


@dataclass(frozen=True)
class Touched:
    """One function a patch changes: `how` is changed, added or removed."""

    file: str
    function: str
    how: str


@dataclass
class Patch:
    """One mail's subject and the functions its diff touches, in the order first met."""

    subject: str
    files: list[str] = field(default_factory=list)  # every file the diff touches
    touched: list[Touched] = field(default_factory=list)


def read(text: str, source: str) -> list[Patch]:
    """The patches in `text` (a diff, or an mbox); an InputError if there is no hunk."""
    mails = _mails(text)
    patches = [p for p in (_patch(subject, body) for subject, body in mails) if p.files]
    if not patches:
        raise InputError(source, "file", "no unified diff in it (no '--- a/FILE', '+++ b/FILE' and '@@' hunks)",
                         "a unified diff, or an mbox of patches (git format-patch, b4 am)")
    return patches


def _mails(text: str) -> list[tuple[str, str]]:
    """(subject, body) of each mail of an mbox; a plain diff is one mail without a subject."""
    starts = [m.start() for m in re.finditer(r"^From \S+ .*$", text, re.MULTILINE)]
    if not starts:
        return [("", text)]
    chunks = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    out = []
    for chunk in chunks:
        head, _, _ = chunk.partition("\n\n")
        m = re.search(r"^Subject: (.*(?:\n[ \t].*)*)", head, re.MULTILINE)
        subject = " ".join(m.group(1).split()) if m else ""
        out.append((subject, chunk))
    return out


def _patch(subject: str, body: str) -> Patch:
    patch = Patch(subject)
    seen: set[tuple[str, str]] = set()
    definitions: dict[tuple[str, str], set[str]] = {}  # (file, function) -> markers of its definition
    path: str | None = None
    current: str | None = None
    old = new = 0  # lines of the hunk still to come, on each side
    in_macro = False
    for line in body.splitlines():
        if line.startswith("diff ") or (line and line[0] not in " +-\\"):
            old = new = 0  # a hunk shorter than its header says (a hand-edited or quoted diff) ends here
        if old <= 0 and new <= 0:
            if line.startswith("diff --git "):
                m = re.match(r"diff --git a/(\S+) b/(\S+)", line)
                path = m.group(2) if m else None
            elif line.startswith("--- "):
                source = line[4:].split("\t")[0].strip()
                path = None if source == "/dev/null" else re.sub(r"^a/", "", source)
            elif line.startswith("+++ "):
                target = line[4:].split("\t")[0].strip()
                path = path if target == "/dev/null" else re.sub(r"^b/", "", target)
            elif (m := _HUNK.match(line)) and path is not None:
                old, new = int(m.group(1) or 1), int(m.group(2) or 1)
                if path not in patch.files:
                    patch.files.append(path)
                current, in_macro = _function(m.group(3)), False
            continue
        marker, code = (line[0], line[1:]) if line else (" ", "")
        if marker == "\\":
            continue  # "\ No newline at end of file"
        old -= marker in " -"
        new -= marker in " +"
        if not path.endswith(_C_FILES):  # type: ignore[union-attr]
            continue
        name = _function(code)
        if name is not None:
            current = name
            definitions.setdefault((path, name), set()).add(marker)  # type: ignore[arg-type]
        if marker in "+-" and current is not None and (path, current) not in seen:
            seen.add((path, current))  # type: ignore[arg-type]
            patch.touched.append(Touched(path, current, "changed"))  # type: ignore[arg-type]
        if name is not None and _MACRO.match(code):
            in_macro = True
        if code.startswith("}") or (in_macro and not code.rstrip().endswith("\\")):
            current, in_macro = None, False  # the function's closing brace, or a macro's last line
    patch.touched = [Touched(t.file, t.function, _how(definitions.get((t.file, t.function), set())))
                     for t in patch.touched]
    return patch


def _how(markers: set[str]) -> str:
    if markers == {"-"}:
        return "removed"
    if markers == {"+"}:
        return "added"
    return "changed"


def _function(code: str) -> str | None:
    """The function a line at column 0 defines (or a hunk header's context names)."""
    m = _MACRO.match(code)
    if m:
        return m.group(1)
    if not code or code[0].isspace() or code.rstrip().endswith(";"):
        return None
    m = _DEFINITION.match(code)
    if m is None or m.group(1) in _NOT_FUNCTIONS:
        return None
    return m.group(1)
