"""TDX huge pages: 2M private mappings, the guest's ACCEPT level, demotion and promotion.

Kernel: Yan Zhao's "KVM: TDX huge page support for private memory" (RFC v2, Aug 2025, and
v3, Jan 2026): tdx_gmem_private_max_mapping_level() allows 2M once the TD runs;
tdx_check_accept_level() (v3: tdx_honor_guest_accept_level()) splits under the write lock
and sets KVM_LPAGE_GUEST_INHIBIT_FLAG when the guest accepts at 4K;
kvm_split_cross_boundary_leafs() before a private->shared zap; Rick Edgecombe's
disallowed_hugepage_adjust() for mirror SPs. Promotion follows Isaku Yamahata's v6
tdp_mmu_merge_private_spt() (13-14/16), serialised under the write lock like the
splits.

Abstractions: the fault's walk of a 2M goal is one SPTE (the region's), so freeze,
TDH.MEM.PAGE.AUG at 2M and the write are three steps as at 4K; a merge needs a full 4K
table (KVM does not AUG missing children first, as Isaku's did); a split under the read
lock (without guard `accept-level-write-lock`) uses the one tear-down machine, so only
one such split runs at a time. GUEST_INHIBIT is set one way, as in RFC v2. Left out:
1G, the TD build at 4K (the model starts with a running TD), -ENOMEM from the split's
page-table allocation, TDG.MEM.PAGE.RELEASE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import z3

from model.lang import (
    BOOL,
    Choices,
    Component,
    Family,
    Field,
    IntDomain,
    ModelBuilder,
    Option,
    Step,
    Variant,
    VariantValue,
    choose,
    kernel,
    resolve,
)

from ..fault import vcpu_actor
from ..guest import GuestComponent, Td
from ..set_memory_attributes import ZAP_STEPS
from ..sizes import Sizes
from ..values import LEVEL, SEPT_2M, SPTE_2M, SPTE_4K
from .component import TdxComponent
from .gmem_convert import GmemConvertHook
from .mirror_fault import OWNS_TOP
from .sept import MODULE
from .sept_2m import Sept2mOps

UNDER_READ_LOCK = ("AUGED_TOP", "SPLIT_SHARED")
ELSEWHERE = ("ACCEPT_LEVEL", "SPLIT", "MERGE_WAIT", "MERGE")
# the steps where a vCPU waits for mmu_lock held for write
WAITS_FOR_WRITE_LOCK = ("ACCEPT_LEVEL", "MERGE_WAIT")

PROMOTION = Variant("promotion", "what a 2M fault does over a present 4K mirror table", (
    VariantValue("tdp_mmu_merge_private_spt", "RFC v3",
                 "Isaku Yamahata's tdp_mmu_merge_private_spt() (KVM TDX v6 13-14/16) with Yan Zhao's RFC v2/v3 "
                 "<20260106101646.24809-1-yan.y.zhao@intel.com>",
                 "a full table is promoted (TDH.MEM.PAGE.PROMOTE under the write lock); "
                 "disallowed_hugepage_adjust() steps down only for a table with a non-present child"),
    VariantValue("none", "RFC v5",
                 "v5 31/45 KVM: x86/mmu: Prevent hugepage promotion for mirror roots in fault path "
                 "<20260129011517.3545883-1-seanjc@google.com>; Sean Christopherson on v3 06/24 "
                 "<aXeRf4Jw6-Sl1JCe@google.com>",
                 "disallowed_hugepage_adjust() steps down for any present mirror child table; nothing promotes"),
))
MERGE = "tdp_mmu_merge_private_spt"

CONVERSION_SPLIT = Variant(
    "conversion_split",
    "where a private->shared conversion splits the huge mirror leaves holding the head and the tail of its range",
    (
        VariantValue("kvm_split_cross_boundary_leafs", "RFC v3",
                     "RFC v2 16/23 <20250807094450.4673-1-yan.y.zhao@intel.com>, v3 11/24",
                     "inside the zap: the pre pass (and a punch-hole's, and a memslot update's) demotes "
                     "the crossing leaves under the write lock it holds, after kvm_mmu_invalidate_begin()"),
        VariantValue("tdx_gmem_convert_before_invalidate", "RFC v5 (review)",
                     "v5 43/45 changelog <20260129011517.3545883-44-seanjc@google.com>: a pre-zap hook "
                     "\"to let arch code reject/fail a conversion\", which fails cleanest before anything "
                     "changed; 44/45 rewritten <aXt_L6QKB9CSTZcW@google.com>",
                     "the arch hook kvm_arch_gmem_convert() -> tdx_gmem_convert() splits under a write lock "
                     "of its own before kvm_mmu_invalidate_begin(); a punch-hole does not split"),
        VariantValue("tdx_gmem_convert_after_invalidate", "RFC v5",
                     "v5 43/45 calls the hook after kvm_gmem_invalidate_begin() "
                     "<20260129011517.3545883-44-seanjc@google.com>; Yan Zhao's v3 16/24 on the in-place "
                     "conversion branch: after kvm_gmem_invalidate_begin(), before kvm_gmem_zap()",
                     "the same hook after kvm_mmu_invalidate_begin() and before the zap; a punch-hole "
                     "does not split (43/45's hook there runs after the invalidation has zapped)"),
    ),
)
PUNCH_HOOK = "tdx_gmem_convert"
PLACEMENT = {"tdx_gmem_convert_before_invalidate": "before_invalidate",
             "tdx_gmem_convert_after_invalidate": "after_invalidate"}

PUNCH_HOLE_SPLIT = Variant(
    "punch_hole_split",
    "how a punch-hole of part of a huge private leaf splits it before its zap",
    (
        VariantValue("kvm_split_cross_boundary_leafs", "RFC v3",
                     "RFC v2 16/23 <20250807094450.4673-1-yan.y.zhao@intel.com>, v3 11/24",
                     "inside the zap, as a conversion's: the punch-hole's kvm_gmem_invalidate_begin() "
                     "demotes the crossing leaves under the write lock it holds"),
        VariantValue("none", "RFC v5",
                     "v5 43/45 <20260129011517.3545883-44-seanjc@google.com>: kvm_gmem_punch_hole() calls "
                     "kvm_gmem_convert() \"for demonstration purposes\" after kvm_gmem_invalidate_begin(), "
                     "which has zapped already",
                     "no split before the zap: a huge leaf across the hole's boundary is removed whole"),
        VariantValue("tdx_gmem_convert", "RFC v5 (review)",
                     "Yan Zhao on v5 44/45 <aYxBCINUG80GYfus@yzhao56-desk.sh.intel.com>: call the hook from "
                     "kvm_gmem_punch_hole() and kvm_gmem_error_folio() too; placed as her v3 16/24 places "
                     "the conversion's (after kvm_gmem_invalidate_begin(), before the zap)",
                     "the conversion's arch hook, called after the punch-hole's invalidation began and "
                     "before its zap: write lock of its own, lock dropped to allocate, -ENOMEM fails the "
                     "fallocate() before truncation"),
    ),
)
PUNCH_HOLE_RANGE = Variant(
    "punch_hole_range",
    "what a punch-hole's kvm_gmem_invalidate_begin() adds to the invalidation",
    (
        VariantValue("exact", "v6.8",
                     "virt/kvm/guest_memfd.c: kvm_gmem_punch_hole() -> kvm_gmem_invalidate_begin(start, end) "
                     "-> kvm_mmu_unmap_gfn_range() -> kvm_mmu_invalidate_range_add(start, end)",
                     "exactly [start, end): nothing is widened to the huge pages at its ends"),
        VariantValue("huge_pages", "not posted",
                     "the checker's counter-proposal, after kvm_arch_pre_set_memory_attributes() "
                     "(commit 9129633d568e) which widens a conversion's range",
                     "[start, end) grown to the huge pages holding its head and tail; the zap stays exact"),
    ),
)

ACCEPT_HANDLER = Variant("accept_handler", "the names of the handler of an EPT violation carrying the guest's "
                         "ACCEPT level and of the split it calls (the same steps)", (
    VariantValue("tdx_check_accept_level", "RFC v2",
                 "RFC v2 14/23 <20250807094423.4644-1-yan.y.zhao@intel.com> (v3: tdx_honor_guest_accept_level())",
                 "tdx_check_accept_level() splits with kvm_split_cross_boundary_leafs()"),
    VariantValue("tdx_handle_mismatched_accept", "RFC v5",
                 "v5 41/45 <20260129011517.3545883-42-seanjc@google.com>; the mirror-root API "
                 "<aXt9pfN8uGLX2c-o@google.com>",
                 "tdx_handle_mismatched_accept() splits with kvm_tdp_mmu_mirrors_split_huge_pages()"),
))
SPLIT_API = {"tdx_check_accept_level": "kvm_split_cross_boundary_leafs",
             "tdx_handle_mismatched_accept": "kvm_tdp_mmu_mirrors_split_huge_pages"}


class HugeMirror:
    def __init__(self, b: ModelBuilder, tdx: TdxComponent, td: Td, variant: Choices, until_done: bool) -> None:
        self.tdx, self.td = tdx, td
        self.promotes = variant.is_("promotion", MERGE)
        self.handler = variant["accept_handler"]  # the names the steps print
        self.split_api = SPLIT_API[self.handler]
        in_zap = variant.is_("conversion_split", "kvm_split_cross_boundary_leafs")
        self.fault, self.mf, self.sept, self.z = tdx.fault, tdx.mirror_fault, tdx.sept, tdx.teardown
        self.mirror, self.gmem, self.lock = tdx.kvm.mirror, tdx.gmem, tdx.kvm.lock
        self.attrs = tdx.kvm.attrs
        self.sizes = sizes = tdx.sizes
        vcpus = sizes.vcpu_labels()
        self.inhibit: Family = b.family(
            "hugepage_guest_inhibit", sizes.region_labels(), BOOL, False,
            "KVM_LPAGE_GUEST_INHIBIT_FLAG in lpage_info[2M].disallow_lpage: the guest accepted "
            "part of the region at 4K (set once, never cleared)",
        )
        self.split_guard = b.guard(
            "split-cross-boundary",
            "before a private->shared conversion or a punch-hole zaps the mirror, "
            "kvm_split_cross_boundary_leafs() demotes every huge leaf that crosses the range's "
            "boundary, so only the converted pages are removed",
            "RFC v2 16/23 (lore 20250807094450.4673-1-yan.y.zhao@intel.com); A-Inv6",
        )
        self.adjust_guard = b.guard(
            "mirror-hugepage-adjust",
            "kvm_tdp_mmu_map() never installs a huge mirror leaf over a present 4K table: "
            "disallowed_hugepage_adjust() steps the goal down when the table has a "
            "non-present child, and a full table is merged with TDH.MEM.PAGE.PROMOTE",
            "Rick Edgecombe, KVM: x86/mmu: Disallow page merging (huge page adjustment) for "
            "mirror root (RFC v2 07/23); Xiaoyao Li 2022; Isaku Yamahata v6 13/16",
        )
        self.accept_guard = b.guard(
            "accept-level-write-lock",
            "an EPT violation carrying a 4K ACCEPT level is handled under mmu_lock held for "
            "write: split the huge leaf, set GUEST_INHIBIT, then fault; splits under the "
            "read lock are refused for the mirror root",
            "tdx_check_accept_level(), RFC v2 14/23 (lore 20250807094423.4644-1-yan.y.zhao@intel.com); "
            "Reject splitting huge pages under shared mmu_lock for mirror root (v2 11/23)",
        )
        self.mirror_root_guard = b.guard(
            "accept-split-mirror-root",
            "the 4K ACCEPT handler splits the huge leaf in the mirror root, the one the S-EPT "
            "follows; off: it splits the vCPU's root, vcpu->arch.mmu->root, which for a TD is the "
            "shared one, as RFC v5 41/45 posted kvm_tdp_mmu_split_huge_pages()",
            "Sean Christopherson on v5 41/45 <aXt9pfN8uGLX2c-o@google.com>: \"mmu->root.hpa is the "
            "shared root, not the mirror root\"; kvm_tdp_mmu_mirrors_split_huge_pages()",
        )
        names = {0: "none"} | {r + 1: f"2M@{lab}" for r, lab in enumerate(sizes.region_labels())}
        self.accepting: Family = b.family(
            "td.accepting_2m", vcpus, IntDomain(0, sizes.huge_pages, names), 0,
            "the TDG.MEM.PAGE.ACCEPT at 2M the vCPU re-executes after its EPT violation",
        )
        td.accepting = self.accepting
        self.accepting_4k: Family | None = None
        if until_done:
            gfn_names = {0: "none"} | {g + 1: f"g{g}" for g in range(sizes.gfns)}
            self.accepting_4k = b.family(
                "td.accepting_4k", vcpus, IntDomain(0, sizes.gfns, gfn_names), 0,
                "the TDG.MEM.PAGE.ACCEPT at 4K the vCPU re-executes after its EPT violation, until it succeeds",
            )
            td.accepting_4k = self.accepting_4k
        self.accept_4k: Family | None = None
        if not self.accept_guard:
            self.accept_4k = b.family(
                "fault.accept_level_4k", vcpus, BOOL, False,
                "RFC v1's violation_request_level: the EPT violation asked for 4K",
            )
            self.fault.refine.idle_locals.append((self.accept_4k, False))
            self.fault.refine.private_max_level = self._max_level
        self.fault.refine.private_disallowed = lambda r: self.inhibit[r].var
        self.lock.add_writer(z3.Or(*[self._in(v, "SPLIT", "MERGE") for v in range(sizes.vcpus)]))
        self.lock.add_waiter(z3.Or(*[self._in(v, *WAITS_FOR_WRITE_LOCK) for v in range(sizes.vcpus)]))
        split_in = {"CONVERT_ZAP", "SLOT_ZAP"} if in_zap else set()
        if variant.is_("punch_hole_split", "kvm_split_cross_boundary_leafs"):
            split_in.add("PUNCH_ZAP")
        self.z.split_in = tuple(s for s in ZAP_STEPS if s in split_in) if self.split_guard else ()
        hooked = not in_zap or variant.is_("punch_hole_split", PUNCH_HOOK)
        self.hook = GmemConvertHook(tdx.ioctl, self.z, bool(self.split_guard)) if hooked else None
        tdx.gmem.widen = variant.is_("punch_hole_range", "huge_pages")
        tdx.gmem.split_folios = True
        self.z.shared_holder = z3.Or(*[self._in(v, "SPLIT_SHARED") for v in range(sizes.vcpus)])
        self.mf.owns_top_steps = OWNS_TOP + UNDER_READ_LOCK

    # -- helpers --------------------------------------------------------------------

    def _max_level(self, v: int, region: int) -> z3.ExprRef:
        assert self.accept_4k is not None
        return z3.If(self.accept_4k[v].var, LEVEL.PG_LEVEL_4K, self.attrs.gmem_level[region].var)

    def _in(self, v: int, *steps: str) -> z3.BoolRef:
        return z3.Or(*[self.fault.step[v].var == self.fault.steps.code(s) for s in steps])

    def _at(self, v: int, step: str, gfn: int) -> z3.BoolRef:
        return self.fault.on(v, step, gfn, True)

    def _goto(self, v: int, step: str) -> dict[Field, object]:
        return {self.fault.step[v]: self.fault.steps.code(step)}

    def _region(self, gfn: int) -> tuple[int, Field, str]:
        r = self.sizes.region_of(gfn)
        return r, self.mirror.spte_2m[r], f"2M@{self.sizes.region_labels()[r]}"

    def _full(self, region: int) -> z3.BoolRef:
        """Every 4K SPTE of the region's mirror table is a present leaf."""
        return z3.And(*[self.mirror.spte_4k[g].var == SPTE_4K.LEAF for g in self.sizes.region_gfns(region)])

    def _machine(self, result: str | None = None) -> z3.BoolRef:
        if result is None:
            return self.z.step.var == self.z.steps.IDLE
        return self.z.step.var == self.z.steps.code(result)

    def define(self, b: ModelBuilder) -> None:
        for v in range(self.sizes.vcpus):
            actor = vcpu_actor(v)
            for g in range(self.sizes.gfns):
                for action in (self.map_target_level_2m, self.write_huge_leaf, self.map_spurious_2m,
                               self.disallowed_hugepage_adjust, self.tdx_handle_ept_violation_accept_4k):
                    b.action(action, actor, vcpu=v, gfn=g)
                if self.accepting_4k is not None:
                    b.action(self.tdg_mem_page_accept_already, actor, vcpu=v, gfn=g)
                for action in (self.tdh_mem_page_aug_2m, self.tdh_mem_page_aug_2m_busy,
                               self.tdh_mem_page_aug_2m_error):  # BUSY is transient, as at 4K
                    b.action(action, MODULE, actor, strong=action == self.tdh_mem_page_aug_2m, vcpu=v, gfn=g)
                if self.adjust_guard and self.promotes:
                    b.action(self.tdp_mmu_merge_private_spt, actor, vcpu=v, gfn=g)
                    b.action(self.tdp_mmu_merge_private_spt_locked, actor, vcpu=v, gfn=g)
                    b.action(self.merge_gone, actor, vcpu=v, gfn=g)
                    b.action(self.merge_done, actor, vcpu=v, gfn=g)
                if self.accept_guard:
                    b.action(self.tdx_check_accept_level, actor, vcpu=v, gfn=g)
                    split = self.tdx_check_accept_level_split if self.mirror_root_guard else self.split_shared_root
                    b.action(split, actor, vcpu=v, gfn=g)
                    b.action(self.split_done, actor, vcpu=v, gfn=g)
                    b.action(self.split_refused, actor, vcpu=v, gfn=g)
                else:
                    b.action(self.tdp_mmu_split_huge_page_shared, actor, vcpu=v, gfn=g)
                    b.action(self.split_shared_done, actor, vcpu=v, gfn=g)
            for r in range(self.sizes.huge_pages):
                b.action(self.tdg_mem_page_accept_2m, actor, vcpu=v, region=r)
                b.action(self.tdg_mem_page_accept_2m_mismatch, actor, vcpu=v, region=r)
                b.action(self.tdx_handle_ept_violation_accept_2m, actor, vcpu=v, region=r)

    # -- a 2M leaf: freeze, TDH.MEM.PAGE.AUG at 2M, write ---------------------------

    @kernel("tdp_mmu_map_handle_target_level")
    def map_target_level_2m(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_map_handle_target_level() at a 2M goal over a non-present SPTE:
        tdp_mmu_set_spte_atomic() -> set_external_spte_present() freezes it (without guard
        `freeze`, writes the huge leaf at once)."""
        at, top, _ = self.mf.walk_at(vcpu, gfn, "PG_LEVEL_2M")
        _, topf, label = self._region(gfn)
        new = SPTE_2M.FROZEN if self.mf.freeze else SPTE_2M.LEAF
        what = "try_cmpxchg64(FROZEN_SPTE)" if self.mf.freeze else "write huge leaf (no freeze)"
        return Step(f"tdp_mmu_map_handle_target_level(mirror, {label}): {what}",
                    z3.And(at, top == SPTE_2M.NONPRESENT), {topf: new, **self._goto(vcpu, "FROZEN_TOP")})

    def _aug(self, vcpu: int, gfn: int) -> tuple[z3.BoolRef, Field, str]:
        r, _, label = self._region(gfn)
        at = z3.And(self._at(vcpu, "FROZEN_TOP", gfn), self.fault.goal_level[vcpu].var == LEVEL.PG_LEVEL_2M)
        return at, self.sept.sept_2m[r], f"TDH.MEM.PAGE.AUG({label}) for vCPU{vcpu}"

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_2m(self, vcpu: int, gfn: int) -> Step:
        """tdx_sept_set_private_spte() pins the region's pages, then tdh_mem_page_aug() at 2M
        succeeds on a free 2M entry: a PENDING 2M leaf."""
        at, entry, name = self._aug(vcpu, gfn)
        r = self.sizes.region_of(gfn)
        effect: dict[Field, object] = {entry: SEPT_2M.PENDING, **self._goto(vcpu, "AUGED_TOP")}
        for g in self.sizes.region_gfns(r):
            effect |= self.gmem.pin(g)
        return Step(f"{name} -> TDX_SUCCESS (PENDING)", z3.And(at, entry.var == SEPT_2M.FREE), effect)

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_2m_busy(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_page_aug() at 2M returns TDX_OPERAND_BUSY against a vCPU in the TD: -EBUSY,
        the old value goes back and the fault retries."""
        at, _, name = self._aug(vcpu, gfn)
        return Step(f"{name} -> TDX_OPERAND_BUSY", z3.And(at, self.sept.td.any_in_guest()),
                    self._goto(vcpu, "RESTORE_TOP"))

    @kernel("tdh_mem_page_aug")
    def tdh_mem_page_aug_2m_error(self, vcpu: int, gfn: int) -> Step:
        """tdh_mem_page_aug() at 2M on an entry that is not free fails
        (TDX_EPT_ENTRY_STATE_INCORRECT): KVM_BUG_ON()."""
        at, entry, name = self._aug(vcpu, gfn)
        return Step(f"{name} -> TDX_EPT_ENTRY_STATE_INCORRECT; KVM_BUG_ON",
                    z3.And(at, entry.var != SEPT_2M.FREE), {**self.sept.bug(), **self._goto(vcpu, "RESTORE_TOP")})

    @kernel("__kvm_tdp_mmu_write_spte")
    def write_huge_leaf(self, vcpu: int, gfn: int) -> Step:
        """set_external_spte_present() after success: __kvm_tdp_mmu_write_spte() of the huge
        leaf; RET_PF_FIXED; read_unlock()."""
        _, topf, label = self._region(gfn)
        return Step(f"__kvm_tdp_mmu_write_spte({label}, huge leaf); RET_PF_FIXED; read_unlock",
                    self._at(vcpu, "AUGED_TOP", gfn), {topf: SPTE_2M.LEAF, **self.fault.done(vcpu)})

    @kernel("tdp_mmu_map_handle_target_level")
    def map_spurious_2m(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_map_handle_target_level() at a 2M goal finds the huge leaf present:
        RET_PF_SPURIOUS. (The A/D-bit case of guard `spurious-check` is modelled at 4K only.)"""
        at, top, _ = self.mf.walk_at(vcpu, gfn, "PG_LEVEL_2M")
        return Step("tdp_mmu_map_handle_target_level(): RET_PF_SPURIOUS; read_unlock",
                    z3.And(at, top == SPTE_2M.LEAF), self.fault.done(vcpu))

    # -- a 2M goal over a present 4K table ------------------------------------------

    @kernel("disallowed_hugepage_adjust")
    def disallowed_hugepage_adjust(self, vcpu: int, gfn: int) -> Step:
        """kvm_tdp_mmu_map() at a 2M goal finds a present non-leaf. With guard
        `mirror-hugepage-adjust`, disallowed_hugepage_adjust() fires for a mirror SP with a
        non-present child (tdx_huge.promotion = tdp_mmu_merge_private_spt: a full table is
        promoted instead), or for any mirror SP (none, RFC v5): goal_level drops to 4K.
        Without the guard, the generic path replaces the table with a huge leaf:
        tdp_mmu_set_spte_atomic() -> set_external_spte_present() on a present SPTE,
        KVM_BUG_ON(was_present)."""
        at, top, _ = self.mf.walk_at(vcpu, gfn, "PG_LEVEL_2M")
        r, _, label = self._region(gfn)
        present = z3.And(at, top == SPTE_2M.NONLEAF)
        if self.adjust_guard:
            guard = z3.And(present, z3.Not(self._full(r))) if self.promotes else present
            return Step(f"disallowed_hugepage_adjust({label}): goal_level = 4K", guard,
                        {self.fault.goal_level[vcpu]: LEVEL.PG_LEVEL_4K})
        return Step(f"tdp_mmu_set_spte_atomic({label}, huge leaf over table): KVM_BUG_ON(was_present)",
                    present, {**self.sept.bug(), **self.fault.done(vcpu)})

    @kernel("tdp_mmu_merge_private_spt")
    def tdp_mmu_merge_private_spt(self, vcpu: int, gfn: int) -> Step:
        """A 2M goal over a full 4K mirror table: tdp_mmu_merge_private_spt() will promote it.
        The vCPU drops the read lock and takes it for write (Isaku's v6 froze the table
        under the read lock instead; BUSY there could not be retried safely)."""
        at, top, _ = self.mf.walk_at(vcpu, gfn, "PG_LEVEL_2M")
        r, _, label = self._region(gfn)
        return Step(f"tdp_mmu_merge_private_spt({label}): read_unlock; write_lock",
                    z3.And(at, top == SPTE_2M.NONLEAF, self._full(r)), self._goto(vcpu, "MERGE_WAIT"))

    @kernel("tdp_mmu_merge_private_spt")
    def tdp_mmu_merge_private_spt_locked(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_merge_private_spt() under the write lock, the table still full: RANGE.BLOCK
        of the 2M non-leaf, TRACK, kick, then TDH.MEM.PAGE.PROMOTE."""
        r, _, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "MERGE_WAIT", gfn), self.lock.write_lockable(),
                       self.mirror.spte_2m[r].var == SPTE_2M.NONLEAF, self._full(r))
        return Step(f"tdp_mmu_merge_private_spt({label}): TDH.MEM.RANGE.BLOCK next", guard,
                    {**self.z.begin(r, "PROMOTE"), **self._goto(vcpu, "MERGE")})

    @kernel("tdp_mmu_merge_private_spt")
    def merge_gone(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_merge_private_spt() under the write lock finds the table no longer full
        (a zap ran in between): RET_PF_RETRY."""
        r, _, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "MERGE_WAIT", gfn), self.lock.write_lockable(),
                       z3.Not(z3.And(self.mirror.spte_2m[r].var == SPTE_2M.NONLEAF, self._full(r))))
        return Step(f"tdp_mmu_merge_private_spt({label}): table changed, RET_PF_RETRY", guard, self.fault.done(vcpu))

    @kernel("tdp_mmu_merge_private_spt")
    def merge_done(self, vcpu: int, gfn: int) -> Step:
        """tdp_mmu_merge_private_spt() ends: after TDH.MEM.PAGE.PROMOTE the huge leaf is in
        place, or after TDX_EPT_INVALID_PROMOTE_CONDITIONS and TDH.MEM.RANGE.UNBLOCK the
        table stays; write_unlock() and the fault returns (the vCPU re-enters the TD)."""
        _, _, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "MERGE", gfn), z3.Or(self._machine("DONE"), self._machine("FAILED")))
        return Step(f"tdp_mmu_merge_private_spt({label}) done; write_unlock", guard,
                    {**self.z.release(), **self.fault.done(vcpu)})

    # -- the ACCEPT level -----------------------------------------------------------

    def _accept_4k_faults(self, vcpu: int, gfn: int) -> z3.BoolRef:
        """The guest's TDG.MEM.PAGE.ACCEPT(gfn, 4K) becomes an EPT violation: the page is
        not mapped, or the module emulates one because the S-EPT maps it at 2M."""
        r = self.sizes.region_of(gfn)
        return z3.And(self.td.accepts(vcpu, gfn), z3.Not(self.td.accepted[gfn].var),
                      z3.Or(self.sept.sept_2m[r].var == SEPT_2M.PENDING, z3.Not(self.sept.leaf_present(gfn))))

    @kernel("tdx_handle_ept_violation")
    def tdx_handle_ept_violation_accept_4k(self, vcpu: int, gfn: int) -> Step:
        """TDG.MEM.PAGE.ACCEPT(gfn, 4K) exits to tdx_handle_ept_violation() with an EPT
        violation whose extended exit qualification carries the ACCEPT level (4K). With guard `accept-level-write-lock`,
        tdx_check_accept_level() goes on only if GUEST_INHIBIT is already set (no lock
        needed) and otherwise takes the write lock next; without it (RFC v1) the fault's
        max level is capped at 4K (violation_request_level)."""
        r = self.sizes.region_of(gfn)
        leave = self.td.leave(vcpu)
        if self.accepting_4k is not None:  # the guest will re-execute this ACCEPT
            leave[self.accepting_4k[vcpu]] = gfn + 1
        begin = {**leave, **self.fault.begin(vcpu, gfn, True), self.mf.write[vcpu]: True}
        label = f"TD: TDG.MEM.PAGE.ACCEPT(g{gfn}, 4K) -> EPT violation (accept level 4K)"
        if self.accept_4k is not None:
            return Step(f"{label}; kvm_mmu_faultin_pfn()", self._accept_4k_faults(vcpu, gfn),
                        {**begin, self.accept_4k[vcpu]: True})
        wait = {**leave, **self._goto(vcpu, "ACCEPT_LEVEL"), self.fault.gfn[vcpu]: gfn,
                self.fault.is_private[vcpu]: True}
        effect = choose(self.inhibit[r].var, begin, wait)
        return Step(label, self._accept_4k_faults(vcpu, gfn), effect)

    @kernel("tdx_check_accept_level")
    def tdx_check_accept_level(self, vcpu: int, gfn: int) -> Step:
        """tdx_check_accept_level() under write_lock(&kvm->mmu_lock) finds no huge mirror
        leaf to split: it sets GUEST_INHIBIT on the region, drops the lock and the fault
        goes on (kvm_mmu_faultin_pfn() snapshots fault->mmu_seq)."""
        r, topf, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "ACCEPT_LEVEL", gfn), self.lock.write_lockable(), topf.var != SPTE_2M.LEAF)
        effect = {self.inhibit[r]: True, **self.fault.begin(vcpu, gfn, True)}
        return Step(f"{self.handler}(g{gfn}, 4K): hugepage_set_guest_inhibit({label}); "
                    "kvm_mmu_faultin_pfn()", guard, effect)

    @kernel("kvm_split_cross_boundary_leafs")
    def tdx_check_accept_level_split(self, vcpu: int, gfn: int) -> Step:
        """tdx_check_accept_level() under write_lock(&kvm->mmu_lock) ->
        kvm_split_cross_boundary_leafs() finds the huge mirror leaf: tdp_mmu_split_huge_page()
        writes the 4K table, then tdx_sept_split_private_spt() runs RANGE.BLOCK, TRACK,
        kick and DEMOTE."""
        r, topf, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "ACCEPT_LEVEL", gfn), self.lock.write_lockable(), topf.var == SPTE_2M.LEAF)
        effect = {**self.mirror.split_huge_page(r), **self.z.begin(r, "DEMOTE"), **self._goto(vcpu, "SPLIT")}
        return Step(f"{self.handler}(g{gfn}, 4K): {self.split_api}({label})",
                    guard, effect)

    @kernel("kvm_tdp_mmu_split_huge_pages")
    def split_shared_root(self, vcpu: int, gfn: int) -> Step:
        """Without guard `accept-split-mirror-root`: the handler, under write_lock(&kvm->mmu_lock),
        splits the vCPU's root with kvm_tdp_mmu_split_huge_pages(), which for a TD is the
        shared root: nothing to split there (private memory is mapped in the mirror), so
        it returns 0, hugepage_set_guest_inhibit() is set over the unsplit huge mirror leaf
        and the fault goes on. Left out: the 1G inhibit it also sets."""
        r, topf, label = self._region(gfn)
        guard = z3.And(self._at(vcpu, "ACCEPT_LEVEL", gfn), self.lock.write_lockable(), topf.var == SPTE_2M.LEAF)
        effect = {self.inhibit[r]: True, **self.fault.begin(vcpu, gfn, True)}
        return Step(f"kvm_tdp_mmu_split_huge_pages(shared root, g{gfn}, 4K) -> 0; "
                    f"hugepage_set_guest_inhibit({label}); kvm_mmu_faultin_pfn()", guard, effect)

    @kernel("tdx_check_accept_level")
    def split_done(self, vcpu: int, gfn: int) -> Step:
        """tdx_check_accept_level() after the split: on success hugepage_set_guest_inhibit(),
        write_unlock() and the fault goes on; on failure (KVM_BUG_ON already fired)
        RET_PF_RETRY."""
        r, _, label = self._region(gfn)
        at = self._at(vcpu, "SPLIT", gfn)
        ok = {**self.z.release(), self.inhibit[r]: True, **self.fault.begin(vcpu, gfn, True)}
        failed = {**self.z.release(), **self.fault.done(vcpu)}
        effect = choose(self._machine("DONE"), ok, failed)
        return Step(f"{self.handler}(g{gfn}): hugepage_set_guest_inhibit({label}); write_unlock",
                    z3.And(at, z3.Or(self._machine("DONE"), self._machine("FAILED"))), effect)

    @kernel("tdp_mmu_split_huge_page")
    def split_refused(self, vcpu: int, gfn: int) -> Step:
        """A 4K goal under the read lock meets a huge mirror leaf: tdp_mmu_split_huge_page() ->
        set_external_spte_present() asks TDX to split with mmu_lock held for read, which refuses (WARN_ON_ONCE,
        -EOPNOTSUPP); the old SPTE stays and the fault returns RET_PF_RETRY."""
        at, top, _ = self.mf.walk_at(vcpu, gfn)
        _, _, label = self._region(gfn)
        return Step(f"tdp_mmu_split_huge_page(mirror, {label}) under read_lock: -EOPNOTSUPP; RET_PF_RETRY",
                    z3.And(at, top == SPTE_2M.LEAF), self.fault.done(vcpu))

    @kernel("tdp_mmu_split_huge_page")
    def tdp_mmu_split_huge_page_shared(self, vcpu: int, gfn: int) -> Step:
        """Without guard `accept-level-write-lock`: the 4K goal under the read lock splits the
        huge mirror leaf with tdp_mmu_split_huge_page() (RFC v1): freeze it, then
        RANGE.BLOCK, TRACK, kick and DEMOTE with the read lock only; a BUSY on the way must
        be undone with RANGE.UNBLOCK."""
        at, top, _ = self.mf.walk_at(vcpu, gfn)
        r, topf, label = self._region(gfn)
        guard = z3.And(at, top == SPTE_2M.LEAF, self._machine())
        effect = {topf: SPTE_2M.FROZEN, **self.z.begin(r, "DEMOTE"), **self._goto(vcpu, "SPLIT_SHARED")}
        return Step(f"tdp_mmu_split_huge_page(mirror, {label}) under read_lock: try_cmpxchg64(FROZEN_SPTE)",
                    guard, effect)

    @kernel("set_external_spte_present")
    def split_shared_done(self, vcpu: int, gfn: int) -> Step:
        """The split under the read lock ends in set_external_spte_present(): after DEMOTE
        the 4K table is written and the walk goes on; after a failure the old huge leaf is written back and the fault
        returns RET_PF_RETRY (whatever state the S-EPT entry was left in)."""
        r, topf, label = self._region(gfn)
        at = self._at(vcpu, "SPLIT_SHARED", gfn)
        ok = {**self.z.release(), **self.mirror.split_huge_page(r), **self._goto(vcpu, "MAP")}
        failed = {**self.z.release(), topf: SPTE_2M.LEAF, **self.fault.done(vcpu)}
        effect = choose(self._machine("DONE"), ok, failed)
        return Step(f"__kvm_tdp_mmu_write_spte({label}): 4K table, or old huge leaf and RET_PF_RETRY",
                    z3.And(at, z3.Or(self._machine("DONE"), self._machine("FAILED"))), effect)

    @kernel("try_accept_one")
    def tdg_mem_page_accept_already(self, vcpu: int, gfn: int) -> Step:
        """Option accept_until_done: the guest's try_accept_one() re-executes
        TDG.MEM.PAGE.ACCEPT(gfn, 4K) after its EPT violation and finds the page accepted
        already (another vCPU's ACCEPT, or one at 2M, got there first):
        TDX_PAGE_ALREADY_ACCEPTED, which the guest takes as done. Left out: the guest's
        own bookkeeping of accepted memory."""
        assert self.accepting_4k is not None
        guard = z3.And(self.td.in_guest(vcpu), self.accepting_4k[vcpu].var == gfn + 1, self.td.accepted[gfn].var)
        return Step(f"TD: TDG.MEM.PAGE.ACCEPT(g{gfn}) -> TDX_PAGE_ALREADY_ACCEPTED", guard,
                    {self.accepting_4k[vcpu]: 0})

    # -- the guest at 2M ------------------------------------------------------------

    def _none_accepted(self, region: int) -> z3.BoolRef:
        return z3.And(*[z3.Not(self.td.accepted[g].var) for g in self.sizes.region_gfns(region)])

    def _accepts_2m(self, vcpu: int, region: int) -> z3.BoolRef:
        """vCPU v's guest code is at TDG.MEM.PAGE.ACCEPT of the region at 2M: a fresh one,
        or the one it re-executes after an EPT violation."""
        acc = self.accepting[vcpu].var
        return z3.And(self.td.in_guest(vcpu), z3.Or(acc == 0, acc == region + 1))

    @kernel("try_accept_one")
    def tdg_mem_page_accept_2m(self, vcpu: int, region: int) -> Step:
        """The guest's try_accept_one() -> TDG.MEM.PAGE.ACCEPT(2M) of a PENDING 2M leaf: the module
        zeroes the 2M page and marks it MAPPED. Left out: the guest's 1G attempt first."""
        s = self.sept.sept_2m[region]
        guard = z3.And(self._accepts_2m(vcpu, region), self._none_accepted(region), s.var == SEPT_2M.PENDING)
        effect: dict[Field, object] = {s: SEPT_2M.MAPPED, self.accepting[vcpu]: 0}
        effect |= {self.td.accepted[g]: True for g in self.sizes.region_gfns(region)}
        label = self.sizes.region_labels()[region]
        return Step(f"TD: TDG.MEM.PAGE.ACCEPT({label}, 2M) -> TDX_SUCCESS", guard, effect)

    @kernel("try_accept_one")
    def tdg_mem_page_accept_2m_mismatch(self, vcpu: int, region: int) -> Step:
        """The guest's try_accept_one() -> TDG.MEM.PAGE.ACCEPT(2M) of a region the S-EPT maps at 4K
        fails with TDX_PAGE_SIZE_MISMATCH (or, if part of it is accepted already,
        TDX_PAGE_ALREADY_ACCEPTED): the guest falls back to accepting at 4K."""
        s = self.sept.sept_2m[region].var
        guard = z3.And(self.accepting[vcpu].var == region + 1, self.td.in_guest(vcpu),
                       z3.Or(s == SEPT_2M.NONLEAF, z3.Not(self._none_accepted(region))))
        label = self.sizes.region_labels()[region]
        return Step(f"TD: TDG.MEM.PAGE.ACCEPT({label}, 2M) -> TDX_PAGE_SIZE_MISMATCH; accept at 4K",
                    guard, {self.accepting[vcpu]: 0})

    @kernel("tdx_handle_ept_violation")
    def tdx_handle_ept_violation_accept_2m(self, vcpu: int, region: int) -> Step:
        """TDG.MEM.PAGE.ACCEPT(2M) of a region the S-EPT does not map exits to
        tdx_handle_ept_violation() (accept level 2M): tdx_check_accept_level() has
        nothing to do below 1G, and the fault maps as large as the region allows; the guest
        re-executes the ACCEPT when it is back in the TD."""
        base = self.sizes.region_bases()[region]
        guard = z3.And(self._accepts_2m(vcpu, region), self.td.untouched(region))
        effect = {**self.td.leave(vcpu), **self.fault.begin(vcpu, base, True), self.mf.write[vcpu]: True,
                  self.accepting[vcpu]: region + 1}
        label = self.sizes.region_labels()[region]
        return Step(f"TD: TDG.MEM.PAGE.ACCEPT({label}, 2M) -> EPT violation (accept level 2M); "
                    "kvm_mmu_faultin_pfn()", guard, effect)


class TdxHugeComponent(Component):
    """TDX huge pages (Yan Zhao's series): 2M private leaves, ACCEPT levels, split and merge."""

    name = "tdx_huge"
    summary = (
        "2M private mappings in the mirror and the S-EPT (TDH.MEM.PAGE.AUG at 2M), the guest's "
        "ACCEPT level with GUEST_INHIBIT and demotion under the write lock, the split of "
        "boundary-crossing leaves before a partial conversion, and promotion of full 4K tables"
    )
    requires = ("guest",)
    variants = (PROMOTION, CONVERSION_SPLIT, PUNCH_HOLE_SPLIT, PUNCH_HOLE_RANGE, ACCEPT_HANDLER)
    options = (
        Option("accept_until_done", bool, False,
               "the guest re-executes a 4K TDG.MEM.PAGE.ACCEPT that exited until it succeeds, as "
               "Linux's try_accept_one() loop does (a state per vCPU); checks accept_4k_completes"),
    )

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)

    def configure(self, enabled: Mapping[str, Component]) -> None:
        tdx = enabled["tdx"]
        assert isinstance(tdx, TdxComponent)
        tdx.huge = True
        refine = enabled["attributes"].fault_refinement  # type: ignore[attr-defined]
        refine.private_4k_only = False  # tdx_gmem_private_max_mapping_level(): 2M once RUNNABLE
        refine.locked_steps += UNDER_READ_LOCK
        refine.other_steps += ELSEWHERE
        enabled["attributes"].conversion_hook = PLACEMENT.get(self.variant["conversion_split"])  # type: ignore[attr-defined]
        enabled["attributes"].punch_hole_hook = self.variant.is_("punch_hole_split", PUNCH_HOOK)  # type: ignore[attr-defined]

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        tdx, guest = deps["tdx"], deps["guest"]
        assert isinstance(tdx, TdxComponent) and isinstance(guest, GuestComponent)
        self.mirror = HugeMirror(b, tdx, guest.td, self.variant, self.config["accept_until_done"])
        self.ops = Sept2mOps(tdx.teardown)

    def define(self, b: ModelBuilder) -> None:
        self.mirror.define(b)
        if self.mirror.hook is not None:
            self.mirror.hook.define(b)
        self.ops.define(b)
