"""`python -m checker map PATCH`: the functions a patch touches and what models them."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker import diffparse
from checker.cli import main
from checker.errors import InputError

from .shipped import ROOT

PATCHES = ROOT / "examples" / "patches"

UNMODELLED = """\
diff --git a/arch/x86/kvm/x86.c b/arch/x86/kvm/x86.c
--- a/arch/x86/kvm/x86.c
+++ b/arch/x86/kvm/x86.c
@@ -4700,7 +4700,7 @@ int kvm_vm_ioctl_check_extension(struct kvm *kvm, long ext)
 \tswitch (ext) {
-\tcase KVM_CAP_IRQCHIP:
+\tcase KVM_CAP_IRQCHIP: /* reordered */
 \t\tr = 1;
 \t\tbreak;
diff --git a/arch/x86/kvm/mmu/mmu.c b/arch/x86/kvm/mmu/mmu.c
--- a/arch/x86/kvm/mmu/mmu.c
+++ b/arch/x86/kvm/mmu/mmu.c
@@ -4600,6 +4600,7 @@ static bool is_page_fault_stale(struct kvm_vcpu *vcpu,
 \tif (sp && is_obsolete_sp(vcpu->kvm, sp))
 \t\treturn true;
+\t/* a comment */
 \treturn fault->slot &&
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["map", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_functions_of_an_mbox_patch_are_found_with_what_happened_to_them() -> None:
    [patch] = diffparse.read((PATCHES / "drop_page_pinning.mbox").read_text(), "pin")
    assert patch.subject == "[PATCH v4 08/28] KVM: TDX: Drop superfluous page pinning in S-EPT management"
    assert patch.files == ["arch/x86/kvm/vmx/tdx.c"]
    assert [(t.function, t.how) for t in patch.touched] == [
        ("tdx_unpin", "removed"), ("tdx_mem_page_aug", "changed"), ("tdx_sept_set_private_spte", "changed"),
        ("tdx_sept_drop_private_spte", "changed"), ("tdx_sept_zap_private_spte", "changed")]


def test_a_hunk_after_a_closing_brace_and_an_added_function_are_told_apart() -> None:
    diff = ("--- a/f.c\n+++ b/f.c\n@@ -1,6 +1,10 @@ static int old_one(void)\n"
            " \treturn 0;\n }\n \n+static int new_one(int x)\n+{\n+\treturn x;\n+}\n+\n"
            " #define KEEP(x) (x)\n-#define GONE(x) (x)\n")
    [patch] = diffparse.read(diff, "d")
    assert [(t.function, t.how) for t in patch.touched] == [("new_one", "added"), ("GONE", "removed")]


def test_two_mails_are_two_patches() -> None:
    mail = (PATCHES / "drop_page_pinning.mbox").read_text()
    second = mail.replace("[PATCH v4 08/28]", "[PATCH v4 09/28]")
    patches = diffparse.read(mail + second, "two")
    assert [p.subject[:16] for p in patches] == ["[PATCH v4 08/28]", "[PATCH v4 09/28]"]


def test_a_file_without_hunks_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(InputError):
        diffparse.read("just some text\n", "x")
    empty = tmp_path / "notes.txt"
    empty.write_text("Subject: nothing\n\nno diff here\n")
    code, _, err = run(capsys, str(empty))
    assert code == 2 and f"{empty}: file: no unified diff in it" in err


def test_the_pin_drop_maps_to_the_remove_steps_the_extension_refines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(PATCHES / "drop_page_pinning.mbox"), "--profile", "v6.16")
    assert code == 0
    flat = " ".join(out.split())
    block = flat.split("tdx_unpin (removed): modelled")[1].split(" arch/x86")[0]
    assert "action tdh_mem_page_remove (SeptTeardown.tdh_mem_page_remove, model/mmu/tdx/teardown.py:" in block
    assert "[arch/x86/virt/vmx/tdx/tdx.c:tdh_mem_page_remove]: its docstring names tdx_unpin" in block
    assert "variants: tdx.pinning" in block
    assert "tdx-small-default" in block.split("exercised by")[1]
    assert "summary: 5 functions touched: 5 modelled, 0 only mentioned, 0 not modelled" in flat


def test_an_unmodelled_function_is_said_plainly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    diff = tmp_path / "x.diff"
    diff.write_text(UNMODELLED)
    code, out, _ = run(capsys, str(diff))
    assert code == 0
    out = " ".join(out.split())
    assert "patch: (no subject: a plain diff)" in out
    assert "arch/x86/kvm/x86.c: kvm_vm_ioctl_check_extension (changed): not modelled" in out
    assert "the model does not model this function" in out
    assert "arch/x86/kvm/mmu/mmu.c: is_page_fault_stale (changed): modelled" in out
    assert "guard seq-check (attributes)" in out and "guard range-check (attributes)" in out
    assert out.endswith("1 not modelled: kvm_vm_ioctl_check_extension (arch/x86/kvm/x86.c)")


def test_an_extension_s_own_actions_are_mapped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ext = tmp_path / "e.py"
    ext.write_text('from model.lang import Extension, Step, kernel\n\n\n'
                   'class E(Extension):\n    name = "e"\n    summary = "s"\n\n'
                   '    @kernel("kvm_vm_ioctl_check_extension")\n'
                   '    def check(self) -> Step:\n        """kvm_vm_ioctl_check_extension(): nothing else."""\n'
                   '        return Step("x", True, {})\n')
    diff = tmp_path / "x.diff"
    diff.write_text(UNMODELLED)
    code, out, _ = run(capsys, str(diff), "--extension", str(ext))
    assert code == 0
    out = " ".join(out.split())
    assert f"action check (E.check, {ext}:8) [?:kvm_vm_ioctl_check_extension]" in out
    assert "0 not modelled" in out


def test_the_tdh_do_no_vcpus_outline_maps_to_the_busy_retry(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(PATCHES / "tdh_do_no_vcpus.mbox"), "--profile", "v6.16")
    assert code == 0
    flat = " ".join(out.split())
    start = flat.split("tdx_no_vcpus_enter_start (removed): modelled")[1].split(" arch/x86")[0]
    assert "action tdh_mem_range_block_busy (SeptTeardown.tdh_mem_range_block_busy," in start
    assert "variants: tdx.busy_retry" in start
    stop = flat.split("tdx_no_vcpus_enter_stop (removed): mentioned")[1].split(" arch/x86")[0]
    assert "helper SeptTeardown.then (model/mmu/tdx/teardown.py:" in stop
    track = flat.split("tdx_track (changed): modelled")[1].split(" arch/x86")[0]
    assert "action tdh_mem_track (SeptTeardown.tdh_mem_track," in track and "guard track-before-remove" in track
    assert "tdh_do_no_vcpus (added): modelled" in flat


def test_an_unmodelled_series_is_modelled_once_its_extension_is_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    mbox = str(PATCHES / "dynamic_pamt_fast_path.mbox")
    code, out, _ = run(capsys, mbox)
    flat = " ".join(out.split())
    assert code == 0 and flat.endswith("2 not modelled: tdx_pamt_get (arch/x86/virt/vmx/tdx/tdx.c), tdx_pamt_put "
                                       "(arch/x86/virt/vmx/tdx/tdx.c)")
    code, out, _ = run(capsys, mbox, "--extension", str(PATCHES / "dynamic_pamt_fast_path.py"))
    flat = " ".join(out.split())
    assert "tdx_pamt_get (changed): modelled action tdx_pamt_get (DynamicPamtFastPath.tdx_pamt_get" in flat
    assert "[arch/x86/virt/vmx/tdx/tdx.c:tdx_pamt_get]" in flat  # the extension's kernel map
    assert ("tdx_pamt_put (changed): mentioned extension dynamic_pamt_fast_path "
            "(examples/patches/dynamic_pamt_fast_path.py) names it") in flat
