"""The worked patches in examples/patches/ and the extension API they are written with.

Each patch spec meets its expectation; each extension file stays a short read; the same
scenario without its extension behaves as the kernel before the patch. Then the API's
guarantees: a mistake in an extension is exit 2 naming its file and line, `split()` adds
an interleaving point, `refine()` conjoins or replaces a guard, and a value an extension
adds to a variant is read as itself by the extension and as its `like` by the component.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import z3

from checker.cli import main
from checker.compile import compile_model
from checker.explicit import Budget, ExplicitSearch, SearchResult
from checker.spec import from_text
from invariants import Invariant, Kind
from model.lang import BOOL, IntDomain, Model, ModelBuilder, Step, kernel
from model.mmu.tdx.teardown import BUSY_TEXT

from .shipped import ROOT

PATCHES = ROOT / "examples" / "patches"
SPECS = sorted(PATCHES.glob("*.toml"))
SUMMARY = re.compile(r"^states=\d+ distinct=(\d+) depth=(\d+) complete=(yes|no)(?: orbits=\d+ symmetry=\S+)?$", re.M)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def without_extension(spec: Path, tmp_path: Path, expect: bool = False) -> Path:
    """A copy of `spec` that loads no extension (and, unless `expect`, has no [expect]:
    its witnesses may be the extension's)."""
    text = re.sub(r"^extensions = .*\n", "", spec.read_text(), flags=re.M)
    copy = tmp_path / f"{spec.stem}.without.toml"
    copy.write_text(text if expect else text.split("\n[expect]")[0] + "\n")
    return copy


# -- the worked patches ---------------------------------------------------------------


def test_there_are_three_patches_and_each_has_its_spec() -> None:
    assert {p.stem for p in PATCHES.glob("*.py")} == {"drop_page_pinning", "tdh_do_no_vcpus", "dynamic_pamt_fast_path"}
    assert {p.stem.split(".")[0] for p in SPECS} == {p.stem for p in PATCHES.glob("*.py")}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_each_patch_spec_meets_its_expectation(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = from_text(path.read_text(), str(path), path.stem)
    assert spec.expect is not None and spec.expect.distinct is not None and spec.description.strip()
    code, out, _ = run(capsys, "--spec", str(path))
    assert code == 0, out
    last = out.splitlines()[-1]
    assert last.startswith("expected: ") and last.endswith(": met"), last
    distinct, depth, complete = SUMMARY.search(out).groups()  # type: ignore[union-attr]
    assert (int(distinct), int(depth)) == (spec.expect.distinct, spec.expect.depth)
    if spec.expect.result == "violation":
        assert f"Violated: {spec.expect.invariant} (ALWAYS)" in out and complete == "no"
    else:
        assert "violation" not in out and complete == "yes"


@pytest.mark.parametrize("path", sorted(PATCHES.glob("*.py")), ids=lambda p: p.stem)
def test_each_extension_is_under_60_lines_and_names_its_patch(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) < 60
    first = text.splitlines()[0]
    assert re.search(r"\b[0-9a-f]{12}\b|<[^<>@\s]+@[^<>\s]+>", first), f"{path.name}: no commit id or Message-ID"


def test_drop_page_pinning_without_the_extension_keeps_v6_16_s_pins(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--spec", str(without_extension(PATCHES / "drop_page_pinning.toml", tmp_path)))
    assert code == 0 and "violation" not in out
    assert SUMMARY.search(out).group(3) == "yes"  # type: ignore[union-attr]


def test_tdh_do_no_vcpus_changes_names_not_states(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without the extension: v6.16's BUSY lines and no such property, but the same states;
    with it, the BUSY lines v6.19's tdx.busy_retry prints."""
    path = PATCHES / "tdh_do_no_vcpus.toml"
    patched = from_text(path.read_text(), str(path), path.stem)
    before = from_text(without_extension(path, tmp_path).read_text(), str(path), "before")
    v619 = before.with_profile("v6.19")

    def busy(m: Model) -> list[str]:
        return [a.text for a in m.actions if a.name in ("tdh_mem_range_block_busy", "tdh_mem_track_busy",
                                                        "tdh_mem_page_remove_busy")]

    assert busy(patched.build()) == busy(v619.build()) != busy(before.build())
    assert all(BUSY_TEXT["tdx_no_vcpus_enter"] in t for t in busy(before.build()))
    code, out, _ = run(capsys, "--spec", str(without_extension(path, tmp_path)))
    assert code == 0 and "tdh_do_no_vcpus_retried" not in out and "profile: v6.16;" in out
    assert int(SUMMARY.search(out).group(1)) == patched.expect.distinct  # type: ignore[union-attr]


def test_dynamic_pamt_without_the_extension_has_no_pamt(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = PATCHES / "dynamic_pamt_fast_path.toml"
    before = from_text(without_extension(path, tmp_path).read_text(), str(path), "before").build()
    assert not [f for f in before.schema.fields if f.name.startswith("pamt")]
    assert not [a for a in before.actions if "pamt" in a.text]
    code, _, err = run(capsys, "--spec", str(without_extension(PATCHES / "dynamic_pamt_fast_path.no-recheck.toml",
                                                               tmp_path, expect=True)))
    assert code == 2 and "unknown guard 'pamt-get-recheck'" in err


# -- mistakes in an extension: exit 2, the file and the line --------------------------

WORLD = """
description = "a small TDX world for the extension API's errors"
profile = "v6.16"
components = ["tdx", "guest"]
extensions = ["ext.py"]

[sizes]
vcpus = 1
huge_pages = 1
pages_per_huge = 2

[attributes]
initial_attributes = "private"
max_conversions = 0

[tdx]
max_punch_holes = 1
punch_holes = [{ start = 0, end = 1 }]
max_memslot_updates = 0
nx_recovery = false
"""

HEAD = """from model.lang import BOOL, Extension, IntDomain, ModelBuilder, Step, kernel


class Patch(Extension):
    name = "patch"
    summary = "a patch under review"
    requires = ("tdx",)
"""

MISTAKES = {  # body after HEAD (None: the whole file), the line blamed, what the message says
    "syntax error": ("from model.lang import Extension\nclass Patch(Extension)\n    name = 'x'\n", 2, "syntax"),
    "exception at import": ("from model.lang import Extension\nratio = 1 / 0\n", 2, "ZeroDivisionError: division"),
    "no extension": ("X = 1\n", None, "defines no extension"),
    "a shipped component's name": ("\n\n" + HEAD.replace('"patch"', '"tdx"'), 6, "'tdx' is a shipped component's name"),
    "a catalogue property's name": ("""import z3
from invariants import Invariant, Kind
from model.lang import Extension


class Patch(Extension):
    name = "patch"
    summary = "a patch under review"
    properties = (Invariant("no_kvm_bug", Kind.ALWAYS, "kvm->vm_bugged", "none", (), lambda m: z3.BoolVal(True)),)
""", 6, "'no_kvm_bug' is already in the catalogue"),
    "unknown action": (HEAD + """
    def define(self, b: ModelBuilder) -> None:
        b.refine("tdh_mem_page_nuke", "why", text=lambda a: a.text)
""", 10, "unknown action 'tdh_mem_page_nuke'"),
    "foreign field": (HEAD + """
    def define(self, b: ModelBuilder) -> None:
        stray = ModelBuilder("another").field("stray", BOOL, False)
        b.refine("tdh_mem_page_remove", "why", effect=lambda a: {stray: True})
""", 11, "effect on unknown field 'stray'"),
    "no @kernel": (HEAD + """
    def nothing(self) -> Step:
        return Step("nothing", True, {})

    def define(self, b: ModelBuilder) -> None:
        b.action(self.nothing, "ioctl")
""", 13, "decorate it with @kernel"),
    "no docstring": (HEAD + """
    @kernel("kvm_gmem_punch_hole")
    def nothing(self) -> Step:
        return Step("nothing", True, {})

    def define(self, b: ModelBuilder) -> None:
        b.action(self.nothing, "ioctl")
""", 14, "its docstring must name the kernel function"),
    "a split's second half out of range": (HEAD + """
    def declare(self, b: ModelBuilder, deps: object) -> None:
        self.n = b.field("patch.count", IntDomain(0, 1), 0, "a counter")

    @kernel("kvm_gmem_punch_hole")
    def truncate(self, hole: object) -> Step:
        \"\"\"kvm_gmem_punch_hole(): a second half that counts once too often; nothing else.\"\"\"
        return Step("truncate", True, {self.n: self.n.var + 1})

    def define(self, b: ModelBuilder) -> None:
        b.split("kvm_gmem_punch_hole", self.truncate, [f for f, _ in b.actions("kvm_gmem_punch_hole")[0].effect])
""", 12, "action truncate(hole=PunchHole(start=0, end=1)) (defined at "),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_in_an_extension_names_its_file_and_line(mistake: str, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    body, line, says = MISTAKES[mistake]
    (tmp_path / "ext.py").write_text(body)
    (tmp_path / "world.toml").write_text(WORLD)
    code, out, err = run(capsys, "--spec", str(tmp_path / "world.toml"), "--depth", "1")
    assert code == 2, out + err
    where = str(tmp_path / "ext.py") + ("" if line is None else f":{line}")
    assert where in err and says in err, err
    assert "Traceback" not in err


# -- split, refine, values: on models small enough to count by hand ---------------------


class Tiny:
    """Actor A writes `x` (and marks `started`); actor B looks at `x` once A has started;
    A has another step it may take only after its write."""

    def __init__(self) -> None:
        self.b = b = ModelBuilder("tiny")
        self.started, self.x = b.field("started", BOOL, False), b.field("x", IntDomain(0, 1), 0)
        self.seen, self.after = b.field("seen", BOOL, False), b.field("after", BOOL, False)
        b.action(self.write, "A")
        b.action(self.other, "A")
        b.action(self.observe, "B")

    @kernel("write")
    def write(self) -> Step:
        """write: x := 1, started; nothing left out."""
        return Step("write", z3.Not(self.started.var), {self.started: True, self.x: 1})

    @kernel("other")
    def other(self) -> Step:
        """other: A's next step; nothing left out."""
        return Step("other", z3.And(self.started.var, z3.Not(self.after.var)), {self.after: True})

    @kernel("observe")
    def observe(self) -> Step:
        """observe: B sees A started and x still 0; nothing left out."""
        return Step("observe", z3.And(self.started.var, self.x.var == 0, z3.Not(self.seen.var)), {self.seen: True})

    @kernel("write")
    def publish(self) -> Step:
        """write, its second half: nothing of its own; nothing left out."""
        return Step("publish", True, {})


def search(model: Model, *formulas: tuple[str, Callable[[Model], z3.BoolRef]]) -> SearchResult:
    bound = [Invariant(n, Kind.ALWAYS, n, "test", (), f).bind(model) for n, f in formulas]
    return ExplicitSearch(compile_model(model), bound, Budget()).run()


def test_split_adds_an_interleaving_point_and_keeps_its_actor_inside() -> None:
    atomic = Tiny()
    r = search(atomic.b.build(), ("unseen", lambda m: z3.Not(m.field("seen").var)))
    assert r.complete and not r.violations and r.distinct == 3  # initial, written, other
    split = Tiny()
    [second] = split.b.split("write", split.publish, [split.started])
    assert second.name == "publish" and second.actor == "A"
    model = split.b.build()
    r = search(model, ("unseen", lambda m: z3.Not(m.field("seen").var)))
    assert [h.depth for h in r.violations] == [2], "B runs between the two halves"
    r = search(model, ("A inside", lambda m: z3.Implies(m.field("after").var, m.field("x").var == 1)))
    assert r.complete and not r.violations and r.distinct == 7  # A's other step waits for the second half


def test_refine_conjoins_a_guard_or_replaces_it() -> None:
    def guard(replace: bool) -> z3.BoolRef:
        t = Tiny()
        [a] = t.b.refine("observe", "B looks only after A's other step", guard=lambda a: t.after.var,
                         replace_guard=replace)
        expected = t.after.var if replace else z3.And(t.started.var, t.x.var == 0, z3.Not(t.seen.var), t.after.var)
        assert z3.Solver().check(a.guard != expected) == z3.unsat
        assert "Refined (" in a.doc and "B looks only after A's other step" in a.doc
        return a.guard

    assert z3.Solver().check(guard(False) != guard(True)) == z3.sat


VALUES = '''
from model.lang import Extension, ModelBuilder, VariantValue


class Noted(Extension):
    name = "noted"
    summary = "the BUSY retry, noted"
    requires = ("tdx",)
    values = {"tdx.busy_retry": (VariantValue("tdx_no_vcpus_enter_noted", "patch", "test", "as v6.16, noted",
                                              like="tdx_no_vcpus_enter"),)}

    def define(self, b: ModelBuilder) -> None:
        chosen = b.variant("tdx.busy_retry")
        b.refine("tdh_mem_page_remove_busy", "note the choice", text=lambda a: f"{a.text} [{chosen}]")
'''


def test_a_value_an_extension_adds_is_chosen_in_variants_and_read_two_ways(tmp_path: Path) -> None:
    (tmp_path / "ext.py").write_text(VALUES)
    text = WORLD + '\n[variants]\n"tdx.busy_retry" = "tdx_no_vcpus_enter_noted"\n'
    model = from_text(text, str(tmp_path / "world.toml"), "world").build()
    texts = [a.text for a in model.actions if a.name == "tdh_mem_page_remove_busy"]
    assert texts and all(t.endswith(f"; {BUSY_TEXT['tdx_no_vcpus_enter']} [tdx_no_vcpus_enter_noted]") for t in texts)
