"""Dynamic PAMT v6 06/11 x86/virt/tdx: Optimize tdx_pamt_get/put() <20260526023515.288829-7-rick.p.edgecombe@intel.com>

On v7.3 with 00/11: a 2M host range has PAMT_4K pages while it has users (a refcount); tdx_pamt_get() before AUG,
tdx_pamt_put() after a failed AUG or a REMOVE (09/11). 06/11 tries atomic_inc_not_zero() before pamt_lock: two gets may
both miss and must recheck under it (guard `pamt-get-recheck`). One 2M range; no allocation, S-EPT pages, 2M leaves."""

from typing import Any

import z3

from invariants import Invariant, Kind
from model.lang import BOOL, Extension, IntDomain, ModelBuilder, Step, kernel
from model.mmu.fault import vcpu_actor

REF = "tdx_pamt_get() in arch/x86/virt/vmx/tdx/tdx.c, Dynamic PAMT v6 06/11"
AUG = ("tdh_mem_page_aug", "tdh_mem_page_aug_busy", "tdh_mem_page_aug_walk_failed", "tdh_mem_page_aug_state_incorrect")


class DynamicPamtFastPath(Extension):
    name = "dynamic_pamt_fast_path"
    summary = "Dynamic PAMT v6 06/11: tdx_pamt_get() increments locklessly, takes pamt_lock only for 0->1"
    requires = ("tdx",)
    functions = {"arch/x86/virt/vmx/tdx/tdx.c": ("tdx_pamt_get",)}
    properties = (Invariant("pamt_add_on_free_range", Kind.ALWAYS, "PAMT.ADD only for a range without PAMT_4K pages",
                            REF, ("tdx",), lambda m: z3.Not(m.field("pamt.warned").var)),
                  Invariant("pamt_get_lost_race", Kind.SOMETIMES, "a failed atomic_inc_not_zero() finds the refcount "
                            "raised", REF, ("tdx",), lambda m: m.parts["dynamic_pamt_fast_path"].lost))

    def declare(self, b: ModelBuilder, deps: Any) -> None:
        s, self.f, sept = self.sizes, deps["tdx"].fault, deps["tdx"].sept
        self.rc = b.field("pamt_refcount", IntDomain(0, s.gfns + s.vcpus), 0, "the 2M range's PAMT refcount")
        self.slow = b.family("pamt.slow", s.vcpu_labels(), BOOL, False, "atomic_inc_not_zero() failed")
        self.warned = b.field("pamt.warned", BOOL, False, "WARN_ON_ONCE() in tdx_pamt_get(): PAMT.ADD failed")
        recheck = b.guard("pamt-get-recheck", "tdx_pamt_get() rereads the refcount under pamt_lock", REF)
        self.outcomes = ("TDX_SUCCESS", "atomic_inc" if recheck else "TDX_HPA_RANGE_NOT_FREE")
        self.lost = z3.Or(*[z3.And(self.slow[v].var, self.rc.var > 0) for v in range(s.vcpus)])
        got = [z3.And(self.f.step[v].var == self.f.steps.FROZEN_LEAF, z3.Not(self.slow[v].var)) for v in range(s.vcpus)]
        b.fact("pamt_refcount_counts", "the refcount counts the S-EPT leaves and the gets before their AUG",
               self.rc.var == z3.Sum(*[z3.If(u, 1, 0) for u in [*map(sept.leaf_exists, range(s.gfns)), *got]]))

    def define(self, b: ModelBuilder) -> None:
        rc = self.rc.var
        b.refine("map_target_level", "atomic_inc_not_zero() unlocked", text=lambda a: f"{a.text}; tdx_pamt_get()",
                 effect=lambda a: {self.rc: z3.If(rc > 0, rc + 1, 0), self.slow[a.args["vcpu"]]: rc == 0})
        b.refine(b.actions(*AUG), "after tdx_pamt_get()", guard=lambda a: z3.Not(self.slow[a.args["vcpu"]].var))
        b.refine(b.actions(*AUG[1:], "tdh_mem_page_remove", "tdx_sept_remove_leaf_spte"),
                 "tdx_pamt_put() after a failed AUG or a REMOVE", effect=lambda a: {self.rc: rc - 1})
        for v, outcome in [(v, o) for v in range(self.sizes.vcpus) for o in self.outcomes]:
            b.action(self.tdx_pamt_get, vcpu_actor(v), vcpu=v, outcome=outcome)

    @kernel("tdx_pamt_get")
    def tdx_pamt_get(self, vcpu: int, outcome: str) -> Step:
        """tdx_pamt_get() under pamt_lock once atomic_inc_not_zero() failed: recheck, or PAMT.ADD; no allocation."""
        rc, ok, inc = self.rc.var, outcome != "TDX_HPA_RANGE_NOT_FREE", outcome == "atomic_inc"
        what = "atomic_read() != 0: atomic_inc()" if inc else f"TDH.PHYMEM.PAMT.ADD -> {outcome}"
        effect = {self.slow[vcpu]: False, self.rc: rc + 1 if inc else 1 if ok else rc, self.warned: z3.Or(
            self.warned.var, not ok), self.f.step[vcpu]: self.f.steps.code("FROZEN_LEAF" if ok else "RESTORE_LEAF")}
        return Step(f"tdx_pamt_get(): spin_lock(&pamt_lock); {what}{'' if ok else '; WARN_ON_ONCE, -EIO'}",
                    z3.And(self.slow[vcpu].var, rc == 0 if outcome == "TDX_SUCCESS" else rc > 0), effect)
