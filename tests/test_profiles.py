"""Kernel profiles: files validated key by key, variants read through one API, the kernel
map checked against each profile's function list, and --against on real questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.against import NOT_APPLICABLE, Side, Verdict, differences
from checker.cli import main
from checker.spec import load as load_spec
from invariants import Kind
from model.lang import Component, ModelBuilder, ModelError, Variant, VariantValue
from model.lang.variants import Choices
from model.mmu import COMPONENTS, Sizes, build, profiles

from .shipped import ROOT, SPECS

PINS_DROPPED = "remove-or-demote-without-track__no-track-before-remove.v6.19"
READ_LOCK_ZAP = "atomic-zap-of-mirror__no-atomic-zap-direct-only.v7.3"
PRESENT_OLD = "double-set-external-spte-AD-bits__no-spurious-check.v7.3"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_profiles_shows_each_mainline_profile_with_its_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "profiles")
    assert code == 0
    for name in ("v6.16", "v6.19", "v7.3", "tdx-hugepage-rfc-v3", "pinned-spte-rfc"):
        assert f"\n{name}" in f"\n{out}"
    assert f"{profiles.DEFAULT} (default)" in out
    assert "source: ce7b5695397b KVM: TDX: Drop superfluous page pinning" in out
    assert "tdx.pinning = none" in out


def test_list_variants_ties_each_value_to_its_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "variants")
    assert code == 0
    assert "tdx.pinning:" in out and "get_page-until-remove (v6.16)" in out and "none (v6.19)" in out
    assert "tdx.busy_retry:" in out and "tdh_do_no_vcpus (v6.19)" in out
    assert "tdx.propagation:" in out and "set_external_spte-old-new (v7.2)" in out


def test_every_shipped_spec_names_its_profile() -> None:
    for path in SPECS:
        assert "\nprofile = " in path.read_text(), path.name


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('summary = "s"\nsources = ["x"]\ncomponents = ["tdx"]\n[variants]\n"tdx.pinning" = "none"\n',
     "kernel", "is not a non-empty string"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.16"\ncolour = 1\n', "colour", "unknown key"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.16"\n[variants]\n"tdx.pining" = "none"\n',
     "variants.tdx.pining", "unknown variant"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.16"\n[variants]\n"tdx.pinning" = "some"\n',
     "variants.tdx.pinning", "'some' is not a value of it"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v9.99"\n', "base", "no profile 'v9.99'"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\ncomponents = ["tdx"]\n',
     "variants.tdx.busy_retry", "no value"),
    ('kernel = "k"\nsummary = "s"\nsources = []\nbase = "v6.16"\n', "sources", "is not a list of sources"),
    ('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.16"\n[guards]\nfreeze = "maybe"\n',
     "guards.freeze", "is not a guard state"),
])
def test_a_bad_profile_is_refused_naming_its_file_and_key(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           text: str, key: str, problem: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    code, out, err = run(capsys, "--spec", "attributes-default", "--profile", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: {key}: ") and problem in err, err


BEFORE_SPEC = "conversion-split-before-invalidation"


@pytest.mark.parametrize(("table", "key", "problem"), [
    ('"tdx_huge.conversion_split" = "tdx_gmem_convert"', "variants.tdx_huge.conversion_split",
     "'tdx_gmem_convert' is not a value of it"),
    ('"tdx_huge.conversion" = "tdx_gmem_convert_before_invalidate"', "variants.tdx_huge.conversion",
     "not a variant of the components of profile tdx-hugepage-rfc-v5"),
    ('"tdx_huge.conversion_split" = 3', "variants.tdx_huge.conversion_split", "is not a variant value"),
])
def test_a_bad_spec_variant_is_refused_naming_the_spec_and_key(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                table: str, key: str, problem: str) -> None:
    text = (ROOT / "specs" / f"{BEFORE_SPEC}.toml").read_text()
    path = tmp_path / "s.toml"
    path.write_text(text.replace('"tdx_huge.conversion_split" = "tdx_gmem_convert_before_invalidate"', table))
    code, out, err = run(capsys, "--spec", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: {key}: ") and problem in err, err


def test_a_spec_variant_changes_the_design_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """[variants] in a spec: the same scenario with the hook before the invalidation
    breaks invalidation_covers_zap; the profile's own placement (after) holds it. The
    report names the variant the spec chose."""
    code, out, _ = run(capsys, "--spec", BEFORE_SPEC)
    assert code == 0 and "violation: invalidation_covers_zap after 10 steps" in out
    assert "Profile:    tdx-hugepage-rfc-v5 with tdx_huge.conversion_split =" in out
    assert "(profile: tdx-hugepage-rfc-v5 with tdx_huge.conversion_split = tdx_gmem_convert_before_invalidate;" in out
    text = (ROOT / "specs" / f"{BEFORE_SPEC}.toml").read_text()
    own = tmp_path / "after.toml"
    own.write_text(text.replace('[variants]\n"tdx_huge.conversion_split" = "tdx_gmem_convert_before_invalidate"\n', "")
                   .split("[expect]")[0])
    code, out, _ = run(capsys, "--spec", str(own))
    assert code == 0 and "violation:" not in out and "complete=yes" in out
    assert "(profile: tdx-hugepage-rfc-v5;" in out
    spec = load_spec(ROOT / "specs" / f"{BEFORE_SPEC}.toml")
    assert spec.profile.overrides == {"tdx_huge.conversion_split": "tdx_gmem_convert_before_invalidate"}
    after = {"tdx_huge.conversion_split": "tdx_gmem_convert_after_invalidate"}
    assert spec.profile.with_variants(after, "x").overrides == after  # the spec's choice changed again
    assert profiles.load("tdx-hugepage-rfc-v5").with_variants(after, "x").overrides == {}  # the profile's own


def test_a_profile_cannot_derive_from_itself(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(f'kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "{path}"\n')
    code, _, err = run(capsys, "--spec", "attributes-default", "--profile", str(path))
    assert code == 2 and f"{path}: base: " in err and "derives from itself" in err


def test_an_unknown_profile_and_a_guard_a_profile_lacks_are_refused(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    code, _, err = run(capsys, "--spec", "tdx-default", "--profile", "v9.99")
    assert code == 2 and "--profile: no profile 'v9.99'" in err and "v6.19" in err
    path = tmp_path / "p.toml"
    path.write_text('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.16"\n[guards]\nfrezee = "off"\n')
    code, _, err = run(capsys, "--spec", "unfrozen-mirror-sept-order__no-freeze", "--profile", str(path),
                       "--max-states", "10")
    assert code == 2 and f"{path}: guards.frezee: unknown guard" in err


def test_a_component_the_profile_lacks_is_refused_naming_the_profiles_that_have_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--spec", "tdx-hugepage-default", "--profile", "v6.19")
    assert code == 2 and "components: component 'tdx_huge' is not in profile 'v6.19'" in err
    assert "profiles that have it: tdx-hugepage-rfc-v3" in err


def test_the_pin_drop_removes_the_pins_from_the_model() -> None:
    sizes = Sizes(1, 1, 2)
    old = build(["tdx"], sizes, {}, profile=profiles.load("v6.16"))
    new = build(["tdx"], sizes, {}, profile=profiles.load("v6.19"))
    assert "tdx_pinned[g0]" in old.schema.by_name and "tdx_pinned[g0]" not in new.schema.by_name
    remove = "tdh_mem_page_remove(gfn=0)"
    assert old.by_key[remove].text.endswith("; tdx_unpin()") and "tdx_unpin" not in new.by_key[remove].text
    busy = "tdh_mem_page_remove_busy(gfn=0)"
    assert "tdx_no_vcpus_enter_start()" in old.by_key[busy].text and "tdh_do_no_vcpus()" in new.by_key[busy].text


def test_a_variant_is_read_through_one_typed_api() -> None:
    v = Variant("x", "doc", (VariantValue("a", "v1", "src", "s"), VariantValue("b", "v2", "src", "s")))
    chosen = Choices("c", (v,), {"c.x": "b"})
    assert chosen["x"] == "b" and chosen.is_("x", "b") and not chosen.is_("x", "a")
    with pytest.raises(ModelError, match="has no value 'z'"):
        chosen.is_("x", "z")  # a misspelt value cannot silently read as False
    with pytest.raises(ModelError, match="does not declare"):
        chosen["y"]
    with pytest.raises(ModelError, match="no value"):
        Choices("c", (v,), {})

    class C(Component):
        name, summary, variants = "c", "s", (v,)

        def declare(self, b: ModelBuilder, deps: object) -> None:
            self.seen = self.variant["x"]

        def define(self, b: ModelBuilder) -> None:
            pass

    from model.lang import compose
    c = C()
    compose(ModelBuilder("m", variants={"c.x": "a"}), [c])
    assert c.seen == "a"


def _all_components_model(name: str):  # type: ignore[no-untyped-def]
    p = profiles.load(name)
    options: dict[str, dict[str, object]] = {"mmio": {"vms": ["vmx", "tdx"]}} if "mmio" in p.components else {}
    if "guest" in p.components:
        options["guest"] = {"pre_faults": 1}
    if "tdx" in p.components:
        options["tdx"] = {"zap_yields": True}
    if "attributes" in p.components:  # the mm's invalidations exist only with per-VM attributes
        per_vm = p.variants["attributes.conversion"] == "kvm_vm_set_mem_attributes"
        options["attributes"] = {"host_pins": 1, "mmu_notifiers": 1 if per_vm else 0}
    roots = [c for c in p.components if c not in ("attributes", "tdx")] or list(p.components)
    return build(roots, Sizes(2, 1, 2), options, profile=p)


def _citable(model) -> set[str]:  # type: ignore[no-untyped-def]
    """The kernel functions the model's objects can cite, whichever guards are on: the
    actions a fix switched off brings back are methods of the same objects."""
    out: set[str] = set()
    seen: set[int] = set()
    todo = list(model.parts.values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for attr in dir(type(obj)):
            kernel = getattr(getattr(type(obj), attr, None), "__kernel_function__", None)
            if kernel is not None:
                out.add(kernel)
        todo += [v for v in getattr(obj, "__dict__", {}).values() if type(v).__module__.startswith("model.mmu")]
    return out


@pytest.mark.parametrize("name", profiles.shipped())
def test_every_action_names_a_function_its_profile_has(name: str) -> None:
    """The kernel map: each action's function is in the profile's list of the functions
    the model cites (file by file), or listed as not in that tree with the reason."""
    p = profiles.load(name)
    model = _all_components_model(name)
    cited = {a.kernel for a in model.actions}
    unknown = sorted(k for k in cited if p.where(k).startswith("?:"))
    assert not unknown, f"{name}: actions name functions its kernel map lacks: {unknown}"
    listed = {n for names in p.files.values() for n in names} | set(p.not_in_tree) | set(p.renamed)
    bare = {k if k.startswith("FNAME(") else k.split("(")[0] for k in cited | _citable(model)}
    stale = sorted(n for n in listed if n not in bare | {p.name_of(k) for k in bare})
    assert not stale, f"{name}: the kernel map lists functions no action cites: {stale}"


def test_list_actions_prints_file_and_function(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "actions", "--spec", "tdx-default", "--profile", "v6.19")
    assert code == 0
    assert "[arch/x86/virt/vmx/tdx/tdx.c:tdh_mem_page_remove]" in out
    assert "[arch/x86/kvm/mmu/tdp_mmu.c:kvm_tdp_mmu_zap_possible_nx_huge_page]" in out
    code, out, _ = run(capsys, "list", "actions", "--spec", "tdx-default")
    assert "kvm_tdp_mmu_zap_possible_nx_huge_page (not in v6.16)]" in out


def test_against_the_pin_drop_on_a_teardown_that_hits_kvm_bug_on(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    """v6.19 against v6.16: after a failed REMOVE the page is freed while mapped."""
    code, out, _ = run(capsys, "--spec", PINS_DROPPED, "--against", "v6.16", "--export", str(tmp_path),
                       "--format", "json")
    assert code == 1
    assert "1 of 2 verdicts differ" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("no_free_while_mapped "))
    assert row.split()[1:] == ["ALWAYS", "violated", "after", "17", "steps", "holds"]
    doc = json.loads((tmp_path / f"{PINS_DROPPED}@v6.19.no_free_while_mapped.json").read_text())
    assert doc["scenario"]["profile"] == "v6.19"
    assert "--profile v6.19" in doc["command"] and "--against" not in doc["command"]
    assert doc["steps"][-1]["where"] == "mm/truncate.c:truncate_inode_pages_range"


def test_against_a_read_lock_zap_of_the_mirror_under_the_refactor(capsys: pytest.CaptureFixture[str]) -> None:
    """v7.3 against v6.19: the zap now reaches the TDX module. It bugs the VM at once
    (tdx_sept_free_private_spt()) and removes a page the guest accepted; up to 7.1 the
    S-EPT is left alone and the VM is bugged only later, by a TDH.MEM.SEPT.ADD on the
    orphaned table."""
    code, out, _ = run(capsys, "--spec", READ_LOCK_ZAP, "--against", "v6.19")
    assert code == 1
    rows = _rows(out)
    assert rows["no_kvm_bug"] == ["ALWAYS", "violated", "after", "11", "steps", "violated", "after", "12", "steps"]
    assert rows["no_lost_accepted_data"] == ["ALWAYS", "violated", "after", "17", "steps", "holds"]


def _rows(out: str) -> dict[str, list[str]]:
    """The table --against prints: property -> kind and the two verdicts."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["property", "kind"])
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1:]}


