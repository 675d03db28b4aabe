"""A patch extension end to end on the command line: run, export, replay (from the
document alone, and with a fix), --against the kernel without the patch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from checker.cli import main

from .shipped import ROOT

PATCHES = ROOT / "examples" / "patches"
SPEC = PATCHES / "drop_page_pinning.toml"
EXTENSION = PATCHES / "drop_page_pinning.py"
B4_V619 = ROOT / "specs" / "remove-or-demote-without-track__no-track-before-remove.v6.19.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_extension_on_v6_16_is_the_v6_19_profile_state_for_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", str(SPEC))
    assert code == 0, out
    assert "(profile: v6.16 + drop_page_pinning;" in out
    assert "states=391 distinct=259 depth=17 complete=no" in out  # B4's figures under v6.19
    code, out, _ = run(capsys, "--spec", str(SPEC), "--against", "v6.19")
    assert code == 0 and "every verdict is the same" in out


def test_against_the_kernel_before_shows_what_the_patch_changes(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--spec", str(SPEC), "--against", "v6.16", "--export", str(tmp_path),
                       "--format", "json")
    assert code == 1
    assert "v6.16 + drop_page_pinning against v6.16: 1 of 2 verdicts differ" in out
    assert "no_free_while_mapped  ALWAYS  violated after 17 steps    holds" in out
    [doc] = tmp_path.glob("*.json")
    assert doc.name == "drop_page_pinning@v6.16+drop_page_pinning.no_free_while_mapped.json"


def test_without_extensions_the_spec_s_expectation_does_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", str(SPEC), "--without-extensions")
    assert code == 0 and "violation" not in out and "(profile: v6.16;" in out


def test_a_command_line_extension_is_loaded_and_the_spec_s_expect_no_longer_applies(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = SPEC.read_text().replace('extensions = ["drop_page_pinning.py"]\n', "")
    spec = tmp_path / "b4.toml"
    spec.write_text(text)
    code, out, _ = run(capsys, "--spec", str(spec), "--extension", str(EXTENSION))
    assert code == 1 and "violation: no_free_while_mapped after 17 steps" in out
    assert "expected:" not in out
    assert f"--extension {EXTENSION}" in out  # the command that reproduces the run


def test_the_document_carries_the_extension_and_replays_without_its_file(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path) -> None:
    here = tmp_path / "patch"
    here.mkdir()
    for f in (SPEC, EXTENSION):
        shutil.copy(f, here / f.name)
    out_dir = tmp_path / "out"
    assert main(["--spec", str(here / SPEC.name), "--export", str(out_dir), "--format", "json"]) == 0
    first = (out_dir / "drop_page_pinning.json").read_bytes()
    assert main(["--spec", str(here / SPEC.name), "--export", str(out_dir), "--format", "json"]) == 0
    assert (out_dir / "drop_page_pinning.json").read_bytes() == first, "exports are deterministic"
    doc = json.loads(first)
    assert doc["schema_version"] == 4
    [carried] = doc["scenario"]["extensions"]
    assert carried["name"] == "drop_page_pinning.py" and carried["via"] == "spec"
    assert carried["text"] == EXTENSION.read_text()
    shutil.rmtree(here)  # the document alone replays
    capsys.readouterr()
    code, out, _ = run(capsys, "replay", str(out_dir / "drop_page_pinning.json"))
    assert code == 1 and "reproduces" in out
    code, out, _ = run(capsys, "replay", str(out_dir / "drop_page_pinning.json"), "--guard",
                       "track-before-remove=on")
    assert code == 0 and "does not reproduce: step 15" in out


def test_replay_with_another_extension_instead_of_the_carried_one(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    assert main(["--spec", str(SPEC), "--export", str(tmp_path), "--format", "json"]) == 0
    keep = tmp_path / "keep_pins.py"
    keep.write_text('from model.lang import Extension\n\n\nclass KeepPins(Extension):\n'
                    '    name = "keep_pins"\n    summary = "the pins as they were"\n')
    capsys.readouterr()
    code, out, _ = run(capsys, "replay", str(tmp_path / "drop_page_pinning.json"), "--extension", str(keep))
    assert code == 0 and "does not reproduce" in out


def test_a_tampered_copy_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--spec", str(SPEC), "--export", str(tmp_path), "--format", "json"]) == 0
    path = tmp_path / "drop_page_pinning.json"
    doc = json.loads(path.read_text())
    doc["scenario"]["extensions"][0]["text"] += "# changed\n"
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    code, _, err = run(capsys, "replay", str(path))
    assert code == 2 and "scenario.extensions[0].sha256: does not match the text" in err


def test_a_document_without_extensions_keeps_schema_3(tmp_path: Path) -> None:
    assert main(["--spec", str(B4_V619), "--export", str(tmp_path), "--format", "json"]) == 0
    doc = json.loads((tmp_path / f"{B4_V619.stem}.json").read_text())
    assert doc["schema_version"] == 3 and "extensions" not in doc["scenario"]


def test_list_shows_the_extension_s_refinements(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "actions", "--spec", str(B4_V619), "--profile", "v6.16",
                       "--extension", str(EXTENSION))
    assert code == 0
    assert "TDH.MEM.PAGE.REMOVE" not in out  # keys, not texts
    code, plain, _ = run(capsys, "list", "actions", "--spec", str(B4_V619), "--profile", "v6.16")
    assert plain == out  # refining keeps every key: a trace names the same steps


def test_readme_shows_the_worked_extension_whole() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{EXTENSION.read_text()}```" in readme


PROGRESS_EXTENSION = '''"""A progress property from outside the tree: g0 is eventually private."""

from invariants.core import progress
from model.lang import Extension


class WantsPrivate(Extension):
    name = "wants_private"
    summary = "g0 eventually turns private"
    properties = (progress("g0_turns_private", "g0 is eventually private", "a test", ("attributes",),
                           lambda m: [("ioctl", m.field("mem_attr_array[g0]").var == 0)]),)
'''


def test_an_extension_s_progress_property_is_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Nothing obliges the ioctl thread to convert g0: a lasso in which it stays shared."""
    ext = tmp_path / "wants.py"
    ext.write_text(PROGRESS_EXTENSION)
    spec = tmp_path / "small.toml"
    spec.write_text('components = ["attributes"]\ninvariants = ["g0_turns_private"]\nextensions = ["wants.py"]\n'
                    '[sizes]\nvcpus = 1\nhuge_pages = 1\npages_per_huge = 2\n'
                    '[attributes]\nmax_conversions = 1\n')
    code, out, _ = run(capsys, "--spec", str(spec))
    assert code == 1, out
    assert "cycle: g0_turns_private: ioctl waits forever" in out
    assert "Broken: g0_turns_private (PROGRESS)" in out


