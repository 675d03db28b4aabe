"""The VM-wide MMU state every thread of the model reads and writes (a slice of struct kvm)."""

from __future__ import annotations

from dataclasses import dataclass

from .attributes import MemoryAttributes
from .invalidate import Invalidation
from .locks import MmuLock
from .sizes import Sizes
from .tdp import Root


@dataclass(frozen=True)
class Kvm:
    sizes: Sizes
    attrs: MemoryAttributes
    inval: Invalidation
    lock: MmuLock
    direct: Root  # KVM_DIRECT_ROOTS: shared GFNs
    mirror: Root  # KVM_MIRROR_ROOTS: private GFNs

    def roots(self) -> tuple[Root, Root]:
        return self.direct, self.mirror
