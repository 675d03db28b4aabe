"""Every shipped spec meets its expected result and its pinned figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from checker import specindex
from checker.cli import main
from checker.document import fingerprint
from checker.spec import Spec, load, read
from model.lang import order
from model.mmu import COMPONENTS, profiles

from .shipped import ROOT, SPECS

SUMMARY = re.compile(r"^states=\d+ distinct=(\d+) depth=(\d+) complete=(yes|no)(?: orbits=\d+ symmetry=\S+)?$", re.M)


def test_every_spec_pins_its_expected_result_and_distinct_count() -> None:
    assert SPECS, "no specs shipped"
    for path in SPECS:
        spec = read(path)
        assert spec.expect is not None, f"{path.name} has no [expect]"
        assert spec.expect.distinct is not None, f"{path.name} does not pin distinct"
        assert spec.description.strip(), f"{path.name} has no description"


# exhaustive runs of minutes and GB, out of the default selection: the gate (-m gate, run
# by CI) has the huge-page default; `pytest -n 0 -m slow` runs all three
EXHAUSTIVE = {"tdx-default": [pytest.mark.slow], "tdx-hugepage-default": [pytest.mark.slow, pytest.mark.gate],
              # Q3's counter-proposal world: 40 s with its no-progress search
              "punch-hole-hook-widened": [pytest.mark.slow]}
# under the profiles other than the spec's own, the no-progress searches and the worlds of
# more than half a million states: on request (-m slow)
SLOW_ELSEWHERE = {"tdx-progress-default", "tdx-hugepage-small-default", "tdx-hugepage-accept-progress",
                  "promotion-over-partial-or-mixed-children__no-mirror-hugepage-adjust",
                  "accept-level-race-2M-vs-4K__no-accept-level-write-lock.accept-loop",
                  "accept-split-of-the-shared-root__no-accept-split-mirror-root.accept-loop"}


def test_every_guard_has_a_spec_that_shows_what_breaks_without_it() -> None:
    guards = {g for path in SPECS if "__" not in path.stem for g in load(path).build().guards}
    assert {"huge-range", "freeze", "track-before-remove", "fast-zap-direct-only", "split-cross-boundary",
            "mirror-hugepage-adjust", "accept-level-write-lock", "keep-pin-on-parent-zap",
            "per-vm-mmio-value", "memslot-update-in-progress", "nonpresent-value-check",
            "tdx-requires-mmio-caching", "mmio-mask-suppress-ve"} <= guards
    switched_off = {g for path in SPECS for g in read(path).guards_off}
    assert guards <= switched_off, f"guards without a spec: {sorted(guards - switched_off)}"
    index = specindex.read()
    assert guards <= set(index["guards"]), "specs/coverage.json lacks guards: python -m checker index"
    assert set(index["specs"]) == {p.stem for p in SPECS}, "specs/coverage.json indexes other specs"


def _inputs(spec: Spec, name: str) -> tuple[object, ...]:
    """What a profile hands the model of `spec`: the variants of its components, the
    guard defaults, and whether it has them all. Two profiles equal here build the same
    model (a profile is data read through one API), so the search need not run twice."""
    p = profiles.load(name)
    parts = set(order(COMPONENTS, spec.components))
    return (tuple(sorted((k, v) for k, v in p.variants.items() if k.split(".")[0] in parts)),
            tuple(sorted(p.guards.items())), parts <= set(p.components))


def _models(spec: Spec) -> list[str]:
    """The profiles the spec's [expect] names, one per distinct model."""
    seen: dict[tuple[object, ...], str] = {}
    for name in spec.expected_under:
        seen.setdefault(_inputs(spec, name), name)
    return list(seen.values())


# the default selection runs a spec's whole check under its own profile when it stores
# at most this many states; the larger ones run there only a few levels deep
# (test_every_spec_runs_a_few_levels), and whole in the gate
LIGHT_DISTINCT = 50_000


def _light(path: Path) -> bool:
    expect = read(path).expect
    return expect is not None and expect.distinct is not None and expect.distinct <= LIGHT_DISTINCT


def _in_default_selection(path: Path, profile: str) -> bool:
    """A small spec under its own profile; the rest runs in the gate (or on request)."""
    return _light(path) and profile == read(path).expected_under[0] and path.stem not in EXHAUSTIVE


def _marks(path: Path, profile: str) -> list[pytest.MarkDecorator]:
    """Exhaustive worlds as EXHAUSTIVE says; the default selection's runs unmarked; the
    rest in the gate (or on request: SLOW_ELSEWHERE, under another profile than its own)."""
    if path.stem in EXHAUSTIVE:
        return EXHAUSTIVE[path.stem]
    if _in_default_selection(path, profile):
        return []
    own = profile == read(path).expected_under[0]
    return [pytest.mark.slow] if path.stem in SLOW_ELSEWHERE and not own else [pytest.mark.gate]


