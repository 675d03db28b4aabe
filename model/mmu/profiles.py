"""Kernel profiles: which kernel (or series on top of one) a model stands for.

A profile is a TOML file (`model/profiles/NAME.toml`, or any path) that names a kernel,
the profile it derives from, the value it chooses for each variant the components
declare, the default of guards it changes, the kernel functions the model cites with the
file each lives in (the kernel map), and its sources (commit ids, lore Message-IDs):

```
kernel = "Linux 6.19"
summary = "..."
base = "v6.16"                    # optional: inherit everything, then change
sources = ["ce7b5695397b KVM: TDX: Drop superfluous page pinning in S-EPT management"]
components = ["tdx_huge"]         # components this kernel has beyond its base's

[variants]                        # "component.variant" = value
"tdx.pinning" = "none"

[guards]                          # optional: a guard's default in this kernel
"some-guard" = "off"

[functions]                       # file -> the modelled functions it defines
"arch/x86/kvm/vmx/tdx.c" = ["tdx_sept_remove_private_spte", "tdh_do_no_vcpus"]

[not_in_tree]                     # a function the model cites that this tree lacks, and why
"kvm_tdp_mmu_zap_possible_nx_huge_page" = "from 6.17: ..."

[renamed]                         # a function the model cites -> its name in this tree
"set_external_spte_present" = "tdp_mmu_set_spte_atomic"
```

A file key in parentheses names what is not kernel code (the guest, the CPU).

A derived profile inherits its base's components, variants, guards and functions; a
profile without a base chooses every variant of its components. A file listed in
its `[functions]` replaces the base's list for that file (`[]` removes the file). A
function the tree renamed or folded into another is mapped by `[renamed]` to the name a
reviewer greps for there, which must be in `[functions]`. Every
key is checked: a mistake is a `ProfileError` naming the file, the key and what is
allowed. Guard names are checked when a model is built, since which guards exist
depends on the variants.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model.lang import Extension, ModelError, Variant, shown, shown_key

from .components import COMPONENTS

SHIPPED = Path(__file__).resolve().parent.parent / "profiles"
DEFAULT = "v7.3"  # the newest mainline profile
KEYS = ("kernel", "summary", "base", "sources", "components", "variants", "guards", "functions", "not_in_tree",
        "renamed")

ReadTable = Callable[[Path, str], dict[str, Any]]  # (path, source name) -> parsed TOML


class ProfileError(ModelError):
    """A bad profile: names the file, the key, the problem and what is allowed."""

    def __init__(self, source: str, key: str, problem: str, allowed: str = "") -> None:
        tail = f"; allowed: {allowed}" if allowed else ""
        super().__init__(f"{source}: {key}: {problem}{tail}")
        self.source, self.key, self.problem, self.allowed = source, key, problem, allowed


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # the file it came from
    kernel: str
    summary: str
    base: str | None
    sources: tuple[str, ...]
    components: tuple[str, ...]  # the components this kernel has (a spec may use)
    changes: Mapping[str, str]  # the variants this profile sets itself
    variants: Mapping[str, str]  # every variant, with the base's
    guards: Mapping[str, bool]  # guard defaults, with the base's
    files: Mapping[str, tuple[str, ...]]  # the kernel map: file -> functions
    not_in_tree: Mapping[str, str]  # functions the model cites that this tree lacks -> why
    renamed: Mapping[str, str]  # a function the model cites -> its name in this tree
    overrides: Mapping[str, str] = field(default_factory=dict)  # variants a spec chose instead (what-if)
    # variants as extensions declare them or widen them: "component.variant" -> Variant
    extended: Mapping[str, Variant] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The profile's name, with the variants a spec chose instead of its own."""
        if not self.overrides:
            return self.name
        return f"{self.name} with " + ", ".join(f"{k} = {v}" for k, v in sorted(self.overrides.items()))

    def with_variants(self, chosen: Mapping[str, str], source: str) -> Profile:
        """This kernel with some of its variants set otherwise (a spec's [variants]: a
        reviewer's "what if this design did that instead"). Each key must be a variant of
        the profile's components and each value one of its values: a ProfileError naming
        `source` and `variants.KEY` otherwise."""
        if not chosen:
            return self
        known = {**variants(self.components), **self.extended}
        for k, value in chosen.items():
            if k not in known:
                raise ProfileError(source, f"variants.{shown_key(k)}",
                                   f"not a variant of the components of profile {self.name}",
                                   ", ".join(sorted(known)) or "none")
            if value not in known[k].value_names():
                raise ProfileError(source, f"variants.{shown_key(k)}", f"{shown(value)} is not a value of it",
                                   known[k].allowed())
        overrides = {k: v for k, v in chosen.items() if v != self.variants[k]}
        return replace(self, variants={**self.variants, **chosen}, overrides={**self.overrides, **overrides})

    def with_extensions(self, extensions: Iterable[type[Extension]]) -> Profile:
        """This kernel with patches from outside the tree: their own variants (at their
        first value unless chosen), the values they add to others, and the kernel map of
        the functions their actions cite."""
        extensions = list(extensions)
        if not extensions:
            return self
        known = {**variants(self.components), **self.extended}
        extended = dict(self.extended)
        chosen = dict(self.variants)
        files = {f: tuple(names) for f, names in self.files.items()}
        for e in extensions:
            for v in e.variants:
                key = f"{e.name}.{v.name}"
                extended[key] = v
                chosen.setdefault(key, v.values[0].name)
            for key, values in e.values.items():
                if key not in known:
                    raise ModelError(f"{e.origin}: extension {e.name!r} adds values to {key!r}, which is not a "
                                     f"variant of the components of profile {self.name}; allowed: "
                                     f"{', '.join(sorted(known)) or 'none'}")
                fresh = [v for v in values if v.name not in known[key].value_names()]
                known[key] = extended[key] = known[key].with_values(fresh, f"{e.origin}: {e.name}.values")
            for path, names in e.functions.items():
                files[path] = tuple(dict.fromkeys([*files.get(path, ()), *names]))
        return replace(self, variants=chosen, files=files, extended=extended)

    def name_of(self, function: str) -> str:
        """What this tree calls the function the model cites as `function`."""
        return self.renamed.get(function, function)

    def file_of(self, function: str) -> str | None:
        """The file that defines `function` in this kernel (`FNAME(x)` and `f(args)` are
        looked up by the name before the parenthesis), or None."""
        function = self.name_of(function)
        name = function if function.startswith("FNAME(") else function.split("(")[0]
        for path, names in self.files.items():
            if name in names:
                return path
        return None

    def where(self, function: str) -> str:
        """`file:function`, as a reviewer greps for it; a function this tree lacks is
        marked `(not in <profile>)`, one the map does not know `?:function`."""
        path = self.file_of(function)
        function = self.name_of(function)
        if path is not None:
            return function if path.startswith("(") else f"{path}:{function}"
        if function.split("(")[0] in self.not_in_tree:
            return f"{function} (not in {self.name})"
        return f"?:{function}"