def test_the_html_viewer_shows_the_patch(tmp_path: Path) -> None:
    assert main(["--spec", str(SPEC), "--export", str(tmp_path), "--format", "html"]) == 0
    page = (tmp_path / "drop_page_pinning.html").read_text()
    assert 'Patch extension <code>drop_page_pinning.py</code> (spec)' in page
    assert "DropPagePinning(Extension):" in page


def test_coverage_says_whether_the_patch_s_own_action_fired(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", str(PATCHES / "dynamic_pamt_fast_path.toml"), "--coverage")
    assert code == 0
    [row] = [line.split() for line in out.splitlines() if line.strip().startswith("tdx_pamt_get ")]
    assert row == ["tdx_pamt_get", "4", "4", "300", "80"]  # instances, ever enabled, enabling, new states


@pytest.mark.parametrize("where", ["import", "define"])
def test_an_extension_that_exits_is_a_mistake_not_a_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            where: str) -> None:
    """sys.exit(0) in an extension must not end the run with exit 0 (or 1): it is bad input."""
    ext = tmp_path / "quits.py"
    body = "    def define(self, b):\n        sys.exit(0)\n" if where == "define" else ""
    ext.write_text("import sys\n\nfrom model.lang import Extension\n\n" + ("sys.exit(0)\n" if where == "import" else "")
                   + '\n\nclass Quits(Extension):\n    name = "quits"\n    summary = "s"\n' + body)
    code, out, err = run(capsys, "--spec", str(B4_V619), "--extension", str(ext))
    assert code == 2 and "SystemExit: 0" in err and f"{ext}:" in err, (out, err)
