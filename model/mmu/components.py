"""The MMU's components and how a scenario's choice of them becomes a built model."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from model.lang import (
    Component,
    Extension,
    Model,
    ModelBuilder,
    ModelError,
    Option,
    OptionError,
    compose,
    order,
    resolve,
    shown,
)

from .attributes import MemoryAttributes
from .fault import FaultPath, FaultRefinement
from .invalidate import Invalidation
from .kvm import Kvm
from .locks import MmuLock
from .mmu_notifier import MmuNotifier
from .set_memory_attributes import CONVERSION, Conversion, SetMemoryAttributes
from .sizes import Sizes
from .tdp import Root

if TYPE_CHECKING:
    from .profiles import Profile

LEVELS = ("4K", "2M")


class AttributesComponent(Component):
    """Per-4K private/shared attributes, huge-page eligibility and the fault path."""

    name = "attributes"
    summary = (
        "private/shared attributes per GFN, KVM_LPAGE_MIXED_FLAG, the invalidation sequence, "
        "direct and mirror roots at 4K and 2M, the vCPU fault path and KVM_SET_MEMORY_ATTRIBUTES"
    )
    options = (
        Option("private_level", str, "2M", "guest_memfd folio level (private backing)", LEVELS),
        Option("shared_level", str, "2M", "host mapping level (shared backing)", LEVELS),
        Option(
            "initial_attributes", str, "shared",
            "'shared', 'private', or one letter per GFN, S or P (e.g. 'SPSS')",
        ),
        Option("queued_rwlock", bool, False,
               "mmu_lock as the kernel's queued rwlock: a reader waits behind a waiting writer "
               "(more states; needed for progress properties a writer starved by readers would break)"),
        Option("host_pins", int, 0,
               "times userspace may pin a shared page (pin_user_pages(), e.g. for DMA) and later "
               "unpin it; with in-place conversion that page is the one that turns private", minimum=0, maximum=2),
        Option("mmu_notifiers", int, 0,
               "invalidations of shared memory by the host's mm (kvm_mmu_notifier_invalidate_range_start/"
               "_end), an invalidating thread independent of the ioctl thread: overlapping invalidations",
               minimum=0, maximum=2),
        Option("max_conversions", int, 2, "KVM_SET_MEMORY_ATTRIBUTES calls allowed", minimum=0, maximum=4),
        Option(
            "conversions", list, [],
            "a list of {start, end, attributes} tables (GFNs [start, end), 'shared' or "
            "'private'); empty means any range to either attribute",
        ),
    )

    variants = (CONVERSION,)

    def __init__(self, sizes: Sizes, options: Mapping[str, Any]) -> None:
        self.sizes = sizes
        self.config = resolve(self.options, options)
        self.initial = _initial_attributes(self.config["initial_attributes"], sizes)
        self.conversions = _conversions(self.config["conversions"], sizes)
        # refined by components that take over part of this one (see configure())
        self.fault_refinement = FaultRefinement()
        self.extra_invalidations = 0
        self.conversion_hook: str | None = None  # where a private->shared conversion calls its arch hook
        self.punch_hole_hook = False  # a punch-hole calls that arch hook too
        self.other_threads = 0  # threads besides the ioctl one that invalidate (a fallocate() thread)
        self.memory_failures = False  # the thread of guest_memfd's invalidations has memory failures too
        self.zap_yields = False  # the TDX tear-down's zap may yield mmu_lock between SPTEs

    def declare(self, b: ModelBuilder, deps: Mapping[str, Component]) -> None:
        sizes = self.sizes
        self.kvm = Kvm(
            sizes,
            MemoryAttributes(b, sizes, self.initial, self.config["private_level"], self.config["shared_level"]),
            Invalidation(b, sizes, self.config["max_conversions"] + self.extra_invalidations
                         + self.config["mmu_notifiers"],
                         1 + bool(self.config["mmu_notifiers"]) + self.other_threads),
            MmuLock(self.config["queued_rwlock"]),
            Root(b, sizes, "direct", private=False),
            Root(b, sizes, "mirror", private=True),
        )
        self.fault = FaultPath(b, self.kvm, self.fault_refinement)
        self.notifier = None
        if self.config["mmu_notifiers"]:
            if self.variant.is_("conversion", "kvm_gmem_set_attributes"):
                raise OptionError("attributes.mmu_notifiers", "in-place conversion maps shared memory from "
                                  "guest_memfd, which no mmu_notifier invalidates", "0 with in-place conversion")
            self.notifier = MmuNotifier(b, self.kvm, self.config["mmu_notifiers"])
        self.ioctl = SetMemoryAttributes(b, self.kvm, self.conversions, self.config["max_conversions"],
                                         self.conversion_hook, self.variant["conversion"],
                                         self.config["host_pins"], self.zap_yields,
                                         self.punch_hole_hook, self.memory_failures)
        if self.notifier is not None:
            self.ioctl.other_invalidators.append(self.notifier.active())
            self.ioctl.ended_elsewhere.append(self.notifier.ended())
        if self.ioctl.inplace:  # every fault gets its pfn from guest_memfd, under its invalidate lock
            self.fault_refinement.all_from_gmem = True
            self.fault_refinement.get_pfn_excluded = self.ioctl.holds_invalidate_lock()

    def define(self, b: ModelBuilder) -> None:
        self.ioctl.track_invalidations(b)
        self.fault.define(b)
        self.ioctl.define(b)
        if self.notifier is not None:
            self.notifier.define(b)


def _registry() -> dict[str, type[Component]]:
    from .guest import GuestComponent
    from .mmio.component import MmioComponent
    from .pinning import PinningComponent
    from .tdx.component import TdxComponent
    from .tdx.hugepage import TdxHugeComponent

    return {"attributes": AttributesComponent, "tdx": TdxComponent, "guest": GuestComponent,
            "tdx_huge": TdxHugeComponent, "mmio": MmioComponent, "pinning": PinningComponent}


COMPONENTS: dict[str, type[Component]] = _registry()


def _initial_attributes(text: str, sizes: Sizes) -> list[str]:
    n = sizes.gfns
    if text in ("shared", "private"):
        return [text.upper()] * n
    letters = {"S": "SHARED", "P": "PRIVATE"}
    if len(text) != n or any(ch not in letters for ch in text):
        raise OptionError(
            "initial_attributes", f"{shown(text)} does not describe {n} GFNs",
            f"'shared', 'private', or {n} letters S/P",
        )
    return [letters[ch] for ch in text]


def _conversions(entries: list[Any], sizes: Sizes) -> list[Conversion]:
    n = sizes.gfns
    if not entries:
        return [
            Conversion(s, e, a)
            for s in range(n)
            for e in range(s + 1, n + 1)
            for a in ("PRIVATE", "SHARED")
        ]
    out: list[Conversion] = []
    for i, entry in enumerate(entries):
        key = f"conversions[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"start", "end", "attributes"}:
            raise OptionError(key, f"{shown(entry)} is not a table of start, end, attributes",
                              "{start = GFN, end = GFN, attributes = 'shared' | 'private'}")
        start, end, attributes = entry["start"], entry["end"], entry["attributes"]
        ok_ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
        if not ok_ints or not 0 <= start < end <= n:
            raise OptionError(f"{key}.start/end", f"[{shown(start)}, {shown(end)}) is not a range of GFNs",
                              f"0 <= start < end <= {n}")
        if attributes not in ("shared", "private"):
            raise OptionError(f"{key}.attributes", f"{shown(attributes)} is not allowed", "'shared' | 'private'")
        out.append(Conversion(start, end, attributes.upper()))
    return out


class NotInProfile(ModelError):
    """A component the profile's kernel does not have (e.g. `tdx_huge` outside the series)."""

    def __init__(self, component: str, profile: Profile) -> None:
        from .profiles import load, shipped

        having = [n for n in shipped() if component in load(n).components]
        super().__init__(f"component {shown(component)} is not in profile {shown(profile.name)} ({profile.kernel}); "
                         f"profiles that have it: {', '.join(having) or 'none'}")


