"""Reading the documentation the tests hold to the truth: CATALOGUE.md's entries, the
step tables of specs/README.md, and the output excerpts of README.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from checker.spec import Spec, read
from model.lang import OptionError
from model.mmu import build, profiles

from .shipped import ROOT

CATALOGUE = ROOT / "CATALOGUE.md"
SPECS_README = ROOT / "specs" / "README.md"
README = ROOT / "README.md"
ID = re.compile(r"\b(?:[A-D]\d+|(?:A|M|P|IO)-Inv\d+|Q\d+)\b")


@dataclass
class Entry:
    id: str
    name: str
    section: str  # Cases, Invariants, Open questions
    keys: dict[str, str] = field(default_factory=dict)  # **Key:** -> text

    def names(self, key: str) -> list[str]:
        """The backticked names under **key**."""
        return re.findall(r"`([^`]+)`", self.keys.get(key, ""))

    def links(self, key: str) -> list[str]:
        return re.findall(r"\]\(([^)#]+)\)", self.keys.get(key, ""))


def catalogue() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    section = ""
    current: Entry | None = None
    key = ""
    for line in CATALOGUE.read_text().splitlines():
        if line.startswith("## "):
            section, current = line[3:].strip(), None
        elif line.startswith("### "):
            ident, _, name = line[4:].partition(" ")
            assert ident not in entries, f"CATALOGUE.md: {ident} twice"
            current = entries[ident] = Entry(ident, name.strip(), section)
        elif current is not None and (m := re.match(r"- \*\*([^*]+):\*\* ?(.*)", line)):
            key = m.group(1)
            current.keys[key] = m.group(2)
        elif current is not None and key and line.startswith("  ") and line.strip():
            current.keys[key] += " " + line.strip()
        else:
            key = ""
    return entries


@dataclass
class Row:
    first: int
    last: int
    actors: list[str]
    prints: str
    line: str


@dataclass
class Section:
    spec: str  # the spec file's name
    id: str | None
    text: str
    rows: list[Row]


def spec_sections() -> dict[str, Section]:
    """specs/README.md's sections by spec file name, with their step tables."""
    sections: dict[str, Section] = {}
    parts = re.split(r"^## ", SPECS_README.read_text(), flags=re.M)[1:]
    for part in parts:
        heading, _, body = part.partition("\n")
        m = re.fullmatch(r"(\S+\.toml)(?: \(([^)]+)\))?", heading.strip())
        assert m, f"specs/README.md: heading {heading!r} is not `<file>.toml (<ID>)`"
        rows = []
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
            if len(cells) != 4 or cells[0] in ("step", "---"):
                continue
            steps = re.fullmatch(r"(\d+)(?:-(\d+))?", cells[0])
            assert steps, f"specs/README.md, {m.group(1)}: step {cells[0]!r} is not N or N-M"
            prints = re.fullmatch(r"`([^`]+)`", cells[2])
            assert prints, f"specs/README.md, {m.group(1)}: {cells[2]!r} is not one backticked excerpt"
            first = int(steps.group(1))
            rows.append(Row(first, int(steps.group(2) or first), [a.strip() for a in cells[1].split(",")],
                            prints.group(1), line))
        sections[m.group(1)] = Section(m.group(1), m.group(2), body, rows)
    return sections


def table_errors(section: Section, doc: dict[str, object]) -> list[str]:
    """Where the section's step table disagrees with the exported trace `doc`."""
    titles = {a["id"]: a["title"] for a in doc["actors"]}  # type: ignore[attr-defined, index]
    steps = doc["steps"]  # type: list[dict[str, str]]  # type: ignore[assignment]
    errors = []
    last = 0
    for row in section.rows:
        where = f"{section.spec}, row {row.line!r}"
        if not last < row.first <= row.last <= len(steps):
            errors.append(f"{where}: steps out of order or past the trace's {len(steps)}")
            continue
        last = row.last
        span = steps[row.first - 1:row.last]
        actors = list(dict.fromkeys(titles[s["actor"]] for s in span))
        if actors != row.actors:
            errors.append(f"{where}: the actors are {', '.join(actors)}")
        if not any(row.prints in s["text"] for s in span):
            errors.append(f"{where}: no step prints {row.prints!r}; they print: "
                          + " | ".join(s["text"] for s in span))
    if section.rows and last != len(steps):
        errors.append(f"{section.spec}: the table ends at step {last}, the trace at {len(steps)}")
    return errors


@dataclass
class Excerpt:
    command: str
    lines: list[str]
    where: str


def output_excerpts(path: Path = README) -> list[Excerpt]:
    """Code blocks announced by `<!-- output of: COMMAND -->` on the line before them."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- output of: (.+) -->", line.strip())
        if not m:
            continue
        assert lines[i + 1].startswith("```"), f"{path.name}:{i + 1}: an output comment needs a code block after it"
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        out.append(Excerpt(m.group(1), lines[i + 2:end], f"{path.name}:{i + 1}"))
    return out


def excerpt_errors(excerpt: Excerpt, output: str) -> list[str]:
    """The excerpt's lines must occur in the output in order; a line `...` skips any
    number of lines, and lines not separated by one must be adjacent there."""
    got = output.splitlines()
    pos = 0
    gap = True  # the first line may be anywhere
    for line in excerpt.lines:
        if line.strip() == "...":
            gap = True
            continue
        if gap:
            try:
                pos = got.index(line, pos) + 1
            except ValueError:
                return [f"{excerpt.where}: {line!r} is not in the output after line {pos}"]
        elif pos >= len(got) or got[pos] != line:
            return [f"{excerpt.where}: {line!r} does not follow; the output has "
                    f"{got[pos] if pos < len(got) else 'nothing'!r}"]
        else:
            pos += 1
        gap = False
    return []


def case_profile_table() -> str:
    """The table case x profile of specs/README.md, from the specs themselves: for each
    catalogue case (and open question) with specs, under each shipped profile, the
    shortest counterexample its specs pin there, or why none applies."""
    names = sorted(profiles.shipped(), key=lambda n: not n.startswith("v"))  # mainline first, by release
    loaded = {n: profiles.load(n) for n in names}
    lines = ["| case | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for ident, entry in catalogue().items():
        if entry.section not in ("Cases", "Open questions") or not entry.links("Spec"):
            continue
        specs = [read(ROOT / link) for link in entry.links("Spec")]
        cells = []
        for name in names:
            here = [s.with_profile(name) for s in specs if name in s.expected_under]
            if here:
                cells.append("; ".join(_result(s) for s in here))
                continue
            lacking = sorted({c for s in specs for c in s.components if c not in loaded[name].components})
            if lacking:
                cells.append(f"does not apply: no `{'`, `'.join(lacking)}` here")
                continue
            try:
                gone = sorted({g for s in specs for g in s.guards_off
                               if g not in build(s.components, s.sizes, s.options, profile=loaded[name]).guards})
            except OptionError as e:  # the world itself is not one of this kernel's
                cells.append(f"does not apply: {e.problem}")
                continue
            assert gone, f"{ident}: no spec of it speaks for {name}, which has its components and guards"
            cells.append(f"does not apply: no guard `{'`, `'.join(gone)}` here")
        lines.append(f"| {ident} {entry.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _result(spec: Spec) -> str:
    e = spec.expect
    assert e is not None
    if e.result == "pass":
        return "passes"
    return f"`{e.invariant}` after {e.within}" if e.result == "violation" else f"`{e.invariant}` cycle ({e.within})"