def test_against_a_present_old_spte_under_the_refactor(capsys: pytest.CaptureFixture[str]) -> None:
    """v7.3 against v6.19 on B2: a write over a present mirror leaf is no longer refused
    by KVM_BUG_ON(was_present) but read by TDX as a removal, under the read lock."""
    code, out, _ = run(capsys, "--spec", PRESENT_OLD, "--against", "v6.19")
    assert code == 1
    rows = _rows(out)
    assert rows["sept_removal_under_write_lock"] == ["ALWAYS", "violated", "after", "22", "steps", "holds"]
    assert rows["external_mirrors_mirror"] == ["ALWAYS", "violated", "after", "23", "steps", "holds"]
    assert rows["no_kvm_bug"] == ["ALWAYS", "violated", "after", "30", "steps", "violated", "after", "18", "steps"]
    assert rows["no_lost_accepted_data"] == ["ALWAYS", "violated", "after", "24", "steps", "holds"]


def test_against_the_walk_copy_changes_no_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """tdx.walk (v7.3 iter-old-spte against v6.19 read-at-cmpxchg) with every guard on:
    a stale iter->old_spte is reached, and every safety and progress property agrees;
    only witnesses come later, by the walk's own reads."""
    code, out, _ = run(capsys, "--spec", "tdx-progress-default", "--against", "v6.19")
    assert code == 1
    rows = _rows(out)
    assert rows["stale_iter_old_spte"] == ["SOMETIMES", "reached", "after", "15", "steps", "does", "not", "apply"]
    assert {kind for kind, *_ in rows.values()} == {"SOMETIMES"}
    assert "4 of 21 verdicts differ" in out