_BUILT: OrderedDict[str, Model] = OrderedDict()  # the last models built, by their configuration
BUILT_KEPT = 16


def build(
    components: Iterable[str],
    sizes: Sizes,
    options: Mapping[str, Mapping[str, Any]],
    guards_off: Iterable[str] = (),
    name: str = "mmu",
    description: str = "",
    profile: Profile | None = None,
    extensions: Sequence[type[Extension]] = (),
) -> Model:
    """Build the MMU model made of `components` (and what they require) as the kernel of
    `profile` has it (default: the newest, `profiles.DEFAULT`), with `extensions` (patches
    from outside the tree) after them. The profile chooses the variants (an extension's
    own variants default to their first value); its guard defaults are the caller's to
    apply (see `checker.spec`).

    A model is immutable once built, and building one proves every effect's domain with
    z3 (seconds for the TDX models), so the last few are kept by configuration: a replay,
    a second spec of the same world or a test that builds it again gets the same object."""
    from .profiles import load

    profile = profile if profile is not None else load()
    components = list(components)
    guards_off = sorted(guards_off)
    key = json.dumps([components, repr(sizes), options, guards_off, name, description, profile.name,
                      profile.variants, profile.files, [(e.name, e.origin, e.digest) for e in extensions]],
                     sort_keys=True, default=repr)
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    model = _build(components, sizes, options, guards_off, name, description, profile, tuple(extensions))
    _BUILT[key] = model
    if len(_BUILT) > BUILT_KEPT:
        _BUILT.popitem(last=False)
    return model


def _build(components: list[str], sizes: Sizes, options: Mapping[str, Mapping[str, Any]],
           guards_off: list[str], name: str, description: str, profile: Profile,
           extensions: tuple[type[Extension], ...]) -> Model:
    available: dict[str, type[Component]] = {**COMPONENTS, **{e.name: e for e in extensions}}
    names = order(available, [*components, *(e.name for e in extensions)])
    missing = [n for n in names if n not in profile.components and n in COMPONENTS]
    if missing:
        raise NotInProfile(missing[0], profile)
    profile = profile.with_extensions(extensions)
    b = ModelBuilder(name, guards_off, profile.variants)
    b.added_values = {k: tuple(v) for e in extensions for k, v in e.values.items()}
    instances = [_instance(available[n], sizes, options.get(n, {})) for n in names]
    compose(b, instances)
    model = b.build(description)
    model.profile = profile
    return model


def _instance(cls: type[Component], sizes: Sizes, options: Mapping[str, Any]) -> Component:
    """Component `cls` configured by its options; an option error names its table."""
    name = cls.name
    try:
        return cls(sizes, options)  # type: ignore[call-arg]
    except OptionError as e:
        raise OptionError(f"{name}.{e.key}", e.problem, e.allowed) from None
