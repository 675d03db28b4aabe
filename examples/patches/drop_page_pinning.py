"""ce7b5695397b KVM: TDX: Drop superfluous page pinning in S-EPT management (6.19).

Against v6.16: tdx_sept_set_private_spte() no longer takes a reference (get_page())
before TDH.MEM.PAGE.AUG, and a successful TDH.MEM.PAGE.REMOVE drops none (tdx_unpin()
is gone), so a truncation frees what guest_memfd frees.
"""

from model.lang import Extension, ModelBuilder


class DropPagePinning(Extension):
    name = "drop_page_pinning"
    summary = "ce7b5695397b KVM: TDX: Drop superfluous page pinning in S-EPT management"
    requires = ("tdx",)

    def define(self, b: ModelBuilder) -> None:
        pins = b.lookup("tdx_pinned", missing_ok=True)  # none since 6.19: nothing to drop
        for f in pins:
            b.refine(b.writers(f), "no get_page() before AUG and no tdx_unpin() after REMOVE",
                     effect=lambda a: {p: p.var for p in pins},
                     text=lambda a: a.text.replace("; tdx_unpin()", ""))