def variants(components: Iterable[str] | None = None) -> dict[str, Variant]:
    """Every variant the `components` (default: all) declare, by its key `component.variant`."""
    names = COMPONENTS if components is None else components
    return {f"{c}.{v.name}": v for c in names for v in COMPONENTS[c].variants}


def shipped() -> list[str]:
    """The shipped profiles' names, bases before what derives from them, then by release."""
    return sorted((p.stem for p in SHIPPED.glob("*.toml")), key=lambda n: (_depth(n), _release_key(n)))


def _depth(name: str) -> int:
    """How many bases a shipped profile has, read without loading any (listing the names
    must not need valid profiles; loading checks the chain and its cycles)."""
    chain = [name]
    while True:
        base = _default_read(SHIPPED / f"{chain[-1]}.toml", f"model/profiles/{chain[-1]}.toml").get("base")
        if not isinstance(base, str) or base in chain or not (SHIPPED / f"{base}.toml").is_file():
            return len(chain) - 1
        chain.append(base)


def _release_key(name: str) -> tuple[Any, ...]:
    parts = name.lstrip("v").replace("-", ".").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _default_read(path: Path, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(source, "file", f"cannot be read: {e}") from None


def locate(name: str) -> Path:
    """The file a profile name stands for: a shipped profile's bare name, or a path."""
    if "/" not in name and not name.endswith(".toml"):
        return SHIPPED / f"{name}.toml"
    return Path(name)


_LOADED: dict[tuple[str, int], Profile] = {}  # by file and reader


def load(name: str = DEFAULT, read: ReadTable = _default_read) -> Profile:
    """The profile `name` (a shipped profile's name, or a path to a TOML file), with its
    bases resolved and every key checked."""
    key = (str(locate(name).resolve()), id(read))  # a relative path means a file, wherever the cwd is
    if key not in _LOADED:
        _LOADED[key] = _load(name, read, ())
    return _LOADED[key]


def _load(name: str, read: ReadTable, seen: tuple[str, ...]) -> Profile:
    path = locate(name)
    is_shipped = path.parent == SHIPPED
    if not path.is_file():
        if is_shipped:
            raise ProfileError(name, "profile", f"no profile {shown(name)}", ", ".join(shipped()))
        raise ProfileError(name, "profile", "no such file", "a shipped profile's name, or a .toml file")
    src = f"model/profiles/{path.name}" if is_shipped else str(path)
    raw = read(path, src)
    for k in raw:
        if k not in KEYS:
            raise ProfileError(src, shown_key(k), "unknown key", ", ".join(KEYS))
    kernel = _str(raw, "kernel", src, required=True)
    summary = " ".join(_str(raw, "summary", src, required=True).split())
    base_name = _str(raw, "base", src, required=False) or None
    sources = raw.get("sources", [])
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
        raise ProfileError(src, "sources", f"{shown(sources)} is not a list of sources",
                           "one or more commit ids or lore Message-IDs, as strings")
    base: Profile | None = None
    if base_name is not None:
        if base_name in (*seen, name):
            raise ProfileError(src, "base", f"{shown(base_name)} derives from itself: "
                               f"{' -> '.join((*seen, name, base_name))}",
                               "a profile that is not derived from this one")
        try:
            base = _load(base_name, read, (*seen, name))
        except ProfileError as e:
            if e.key == "profile":
                raise ProfileError(src, "base", e.problem, e.allowed) from None
            raise
    own = raw.get("components", [])
    if not isinstance(own, list) or not all(isinstance(c, str) for c in own) or (base is None and not own):
        raise ProfileError(src, "components", f"{shown(own)} is not a list of components",
                           "a list of component names" + ("" if base else " (at least one: this profile has no base)"))
    for c in own:
        if c not in COMPONENTS:
            raise ProfileError(src, "components", f"unknown component {shown(c)}", ", ".join(COMPONENTS))
    components = tuple(dict.fromkeys([*(base.components if base else ()), *own]))
    changes = _variants(raw, src)
    chosen = {**(base.variants if base else {}), **changes}
    missing = sorted(set(variants(components)) - set(chosen))
    if missing:
        v = variants()[missing[0]]
        raise ProfileError(src, f"variants.{missing[0]}", "no value (every variant of the profile's components "
                           "needs one, here or in its base)", v.allowed())
    guards = {**(base.guards if base else {}), **_guards(raw, src)}
    files = {**(base.files if base else {}), **_functions(raw, src)}
    files = {f: names for f, names in files.items() if names}
    in_tree = {n for names in files.values() for n in names}
    lacking = {**(base.not_in_tree if base else {}), **_reasons(raw, src)}
    lacking = {n: why for n, why in lacking.items() if n not in in_tree}
    renamed = {**(base.renamed if base else {}), **_renamed(raw, src, in_tree)}
    renamed = {old: new for old, new in renamed.items() if old not in in_tree}
    label = path.stem if is_shipped else str(path)
    return Profile(label, src, kernel, summary, base.name if base else None, tuple(sources), components,
                   changes, chosen, guards, files, lacking, renamed)


def _str(raw: Mapping[str, Any], key: str, src: str, required: bool) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ProfileError(src, key, f"{shown(value)} is not a non-empty string", "a string")
    return value


def _table(raw: Mapping[str, Any], key: str, src: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProfileError(src, key, "is not a table", f"a [{key}] table")
    return value


def _variants(raw: Mapping[str, Any], src: str) -> dict[str, str]:
    known = variants()
    out: dict[str, str] = {}
    for k, value in _table(raw, "variants", src).items():
        if k not in known:
            raise ProfileError(src, f"variants.{shown_key(k)}", "unknown variant", ", ".join(sorted(known)) or "none")
        if value not in known[k].value_names():
            raise ProfileError(src, f"variants.{shown_key(k)}", f"{shown(value)} is not a value of it",
                               known[k].allowed())
        out[k] = value
    return out


def _guards(raw: Mapping[str, Any], src: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for g, state in _table(raw, "guards", src).items():
        if state not in ("on", "off"):
            raise ProfileError(src, f"guards.{shown_key(g)}", f"{shown(state)} is not a guard state", "'off' | 'on'")
        out[g] = state == "on"
    return out


def _functions(raw: Mapping[str, Any], src: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for f, names in _table(raw, "functions", src).items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ProfileError(src, f"functions.{shown_key(f)}", f"{shown(names)} is not a list of function names",
                               "a list of the functions the model cites that this file defines")
        out[f] = tuple(names)
    return out


def _reasons(raw: Mapping[str, Any], src: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, why in _table(raw, "not_in_tree", src).items():
        if not isinstance(why, str) or not why.strip():
            raise ProfileError(src, f"not_in_tree.{shown_key(name)}", f"{shown(why)} is not a reason",
                               "a string: where the function lives instead, and why the model cites it")
        out[name] = " ".join(why.split())
    return out


def _renamed(raw: Mapping[str, Any], src: str, in_tree: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for old, new in _table(raw, "renamed", src).items():
        if not isinstance(new, str) or new not in in_tree:
            raise ProfileError(src, f"renamed.{shown_key(old)}", f"{shown(new)} is not a function of this tree",
                               "a name listed under [functions] (here or in the base)")
        out[old] = new
    return out