@pytest.mark.slow  # two exhaustive searches with the no-progress search: about a minute
def test_against_rfc_v5_and_v3_the_huge_page_designs_agree_on_every_property(
        capsys: pytest.CaptureFixture[str]) -> None:
    """RFC v5 (no promotion, the conversion hook after the invalidation, the ACCEPT
    handler of 41/45 on the mirror root) against RFC v2/v3 (promotion, the split inside
    the zap) on RFC v5's default world, every guard on: every safety and progress
    property holds under both; the designs differ only in what they reach."""
    code, out, _ = run(capsys, "--spec", "tdx-hugepage-rfc-v5-default", "--against", "tdx-hugepage-rfc-v3")
    assert code == 1 and "6 of 29 verdicts differ" in out
    rows = _rows(out)
    assert rows["invalidation_covers_zap"] == ["ALWAYS", "holds", "does", "not", "apply"]
    assert rows["conversion_hook_splits"][:4] == ["SOMETIMES", "reached", "after", "15"]
    assert rows["promotion_succeeded"] == ["SOMETIMES", "does", "not", "apply", "not", "reached"]
    assert not [name for name, (kind, *verdicts) in rows.items()
                if kind in ("ALWAYS", "PROGRESS") and ("violated" in verdicts or "cycle" in verdicts)]