@pytest.mark.gate
@pytest.mark.parametrize("path", [p for p in SPECS if _light(p)], ids=lambda p: p.stem)
def test_two_workers_print_what_one_prints(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The specs whose whole check the default selection runs on one thread, on two:
    the same verdicts, counterexamples and figures, byte for byte (the gate runs every
    other spec's check on two threads against its pinned figures)."""
    outputs = []
    for workers in ("1", "2"):
        assert main(["--spec", str(path), "--workers", workers]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("path", [p for p in SPECS if not _light(p)], ids=lambda p: p.stem)
def test_every_spec_runs_a_few_levels(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the default selection runs of a spec too large to check whole there: it loads,
    its model builds and compiles, and two levels are searched under its own profile."""
    spec = read(path)
    code = main(["--spec", str(path), "--depth", "2", "--ignore-expected"])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 1: a violation within two steps
    distinct, depth, _ = SUMMARY.search(out).groups()  # type: ignore[union-attr]
    assert int(depth) <= 2 and int(distinct) > 1
    assert f"profile: {spec.expected_under[0]}" in out


@pytest.mark.parametrize(("path", "profile"), [
    pytest.param(p, profile, id=f"{p.stem}@{profile}", marks=_marks(p, profile))
    for p in SPECS for profile in _models(read(p))
])
def test_spec_meets_its_expectation(path: Path, profile: str, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    """Under its own profile and each other profile its [expect] names that gives the
    spec another model (the rest build the same model: see _inputs). Under its own, the
    action names its run enables are those the coverage index (specs/coverage.json) says."""
    spec = load(path).with_profile(profile)  # its [expect] as it reads there (expect.under)
    assert spec.expect is not None
    own = profile == spec.expected_under[0]
    index = ["--coverage", "--export", str(tmp_path)] if own else []
    # what runs in the gate runs on two threads: the pinned figures are those of one
    workers = [] if _in_default_selection(path, profile) else ["--workers", "2"]
    assert main(["--spec", str(path), "--profile", profile, *index, *workers]) == 0
    out = capsys.readouterr().out
    if own:
        cov = json.loads((tmp_path / f"{path.stem}.coverage.json").read_text())
        enabled = sorted(n["name"] for n in cov["names"] if n["instances_enabled"])
        assert specindex.read()["specs"][path.stem] == {"profile": profile, "actions": enabled}, (
            f"specs/coverage.json is stale for {path.stem}: python -m checker index {path.stem}")
    verdict = [line for line in out.splitlines() if line.startswith("expected: ")]
    assert verdict and verdict[-1].endswith(": met") and "NOT met" not in out
    distinct, _, complete = SUMMARY.search(out).groups()  # type: ignore[union-attr]
    assert int(distinct) == spec.expect.distinct
    if spec.expect.result == "violation":
        assert f"violation: {spec.expect.invariant} after " in out
        assert f"Violated: {spec.expect.invariant} (ALWAYS)" in out
        assert complete == "no"
    elif spec.expect.result == "cycle":
        assert f"cycle: {spec.expect.invariant}: " in out
        assert f"Broken: {spec.expect.invariant} (PROGRESS)" in out
        assert "violation:" not in out and complete == "yes"
    else:
        assert "violation:" not in out
        if spec.expect.complete:
            assert complete == "yes"


def test_a_profile_skipped_for_a_spec_gives_it_the_same_model() -> None:
    """The skip above is sound: under v6.16 and the huge-page series (which changes no
    variant of v6.16) a TDX spec builds the same model, and under v7.3 and RFC v5; v6.19
    and in-place conversion do not."""
    spec = read(ROOT / "specs" / "unfrozen-mirror-sept-order__no-freeze.toml")
    assert _models(spec) == ["v6.16", "v6.19", "v7.3", "gmem-inplace-v8"]
    for pair in (("v6.16", "tdx-hugepage-rfc-v3"), ("v7.3", "tdx-hugepage-rfc-v5")):
        same = [spec.with_profile(n).build() for n in pair]
        assert fingerprint(same[0]) == fingerprint(same[1])
        assert [a.text for a in same[0].actions] == [a.text for a in same[1].actions]
    v616 = spec.with_profile("v6.16").build()
    assert fingerprint(spec.with_profile("v6.19").build()) != fingerprint(v616)
    assert fingerprint(spec.with_profile("gmem-inplace-v8").build()) != fingerprint(spec.with_profile("v7.3").build())
    mmio = read(ROOT / "specs" / "mmio-default.toml")
    assert _models(mmio) == ["v6.16"]


def test_the_embedded_default_is_the_shipped_default_spec() -> None:
    embedded = (ROOT / "checker" / "scenarios" / "attributes-default.toml").read_bytes()
    assert embedded == (ROOT / "specs" / "attributes-default.toml").read_bytes()


def test_default_scenario_reaches_a_fixpoint_within_depth_40(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--depth", "40"]) == 0
    out = capsys.readouterr().out
    assert SUMMARY.search(out).group(3) == "yes"  # type: ignore[union-attr]
    assert "witness fault_between_pre_and_post: reached" in out
    assert "witness huge_leaf_installed: reached" in out


@pytest.mark.slow  # two exhaustive searches: about half a minute
@pytest.mark.parametrize(("name", "distinct"), [("tdx-hugepage-rfc-v5-default", 323983),
                                                ("tdx-progress-zap-yields", 171514)])
def test_the_queued_rwlock_worlds_are_safe_without_it(name: str, distinct: int, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The queued rwlock counts a thread as queued from the step before its write_lock(),
    which can keep a reader out that the kernel lets in: the worlds that use it keep
    every safety invariant without it too (README, the queued rwlock)."""
    text = (ROOT / "specs" / f"{name}.toml").read_text().split("[expect]")[0]
    assert "queued_rwlock = true\n" in text
    text = text.replace("queued_rwlock = true\n", "").replace("check_progress = true\n", "")
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("\n[sizes]", "check_progress = false\n\n[sizes]", 1))
    assert main(["--spec", str(path)]) == 0
    out = capsys.readouterr().out
    assert "violation" not in out and f"distinct={distinct} " in out and "complete=yes" in out
