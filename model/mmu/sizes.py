"""Sizes of the scaled-down world: vCPUs, huge regions, small pages per huge page.

One "huge" page of the model stands for a 2M page; `pages_per_huge` small pages stand for
its 512 4K pages (4 by default). GFNs are numbered from 0
and laid out region after region; one memslot covers all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.lang import Option, resolve

OPTIONS = (
    Option("vcpus", int, 2, "number of vCPUs that fault", minimum=1, maximum=4),
    Option("huge_pages", int, 1, "number of 2M regions (each one huge page)", minimum=1, maximum=2),
    Option("pages_per_huge", int, 4, "small (4K) pages per huge page", minimum=2, maximum=8),
)


@dataclass(frozen=True)
class Sizes:
    vcpus: int = 2
    huge_pages: int = 1
    pages_per_huge: int = 4

    @classmethod
    def from_options(cls, given: Mapping[str, Any]) -> Sizes:
        return cls(**resolve(OPTIONS, given))

    @property
    def gfns(self) -> int:
        return self.huge_pages * self.pages_per_huge

    def gfn_labels(self) -> list[str]:
        return [f"g{g}" for g in range(self.gfns)]

    def region_bases(self) -> list[int]:
        """The first GFN of each huge region (its huge-aligned base)."""
        return [r * self.pages_per_huge for r in range(self.huge_pages)]

    def region_labels(self) -> list[str]:
        return [f"g{b}" for b in self.region_bases()]

    def region_of(self, gfn: int) -> int:
        return gfn // self.pages_per_huge

    def region_gfns(self, region: int) -> range:
        base = region * self.pages_per_huge
        return range(base, base + self.pages_per_huge)

    def vcpu_labels(self) -> list[str]:
        return [f"vcpu{v}" for v in range(self.vcpus)]