def test_the_refactor_takes_a_present_old_spte_where_the_hooks_refused_it() -> None:
    """tdx.propagation: with guard spurious-check off, set_external_spte_present() bugs the
    VM on a present old SPTE; set_external_spte(old, new) removes the S-EPT leaf."""
    sizes = Sizes(2, 1, 2)
    hooks = build(["guest"], sizes, {}, frozenset({"spurious-check"}), profile=profiles.load("v6.19"))
    central = build(["guest"], sizes, {}, frozenset({"spurious-check"}), profile=profiles.load("v7.3"))
    assert "set_external_spte_present_was_present(vcpu=0, gfn=0)" in hooks.by_key
    assert "tdx_sept_remove_leaf_spte(vcpu=0, gfn=0)" not in hooks.by_key
    assert "set_external_spte_present_was_present(vcpu=0, gfn=0)" not in central.by_key
    for key in ("tdp_mmu_set_spte_atomic", "tdx_sept_remove_leaf_spte", "tdx_sept_remove_leaf_spte_busy",
                "write_new_leaf", "restore_old_leaf"):
        assert f"{key}(vcpu=1, gfn=1)" in central.by_key, key
    guarded = build(["guest"], sizes, {}, profile=profiles.load("v7.3"))
    assert "tdp_mmu_set_spte_atomic(vcpu=0, gfn=0)" not in guarded.by_key  # the spurious check stops it


