"""The `pinning` component: pinned SPTEs on the rmap (shadow) MMU, as in the 2020 RFC.

Kernel: "[RFC PATCH 0/8] KVM: x86/mmu: Introduce pinned SPTEs framework" (Sean
Christopherson, lore 20200731212323.21746-1-sean.j.christopherson@intel.com), patch 4/8:
set_spte() / mmu_set_spte() with the pin_spte, drop_pinned_spte, zap_pinned_spte and
unzap_pinned_spte kvm_x86_ops; kvm_zap_rmapp() keeping a zapped-pinned SPTE in the rmap;
drop_spte() -> rmap_remove() unpinning. SEV is the vendor: pin_spte() pins every page of
an encrypted GFN (get_user_pages), because an encrypted page cannot move.

The world: one shadow page (the parent of every leaf), one leaf SPTE and one rmap entry
per GFN, the host page backing each GFN (migration moves it to a new page), whether the
page is pinned and who holds that pin, and whether the guest's encrypted data is in it.
Upstream TDX today pins the same way (get_page() in tdx_sept_set_private_spte(),
put_page() in tdx_unpin() after TDH.MEM.PAGE.REMOVE), which is what the TDX component
models; this component is the generic framework.

Abstractions:
- mmu_lock is held for write by every step here (the shadow MMU), so each step is atomic
  and one vCPU is enough.
- A page is "the GFN's page before or after its last migration" (`host_page` flips);
  a pinned page cannot migrate (its elevated refcount makes migrate_pages() fail).
- The parent shadow page is zapped by a memslot update (kvm_mmu_zap_all_fast, the
  KVM_X86_QUIRK_SLOT_ZAP_ALL behaviour); page recycling (kvm_mmu_zap_oldest_mmu_pages)
  and drop_large_spte() take the same drop_spte() path and are not separate actions.
- VM destruction drops every SPTE and releases every pin; nothing happens after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import z3

from model.lang import (
    BOOL,
    Component,
    EnumDomain,
    Family,
    Field,
    IntDomain,
    ModelBuilder,
    Option,
    OptionError,
    Step,
    kernel,
    resolve,
    shown,
)

from .sizes import Sizes

# The RFC's four SPTE states.
PIN_SPTE = EnumDomain("pinned_spte", ["NOT_PRESENT", "PRESENT", "PRESENT_PINNED", "ZAPPED_PINNED"])

# Who holds the GFN's page pin, so that exactly one party drops it.
PIN_HOLDER = EnumDomain("pin_holder", ["NONE", "SPTE", "VM_PIN_LIST"])

IOCTL = "ioctl"
HOST = "host"


class PinningComponent(Component):
    """Pinned SPTEs: pin on map, keep the pin across a leaf zap, unpin on drop."""

    name = "pinning"
    summary = (
        "pinned SPTEs on the rmap MMU (2020 RFC): not-present / present / present+pinned / "
        "zapped-pinned, the rmap entry a zapped pinned SPTE keeps, pin/drop/zap/unzap hooks, "
        "parent-page zaps, host migration of unpinned pages"
    )
    options = (
        Option("encrypted", str, "",
               "one letter per GFN: E (SEV-encrypted: pin_spte() pins it) or S (shared, unpinned); "
               "default E then S"),
        Option("memslot_updates", int, 1, "KVM_SET_USER_MEMORY_REGION calls (each zaps all shadow pages)",
               minimum=0, maximum=2),
        Option("migrations", int, 1, "host page migrations per GFN", minimum=0, maximum=2),
    )

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)
        n = sizes.gfns
        text = self.config["encrypted"] or "E" + "S" * (n - 1)
        if len(text) != n or set(text) - {"E", "S"}:
            raise OptionError("encrypted", f"{shown(text)} does not describe {n} GFNs", f"{n} letters E or S")
        self.encrypted = [ch == "E" for ch in text]

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        gfns = self.sizes.gfn_labels()
        self.keep_pin = b.guard(
            "keep-pin-on-parent-zap",
            "zapping a parent shadow page (memslot update, page recycling) does not unpin its pinned "
            "children: their pins move to a per-VM list released when the VM dies; off: the RFC as "
            "posted, mmu_page_zap_pte() -> drop_spte() -> drop_pinned_spte() unpins",
            "C1 pinned-page-lost-after-zap; Brijesh Singh 2020-10-26 (a1ecadce-...@amd.com), Sean "
            "Christopherson 2020-08-03 (20200803171620.GC3151@linux.intel.com)",
        )
        self.spte: Family = b.family("spte", gfns, PIN_SPTE, "NOT_PRESENT", "the GFN's leaf SPTE")
        self.spte_page: Family = b.family(
            "spte.pfn", gfns, IntDomain(0, 1, {0: "P", 1: "P'"}), 0,
            "the page the SPTE (present or zapped-pinned) maps: before or after a migration")
        self.rmap: Family = b.family("rmap", gfns, BOOL, False, "the GFN's rmap holds its SPTE")
        self.sp_present = b.field("parent_sp", BOOL, True, "the shadow page holding the leaf SPTEs exists")
        self.host_page: Family = b.family(
            "host_pfn", gfns, IntDomain(0, 1, {0: "P", 1: "P'"}), 0, "the page the host maps the GFN to")
        self.pinned: Family = b.family("page_pinned", gfns, BOOL, False, "the GFN's page has KVM's pin")
        self.holder: Family = b.family("pin_holder", gfns, PIN_HOLDER, "NONE", "who will drop the pin")
        self.guest_data: Family = b.family(
            "guest_data", gfns, BOOL, False, "the SEV guest's encrypted data is in the GFN's page")
        self.moved: Family = b.family(
            "encrypted_page_moved", gfns, BOOL, False,
            "history: the host migrated or reused a page holding encrypted guest data")
        self.updates = b.field("memslot_updates", IntDomain(0, self.config["memslot_updates"]), 0,
                               "memslot updates done")
        self.migrations: Family = b.family("migrations", gfns, IntDomain(0, self.config["migrations"]), 0,
                                           "migrations of the GFN's page done")
        self.alive = b.field("vm_alive", BOOL, True, "the VM has not been destroyed")

    def define(self, b: ModelBuilder) -> None:
        if self.sizes.vcpus > 1:  # every vCPU runs the same code: --symmetry may reduce by them
            b.symmetric("vCPU", "vcpu", {v: (f"vcpu{v}",) for v in range(self.sizes.vcpus)})
        for v in range(self.sizes.vcpus):
            for g in range(self.sizes.gfns):
                b.action(self.set_spte, f"vcpu{v}", vcpu=v, gfn=g)
                b.action(self.refault_zapped_pinned, f"vcpu{v}", vcpu=v, gfn=g)
        for g in range(self.sizes.gfns):
            b.action(self.kvm_zap_rmapp, HOST, gfn=g)
            if self.config["migrations"]:
                b.action(self.migrate_page, HOST, gfn=g)
        if self.config["memslot_updates"]:
            b.action(self.kvm_mmu_zap_all_fast, IOCTL)
        b.action(self.kvm_destroy_vm, IOCTL)

    def _alive(self) -> z3.BoolRef:
        return self.alive.var

    @kernel("set_spte")
    def set_spte(self, vcpu: int, gfn: int) -> Step:
        """A fault on a GFN with no SPTE: mmu_set_spte() -> set_spte() maps the host page; for an
        encrypted GFN the vendor's pin_spte() pins it (SPTE_PINNED_MASK) unless the VM's pin
        list already holds its pin, and the guest's encrypted data lands in it. The rmap gains
        the SPTE. A missing parent shadow page is allocated first (kvm_mmu_get_page). Leaves
        out access bits, dirty logging and the page walk."""
        enc = self.encrypted[gfn]
        guard = z3.And(self._alive(), self.spte[gfn].var == PIN_SPTE.NOT_PRESENT)
        effect: dict[Field, object] = {
            self.spte[gfn]: PIN_SPTE.PRESENT_PINNED if enc else PIN_SPTE.PRESENT,
            self.spte_page[gfn]: self.host_page[gfn].var, self.rmap[gfn]: True, self.sp_present: True,
        }
        if enc:
            listed = self.holder[gfn].var == PIN_HOLDER.VM_PIN_LIST
            effect |= {self.pinned[gfn]: True, self.guest_data[gfn]: True,
                       self.holder[gfn]: z3.If(listed, PIN_HOLDER.VM_PIN_LIST, PIN_HOLDER.SPTE)}
        pin = "pin_spte() -> PRESENT_PINNED" if enc else "PRESENT"
        return Step(f"vCPU{vcpu} faults g{gfn}: set_spte, {pin}", guard, effect)

    @kernel("mmu_set_spte")
    def refault_zapped_pinned(self, vcpu: int, gfn: int) -> Step:
        """A fault on a zapped-pinned SPTE: mmu_set_spte() WARNs unless the pfn is the one the
        SPTE kept, returns RET_PF_UNZAPPED and calls unzap_pinned_spte(); the pin and the rmap
        entry are unchanged. Leaves out the WARN's consequence (refault_same_pfn checks it)."""
        guard = z3.And(self._alive(), self.spte[gfn].var == PIN_SPTE.ZAPPED_PINNED)
        return Step(f"vCPU{vcpu} faults g{gfn}: mmu_set_spte on ZAPPED_PINNED, unzap_pinned_spte",
                    guard, {self.spte[gfn]: PIN_SPTE.PRESENT_PINNED, self.spte_page[gfn]: self.host_page[gfn].var})

    @kernel("kvm_zap_rmapp")
    def kvm_zap_rmapp(self, gfn: int) -> Step:
        """An MMU-notifier invalidation of the GFN (kvm_unmap_rmapp -> kvm_zap_rmapp): a pinned
        SPTE goes through zap_pinned_spte() and kvm_mmu_zap_pinned_spte(), keeping the pfn and
        its rmap entry (ZAPPED_PINNED); an unpinned one is cleared and leaves the rmap. Leaves
        out the TLB flush."""
        s = self.spte[gfn].var
        guard = z3.And(self._alive(), z3.Or(s == PIN_SPTE.PRESENT, s == PIN_SPTE.PRESENT_PINNED))
        pinned = s == PIN_SPTE.PRESENT_PINNED
        return Step(f"MMU notifier invalidates g{gfn}: kvm_zap_rmapp", guard, {
            self.spte[gfn]: z3.If(pinned, PIN_SPTE.ZAPPED_PINNED, PIN_SPTE.NOT_PRESENT),
            self.rmap[gfn]: pinned,
            self.spte_page[gfn]: z3.If(pinned, self.spte_page[gfn].var, 0)})

    @kernel("kvm_mmu_zap_all_fast")
    def kvm_mmu_zap_all_fast(self) -> Step:
        """KVM_SET_USER_MEMORY_REGION on any slot zaps every shadow page (kvm_mmu_zap_all_fast,
        the KVM_X86_QUIRK_SLOT_ZAP_ALL behaviour): kvm_mmu_prepare_zap_page() ->
        mmu_page_zap_pte() -> drop_spte() on every child, which leaves the rmap. In the RFC as
        posted drop_spte() -> rmap_remove() -> drop_pinned_spte() unpins; with the guard the
        pin moves to the VM's pinned-page list (Brijesh Singh's proposal) instead. Leaves out
        the obsolete-page machinery and the remote TLB flush."""
        effect: dict[Field, object] = {self.sp_present: False, self.updates: self.updates.var + 1}
        for g in range(self.sizes.gfns):
            held = z3.Or(self.spte[g].var == PIN_SPTE.PRESENT_PINNED, self.spte[g].var == PIN_SPTE.ZAPPED_PINNED)
            effect |= {self.spte[g]: PIN_SPTE.NOT_PRESENT, self.rmap[g]: False, self.spte_page[g]: 0}
            if self.keep_pin:
                effect[self.holder[g]] = z3.If(held, PIN_HOLDER.VM_PIN_LIST, self.holder[g].var)
            else:
                effect[self.pinned[g]] = z3.If(held, False, self.pinned[g].var)
                effect[self.holder[g]] = z3.If(held, PIN_HOLDER.NONE, self.holder[g].var)
        guard = z3.And(self._alive(), self.sp_present.var, self.updates.var < self.config["memslot_updates"])
        what = "pins move to the VM's list" if self.keep_pin else "drop_pinned_spte unpins"
        return Step(f"KVM_SET_USER_MEMORY_REGION: kvm_mmu_zap_all_fast, drop_spte on every child; {what}",
                    guard, effect)

    @kernel("migrate_pages")
    def migrate_page(self, gfn: int) -> Step:
        """The host migrates (compacts, or reuses) the GFN's page (mm, migrate_pages()): only an
        unpinned page moves; the MMU notifier first zaps a present unpinned SPTE. Encrypted data
        moved without re-encryption is lost to the guest. Leaves out the change_pte notifier
        (which the RFC WARNs and skips for a pinned SPTE) and the copy itself."""
        s = self.spte[gfn].var
        guard = z3.And(self._alive(), z3.Not(self.pinned[gfn].var),
                       self.migrations[gfn].var < self.config["migrations"])
        present = s == PIN_SPTE.PRESENT
        return Step(f"host migrates g{gfn}'s page", guard, {
            self.host_page[gfn]: 1 - self.host_page[gfn].var,
            self.migrations[gfn]: self.migrations[gfn].var + 1,
            self.spte[gfn]: z3.If(present, PIN_SPTE.NOT_PRESENT, s),
            self.rmap[gfn]: z3.If(present, False, self.rmap[gfn].var),
            self.spte_page[gfn]: z3.If(present, 0, self.spte_page[gfn].var),
            self.moved[gfn]: z3.Or(self.moved[gfn].var, self.guest_data[gfn].var)})

    @kernel("kvm_mmu_uninit_vm")
    def kvm_destroy_vm(self) -> Step:
        """kvm_destroy_vm() -> kvm_arch_destroy_vm(): every SPTE is dropped (drop_spte ->
        drop_pinned_spte) and the VM's pinned-page list released; each pin exactly once. The
        guest's data goes with it. Leaves out the teardown order (kvm_mmu_uninit_vm et al.)."""
        effect: dict[Field, object] = {self.alive: False, self.sp_present: False}
        for g in range(self.sizes.gfns):
            effect |= {self.spte[g]: PIN_SPTE.NOT_PRESENT, self.rmap[g]: False, self.spte_page[g]: 0,
                       self.pinned[g]: False, self.holder[g]: PIN_HOLDER.NONE, self.guest_data[g]: False}
        return Step("KVM VM destroyed: drop every SPTE, release every pin", self._alive(), effect)
