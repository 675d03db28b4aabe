"""`python -m checker --model FILE.py`: a model file from outside the tree, checked like a
spec (output, exit codes, exports), and every mistake in the file an exit 2 naming it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from checker.cli import main
from checker.replay import check_document

from .docs import README
from .shipped import ROOT

EXAMPLES = ROOT / "examples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


COUNTER = '''"""A counter that reaches its top."""
from invariants import Invariant, Kind
from model.lang import IntDomain, ModelBuilder


def build():
    b = ModelBuilder("Counter", kernel_docs=False)
    x = b.field("x", IntDomain(0, 3), 0)
    b.part("counter", x)
    b.add("inc", "T", x.var < 3, {x: x.var + 1})
    return b.build()


PROPERTIES = [Invariant("Low", Kind.ALWAYS, "x stays below 3", "-", (), lambda m: m.field("x").var < 3)]
'''


def test_a_model_that_passes_exits_0_with_the_spec_run_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--model", str(EXAMPLES / "twophase.py"))
    assert code == 0
    assert out.splitlines() == [
        f"model: TwoPhase ({EXAMPLES / 'twophase.py'}; components: twophase; guards off: none)",
        "states=1146 distinct=288 depth=10 complete=yes",
        "expected: pass (exhaustive): met",
    ]


def test_a_violation_exits_1_and_depth_bounds_the_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "counter.py", COUNTER)
    code, out, _ = run(capsys, "--model", path)
    assert code == 1
    assert "violation: Low after 3 steps" in out and re.search(r"Reproduce:\n  python -m checker .*--model", out, re.S)
    code, out, _ = run(capsys, "--model", path, "--depth", "2")
    assert code == 0 and "stopped: depth bound 2 reached" in out
    code, _, err = run(capsys, "--model", path, "--invariant", "High")
    assert code == 2 and "counter.py: --invariant: unknown property 'High'; allowed: Low" in err


def test_expectations_and_their_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    met = write(tmp_path, "met.py", COUNTER + 'EXPECT = {"result": "violation", "invariant": "Low", "within": 3}\n'
                "DEPTH = 5\n")
    code, out, _ = run(capsys, "--model", met)
    assert code == 0 and out.endswith("expected: violation of Low within 3 steps: met\n")
    unmet = write(tmp_path, "unmet.py", COUNTER + 'EXPECT = {"result": "pass"}\n')
    code, out, _ = run(capsys, "--model", unmet)
    assert code == 1 and "expected: pass: NOT met\n  - violated: Low" in out
    wrong = write(tmp_path, "wrong.py", COUNTER + 'EXPECT = {"result": "violation", "invariant": "High"}\n')
    code, _, err = run(capsys, "--model", wrong)
    line = COUNTER.count("\n") + 1
    assert code == 2 and f"{wrong}:{line}: EXPECT.invariant: 'High' is not a ALWAYS property" in err


@pytest.mark.parametrize(("text", "where", "message"), [
    ("def build(:\n    pass\n", ":1: syntax: ", "invalid syntax"),
    ("import os\n\nraise ValueError('boom')\n", ":3: load: ", "ValueError: boom"),
    ("X = 1\n", ": build: ", "missing; allowed: def build() -> model.lang.Model"),
    ("def build():\n    return 1 / 0\n", ":2: build(): ", "ZeroDivisionError: division by zero"),
    ("def build():\n    return 3\n", ":1: build: ", "returned int; allowed: a model.lang.Model"),
    ("from model.lang import IntDomain, ModelBuilder\n\n\ndef build():\n    b = ModelBuilder('m', kernel_docs=False)\n"
     "    x = b.field('x', IntDomain(0, 3), 0)\n    b.add('inc', 'T', True, {x: x.var + 1})\n    return b.build()\n",
     ":8: build(): ", "action inc() (defined at "),
    ("from examples.diehard import build\nPROPERTIES = [1]\n", ":2: PROPERTIES: ", "1 is not an Invariant"),
    ("from examples.diehard import build\nEXPECT = {'result': 'pass', 'bogus': 1}\n", ":2: EXPECT['bogus']: ",
     "unknown key"),
    ("from examples.diehard import build\nDEPTH = -1\n", ":2: DEPTH: ", "-1 is not an int >= 0"),
])
def test_a_bad_model_file_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       text: str, where: str, message: str) -> None:
    path = write(tmp_path, "bad.py", text)
    code, out, err = run(capsys, "--model", path)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}{where}") and message in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--spec", "x"], "--model and --spec are mutually exclusive"),
    (["--model", "{tmp}/none.py"], "none.py: file: cannot be read"),
    (["--guard", "g=off"], "--guard applies to a spec"),
    (["--profile", "v6.16"], "--profile applies to a spec"),
])
def test_options_a_model_file_cannot_take_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           args: list[str], message: str) -> None:
    code, _, err = run(capsys, "--model", str(EXAMPLES / "diehard.py"), *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message in err


def test_exports_are_written_and_replay_from_the_document_alone(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    model = tmp_path / "diehard.py"
    shutil.copy(EXAMPLES / "diehard.py", model)
    code, out, _ = run(capsys, "--model", str(model), "--export", str(out_dir), "--format", "text,json,dot,pytest")
    assert code == 0  # the expected violation
    assert {p.name for p in out_dir.iterdir()} >= {"diehard.txt", "diehard.json", "diehard.dot", "diehard.py"}
    doc = json.loads((out_dir / "diehard.json").read_text())
    check_document(doc, "diehard.json")  # a valid document of the schema
    assert doc["schema_version"] == 4 and doc["scenario"]["toml"] == ""
    assert doc["scenario"]["model"]["text"] == model.read_text()
    assert doc["command"] == f"python -m checker --model {model}"
    assert doc["steps"][0]["action"] in ("fill_big()", "fill_small()") and len(doc["steps"]) == 6
    text = (out_dir / "diehard.txt").read_text()
    assert text.startswith("DieHard: NotSolved violated after 6 steps\n\nModel:")
    assert "Reproduce:\n  python -m checker \\\n    --model" in text and "Steps (DieHard):" in text
    model.unlink()  # the document carries the model
    code, out, err = run(capsys, "replay", str(out_dir / "diehard.json"))
    assert code == 1 and "reproduces" in out, err
    doc["scenario"]["model"]["text"] += "\n"
    (out_dir / "tampered.json").write_text(json.dumps(doc))
    code, _, err = run(capsys, "replay", str(out_dir / "tampered.json"))
    assert code == 2 and "scenario.model.sha256: does not match the text" in err


def test_readme_shows_a_real_example_model() -> None:
    """The section's model file is examples/missionaries.py as it stands."""
    text = README.read_text()
    section = text[text.index("## Write your own model"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks and blocks[0] == (EXAMPLES / "missionaries.py").read_text()