def test_list_actions_under_the_refactor_names_the_v7_3_functions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "actions", "--spec", "tdx-default", "--profile", "v7.3")
    assert code == 0
    assert "tdp_mmu_link_sp(vcpu=0, gfn=0)  [arch/x86/kvm/mmu/tdp_mmu.c:tdp_mmu_set_spte_atomic]" in out
    assert "[arch/x86/kvm/vmx/tdx.c:tdx_sept_remove_leaf_spte]" in out
    assert "?:" not in out and "(not in " not in out


def test_a_renamed_function_must_be_in_the_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "v6.19"\n'
                   '[renamed]\n"set_external_spte_present" = "no_such_function"\n')
    code, _, err = run(capsys, "list", "actions", "--spec", "tdx-default", "--profile", str(bad))
    assert code == 2
    assert f"{bad}: renamed.set_external_spte_present: 'no_such_function' is not a function of this tree" in err


def test_against_with_nothing_different_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """The same scenario with the guard on: the pin drop and tdh_do_no_vcpus() change no verdict."""
    code, out, _ = run(capsys, "--spec", PINS_DROPPED, "--against", "v6.16", "--guard", "track-before-remove=on",
                       "--invariant", "no_free_while_mapped", "--invariant", "no_kvm_bug")
    assert code == 0 and "every verdict is the same" in out


def test_against_the_rule_since_6_19_holds_under_both(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", PINS_DROPPED, "--against", "v6.16",
                       "--invariant", "no_free_while_mapped_unless_bugged", "--invariant", "no_kvm_bug")
    assert code == 0, out


def test_a_property_one_profile_lacks_does_not_apply_there() -> None:
    def side(verdicts: dict[str, Verdict]) -> Side:
        return Side(None, None, [], None, [], verdicts, dict.fromkeys(verdicts, Kind.ALWAYS))  # type: ignore[arg-type]

    a = side({"both": Verdict("holds"), "only_a": Verdict("violated", 3)})
    b = side({"both": Verdict("holds")})
    assert differences(a, b) == [("only_a", Kind.ALWAYS, Verdict("violated", 3), Verdict(NOT_APPLICABLE))]


def test_against_stopped_by_a_budget_is_no_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--spec", PINS_DROPPED, "--against", "v6.16", "--max-states", "100")
    assert code == 3, out
    assert "stopped: max-states budget reached" in out


def test_a_replayed_file_keeps_its_profile_and_an_old_one_reads_as_v6_16(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path) -> None:
    code, _, _ = run(capsys, "--spec", PINS_DROPPED, "--export", str(tmp_path), "--format", "json")
    assert code == 0
    path = tmp_path / f"{PINS_DROPPED}.json"
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 1, out  # reproduces under v6.19
    code, out, _ = run(capsys, "replay", str(path), "--profile", "v6.16")
    assert code == 0 and "does not reproduce" in out, out  # the pinned page is not freed
    doc = json.loads(path.read_text())
    doc["schema_version"] = 2
    del doc["scenario"]["profile"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "replay", str(old))
    assert code == 0, out  # files from before profiles were v6.16 runs


def test_each_component_is_in_some_shipped_profile() -> None:
    having = {c for n in profiles.shipped() for c in profiles.load(n).components}
    assert having == set(COMPONENTS)
    assert (ROOT / "model" / "profiles" / f"{profiles.DEFAULT}.toml").is_file()


def test_a_profile_the_expectation_does_not_name_explores_without_its_witnesses(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """tdx-hugepage-small-default expects promotion_succeeded under tdx-hugepage-rfc-v3; under
    a profile without promotion that witness does not apply, and the run still builds."""
    mine = tmp_path / "no-promotion.toml"
    mine.write_text('kernel = "k"\nsummary = "s"\nsources = ["x"]\nbase = "tdx-hugepage-rfc-v3"\n'
                    '[variants]\n"tdx_huge.promotion" = "none"\n')
    code, out, err = run(capsys, "list", "actions", "--spec", "tdx-hugepage-small-default", "--profile", str(mine))
    assert code == 0, err
    assert "disallowed_hugepage_adjust(vcpu=0, gfn=0)" in out and "tdp_mmu_merge_private_spt" not in out
