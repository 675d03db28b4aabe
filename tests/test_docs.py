"""The documentation cannot drift: every case id resolves to CATALOGUE.md, every catalogue
entry names specs, guards and invariants that exist, specs/README.md's facts and step
tables match the specs and their traces (the traces themselves in test_export.py), and
every output excerpt in README.md occurs in the real output of its command."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from checker.cli import main
from checker.spec import read
from invariants import CATALOGUE as INVARIANTS

from .docs import (
    CATALOGUE,
    ID,
    README,
    SPECS_README,
    case_profile_table,
    catalogue,
    excerpt_errors,
    output_excerpts,
    spec_sections,
)
from .shipped import ROOT, SPECS

CITING = [README, SPECS_README, ROOT / "ARCHITECTURE.md", CATALOGUE, *SPECS,
          *sorted(p for d in ("model", "invariants", "checker") for p in (ROOT / d).rglob("*.py"))]


def test_every_id_in_the_docs_and_the_code_is_in_the_catalogue() -> None:
    known = catalogue()
    missing = sorted({(str(p.relative_to(ROOT)), i) for p in CITING for i in ID.findall(p.read_text())
                      if i not in known})
    assert not missing, f"ids that CATALOGUE.md does not define: {missing}"


def test_nothing_cites_a_document_the_repository_does_not_hold() -> None:
    bad = [(str(p.relative_to(ROOT)), m.group(0)) for p in CITING
           for m in re.finditer(r"(?i)\b(domain brief|the brief|brief.s|brief \d|open question \d+\.\d+)",
                                p.read_text())]
    assert not bad, bad


def test_each_case_names_its_specs_guards_and_broken_invariants() -> None:
    cases = {i: e for i, e in catalogue().items() if e.section in ("Cases", "Open questions")}
    assert len(cases) >= 17
    claimed: dict[str, str] = {}
    for ident, entry in cases.items():
        specs = entry.links("Spec")
        assert specs, f"{ident} names no spec"
        for link in specs:
            path = ROOT / link
            assert path.is_file(), f"{ident}: {link} does not exist"
            claimed[path.name] = ident
            spec = read(path)
            assert spec.expect is not None and spec.expect.invariant in entry.names("Breaks"), ident
            assert set(spec.guards_off) <= set(entry.names("Guard")), (ident, spec.guards_off)
            if entry.section == "Cases":
                assert path.stem.split("__")[0] == entry.name, f"{ident}: {path.name} is not named after the case"
                assert spec.guards_off, f"{ident}: {path.name} switches no guard off"
    cases_specs = {p.name for p in SPECS if "__" in p.stem or read(p).expect.result != "pass"}  # type: ignore[union-attr]
    assert cases_specs == set(claimed), f"specs without a catalogue entry: {sorted(cases_specs - set(claimed))}"


def test_invariant_entries_name_what_checks_them() -> None:
    names = {i.name for i in INVARIANTS}
    for ident, entry in catalogue().items():
        if entry.section != "Invariants":
            continue
        checked = entry.keys.get("Checked as", "")
        assert checked, f"{ident} has no **Checked as:**"
        if not checked.strip("`").startswith("not modelled"):
            assert entry.names("Checked as") and set(entry.names("Checked as")) <= names, (ident, checked)


def test_specs_readme_has_a_section_per_spec_under_its_catalogue_id() -> None:
    sections = spec_sections()
    assert set(sections) == {p.name for p in SPECS}
    known = catalogue()
    for name, section in sections.items():
        if section.id is not None:
            assert section.id in known and any(Path(link).name == name for link in known[section.id].links("Spec")), \
                f"specs/README.md: {name} ({section.id}) is not that entry's spec"
        spec = read(ROOT / "specs" / name)
        assert spec.expect is not None
        if spec.expect.result != "pass":
            assert section.rows, f"specs/README.md: {name} has no step table"
            assert f"`{spec.expect.invariant}`" in section.text


def test_specs_readme_has_the_table_case_by_profile() -> None:
    """Each catalogue case under each shipped profile, as the specs pin it."""
    table = case_profile_table()
    assert table in SPECS_README.read_text(), f"specs/README.md's table case x profile should be:\n{table}"


def test_specs_readme_figures_are_the_specs_own() -> None:
    """Every figure a section cites is one its spec pins, under one of its profiles."""
    for name, section in spec_sections().items():
        spec = read(ROOT / "specs" / name)
        pinned = [e for e in (spec.with_profile(p).expect for p in spec.expected_under) if e is not None]
        assert pinned
        prose = "\n".join(line for line in section.text.splitlines() if not line.startswith("|"))
        for n in re.findall(r"within (\d+) steps", prose):
            assert int(n) in {e.within for e in pinned}, f"{name}: 'within {n} steps', the spec says otherwise"
        for n in re.findall(r"([\d,]+) states", prose):
            assert int(n.replace(",", "")) in {e.distinct for e in pinned}, f"{name}: '{n} states' is not pinned"
        for n in re.findall(r"depth (\d+)", prose):
            assert int(n) in {e.depth for e in pinned}, f"{name}: 'depth {n}' is not pinned"
        cited = re.findall(r"(?i)\bsteps? \d+", prose)
        assert not cited, f"specs/README.md, {name}: prose cites {cited}; put steps in the table"


@pytest.mark.parametrize("excerpt", output_excerpts(), ids=lambda e: e.where)
def test_readme_output_excerpts_are_real_output(excerpt, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # for --model examples/...
    monkeypatch.chdir(tmp_path)
    output = ""
    for command in excerpt.command.split(" && "):
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "checker"], f"{excerpt.where}: runs {command!r}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main(words[3:])
        output = out.getvalue()
    assert not excerpt_errors(excerpt, output), excerpt_errors(excerpt, output)


def test_readme_shows_real_output_of_the_main_commands() -> None:
    commands = {e.command for e in output_excerpts()}
    assert "python -m checker --depth 40" in commands  # the set-up block's first command
    assert len(commands) >= 4


def test_the_exit_codes_in_readme_are_the_checkers() -> None:
    from checker.errors import EXIT_CODES

    text = README.read_text()
    for code, _ in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", text, re.M), f"README's exit-code table lacks {code}"
