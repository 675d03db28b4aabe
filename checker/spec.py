"""Spec files: one small world per TOML file, with its expected result.

```
description = "..."
profile = "v6.19"               # optional: the kernel it checks (default: the newest)
components = ["attributes"]
depth = 40                      # optional: steps from the initial state
invariants = ["..."]            # optional: default is every applicable invariant
check_deadlock = false          # optional
check_progress = true           # optional: false skips the no-progress search (large worlds)
symmetry = true                 # optional: store one state per orbit of the vCPUs (--symmetry)
extensions = ["my_patch.py"]    # optional: patches from outside the tree, relative to this file

[sizes]                         # vcpus, huge_pages, pages_per_huge
[attributes]                    # options of the component of that name
[my_patch]                      # options of an extension of that name
[guards]                        # guard-name = "off" (or "on")
[variants]                      # optional: "component.variant" = value, instead of the
                                # profile's choice (a design still argued on the list)

[expect]
result = "pass" | "violation" | "cycle"
invariant = "..."               # violation: the invariant that must fail;
                                # cycle: the PROGRESS property a no-progress cycle breaks
within = 12                     # violation / cycle: at most this many steps (a lasso's
                                # prefix plus its cycle)
complete = true                 # pass: the search must reach a fixpoint
distinct = 83888                # pinned number of distinct states
depth = 29                      # pinned depth of the search
witnesses = ["..."]             # SOMETIMES witnesses that must be reached
profiles = ["..."]              # other profiles under which all of the above holds too

[expect.under."v7.3"]           # the same result under another profile, with its own
within = 16                     # figures (a variant that adds steps): within, distinct,
distinct = 59825                # depth, witnesses; the rest as above
depth = 16
```

Every key is checked: an unknown key, a wrong type, an empty list or an unknown guard,
invariant or component is a SpecError naming the file, the key and what is allowed.
`read()` checks the file's shape without building anything (what `list specs` needs);
`parse()` and `load()` also build the model once, so that every name is checked.
A shipped spec can be named by its bare name (`find()`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from invariants import CATALOGUE, Bound, Invariant, Kind, select
from invariants.core import facts
from model.lang import Extension, Model, ModelError, OptionError, UnknownName, order, shown, shown_key
from model.mmu import COMPONENTS, NotInProfile, Sizes, build, profiles
from model.mmu.profiles import Profile, ProfileError

from . import extensions as ext
from .errors import InputError, UsageError
from .files import parse_toml, read_text

TOP_KEYS = ("description", "profile", "components", "depth", "invariants", "check_deadlock", "check_progress",
            "symmetry", "extensions", "sizes", "guards", "variants", "expect")
EXPECT_KEYS = ("result", "invariant", "within", "complete", "distinct", "depth", "witnesses", "profiles", "under")
UNDER_KEYS = ("within", "distinct", "depth", "witnesses")  # what another profile's design may change
Under = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # profile -> (figure, value) pairs


SHIPPED = Path(__file__).resolve().parent.parent / "specs"  # the checkout's specs/
_EXTENSIONS_KEY = re.compile(r"""^extensions\s*=\s*\[(?:[^\]"'#]|"[^"\n]*"|'[^'\n]*')*\][ \t]*(?:#.*)?\n?""",
                             re.MULTILINE)


class SpecError(InputError):
    """A bad spec: names the file, the key, the problem and what is allowed."""


@dataclass(frozen=True)
class Expect:
    result: str  # "pass" | "violation" | "cycle"
    invariant: str | None = None
    within: int | None = None
    complete: bool | None = None
    distinct: int | None = None
    depth: int | None = None
    witnesses: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()  # other profiles under which all of the above holds too
    # other profiles with the same result but figures of their own (expect.under)
    under: Under = ()

    def changed_under(self, name: str) -> dict[str, Any]:
        """The figures expect.under sets for profile `name` (none for another profile)."""
        return dict(dict(self.under).get(name, ()))

    def for_profile(self, name: str) -> Expect:
        """This expectation as it reads under profile `name`."""
        return replace(self, **self.changed_under(name))


@dataclass
class Spec:
    source: str  # the file it came from, as given (or "<default>")
    name: str
    description: str
    components: tuple[str, ...]
    sizes: Sizes
    options: dict[str, dict[str, Any]]
    guards: dict[str, bool]  # the [guards] table: name -> on
    invariants: tuple[str, ...] | None
    depth: int | None
    check_deadlock: bool
    expectation: Expect | None  # the [expect] table, for every profile it names
    profile_name: str = profiles.DEFAULT  # the spec's `profile`, or --profile
    variants: dict[str, str] = field(default_factory=dict)  # the [variants] table
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    text: str = field(repr=False, default="")  # the TOML itself, for exports that replay it
    extensions: tuple[ext.Loaded, ...] = ()  # the spec's and the command line's, in that order
    _models: dict[tuple[str, ...], Model] = field(repr=False, default_factory=dict)

    @property
    def guards_off(self) -> tuple[str, ...]:
        return tuple(sorted(g for g, on in self.guards.items() if not on))

    @property
    def profile(self) -> Profile:
        """The kernel this spec checks (its `profile`, or the one --profile chose), with the
        variants its [variants] table chooses instead."""
        base = load_profile(self.profile_name, self.source, "profile")
        try:
            return base.with_extensions(self.extension_classes).with_variants(self.variants, self.source)
        except ProfileError as e:
            raise SpecError(e.source, e.key, e.problem, e.allowed) from None
        except ModelError as e:
            raise SpecError(self.source, "extensions", str(e)) from None

    @property
    def extension_classes(self) -> tuple[type[Extension], ...]:
        return tuple(c for e in self.extensions for c in e.classes)

    @property
    def catalogue(self) -> tuple[Invariant, ...]:
        """The invariants this scenario can check: the catalogue's and its extensions'."""
        return (*CATALOGUE, *(p for c in self.extension_classes for p in c.properties))

    @property
    def label(self) -> str:
        """The kernel this scenario checks, as reports name it: its profile's label, and
        the extensions patched onto it."""
        names = [c.name for c in self.extension_classes]
        return self.profile.label + "".join(f" + {n}" for n in names)

    def without_extensions(self) -> Spec:
        """This scenario on the kernel without its patches: no extension, and none of
        their properties among the invariants it names."""
        if not self.extensions:
            return self
        own = {p.name for c in self.extension_classes for p in c.properties}
        invariants = None if self.invariants is None else tuple(n for n in self.invariants if n not in own)
        # the text a document carries (and replay reads) is the scenario without them too
        text = _EXTENSIONS_KEY.sub("", self.text)
        if "extensions" in parse_toml(text, self.source):
            text = self.text  # not written as one `extensions = [...]` line: keep the spec's own words
        return replace(self, extensions=(), invariants=invariants, text=text, _models={})

    def with_extensions(self, names: Iterable[str], texts: Mapping[str, str] | None = None) -> Spec:
        """This scenario with more extensions (--extension FILE, relative to the working
        directory; or, with `texts`, the copies a document carries)."""
        names = list(names)
        if not names:
            return self
        loaded = [*self.extensions, *(ext.load(n, "--extension", None, self.source, "--extension",
                                               None if texts is None else texts[n]) for n in names)]
        ext.check_together(loaded, self.source)
        return replace(self, extensions=tuple(loaded), _models={})

    @property
    def check_progress(self) -> bool:
        """Whether a complete search is followed by the no-progress search (it holds the
        whole state graph in memory, so a large world may skip it)."""
        return bool(self.raw.get("check_progress", True))

    @property
    def symmetry(self) -> bool:
        """Whether the search stores one state per orbit of the model's symmetric index sets."""
        return bool(self.raw.get("symmetry", False))

    @property
    def expect(self) -> Expect | None:
        """The [expect] table as it reads under this run's profile (expect.under)."""
        return self.expectation.for_profile(self.profile_name) if self.expectation else None

    @property
    def expected_under(self) -> tuple[str, ...]:
        """The profiles the [expect] table is for: the spec's own, `expect.profiles` and
        those of `expect.under`."""
        own = self.raw.get("profile", profiles.DEFAULT)
        e = self.expectation
        return (own, *(e.profiles if e else ()), *(name for name, _ in (e.under if e else ())))

    @property
    def expectation_applies(self) -> bool:
        """The run's profile is one the [expect] table speaks for (under another one a
        run explores: its verdict is the answer, not a comparison)."""
        return self.expect is not None and self.profile_name in self.expected_under

    def with_profile(self, name: str, key: str = "--profile") -> Spec:
        """This scenario under another profile (checked here, so the error names `key`)."""
        load_profile(name, self.source, key)
        return replace(self, profile_name=name, _models={})

    def build(self, guards: Mapping[str, bool] | None = None) -> Model:
        """The model of this scenario; `guards` (name -> on) overrides the spec's [guards],
        which override the profile's guard defaults. Every guard named, on or off, here,
        in the spec or in the profile, must be one the model has."""
        profile = self.profile
        settings = {**profile.guards, **self.guards, **(guards or {})}
        key = tuple(sorted(g for g, on in settings.items() if not on))
        if key not in self._models:
            model = self._build(key, guards or {}, profile)
            if not self._models:
                self._check_names(model)
            self._models[key] = model
        model = self._models[key]
        for name in settings:
            if name not in model.guards:
                raise self._unknown_guard(name, guards or {}, profile, model.guards)
        return model

    def _unknown_guard(self, name: str, overrides: Mapping[str, bool], profile: Profile,
                       allowed: Iterable[str]) -> SpecError:
        """An unknown guard, blamed on where it was named: --guard, the spec, or the profile."""
        if name in overrides:
            source, key = self.source, "--guard"
        else:
            source, key = (self.source if name in self.guards else profile.source), f"guards.{shown_key(name)}"
        return SpecError(source, key, f"unknown guard {shown(name)}", ", ".join(sorted(allowed)))

    def _build(self, off: tuple[str, ...], overrides: Mapping[str, bool], profile: Profile) -> Model:
        try:
            return build(self.components, self.sizes, self.options, off, self.name, self.description, profile,
                         self.extension_classes)
        except NotInProfile as e:
            raise SpecError(self.source, "components", str(e), ", ".join(profile.components)) from None
        except UnknownName as e:
            if e.kind == "guard":
                raise self._unknown_guard(e.name, overrides, profile, e.allowed) from None
            raise SpecError(self.source, e.kind, f"unknown {e.kind} {shown(e.name)}", ", ".join(e.allowed)) from None
        except OptionError as e:
            raise SpecError(self.source, e.key, e.problem, e.allowed) from None
        except ModelError as e:
            raise SpecError(self.source, "model", str(e)) from None

    def bound_invariants(self, model: Model, names: tuple[str, ...] | None = None) -> list[Bound]:
        """The invariants to check (the spec's, or `names`), plus the model's own facts."""
        chosen = names if names is not None else self.invariants
        try:
            picked = select(self.catalogue, model, chosen)
        except UnknownName as e:
            key = "invariants" if names is None else "--invariant"
            raise SpecError(self.source, key, f"unknown invariant {shown(e.name)}", ", ".join(e.allowed)) from None
        return picked + facts(model)

    def _check_names(self, model: Model) -> None:
        """The spec's invariants must exist, and its expectation must name an invariant or
        witness that the run will actually check."""
        bounds = self.bound_invariants(model)
        if self.expect is None or not self.expectation_applies:
            return  # under a profile [expect] does not speak for, a run explores
        always = [b.name for b in bounds if b.kind is Kind.ALWAYS]
        sometimes = [b.name for b in bounds if b.kind is Kind.SOMETIMES]
        progress = [b.name for b in bounds if b.kind is Kind.PROGRESS]
        inv = self.expect.invariant
        if self.expect.result == "violation" and inv not in always:
            raise SpecError(self.source, "expect.invariant",
                            f"{shown(inv)} is not an ALWAYS invariant this spec checks", ", ".join(always))
        if self.expect.result == "cycle" and inv not in progress:
            raise SpecError(self.source, "expect.invariant",
                            f"{shown(inv)} is not a PROGRESS property this spec checks",
                            ", ".join(progress) or "none (no component of this spec has one)")
        assert self.expectation is not None
        key = (f"expect.under.{shown_key(self.profile_name)}.witnesses"
               if "witnesses" in self.expectation.changed_under(self.profile_name) else "expect.witnesses")
        for w in self.expect.witnesses:
            if w not in sometimes:
                raise SpecError(self.source, key,
                                f"{shown(w)} is not a SOMETIMES witness this spec checks", ", ".join(sometimes))


def find(name: str, directory: Path = SHIPPED) -> Path:
    """The spec file `name` stands for: a path, or a shipped spec's bare name (with or
    without `.toml`), as `python -m checker list specs` prints it."""
    if not name:
        raise UsageError("--spec: an empty name; give a spec file, or a shipped spec's name "
                         "(python -m checker list specs)")
    path = Path(name)
    if os.path.lexists(path) or os.sep in name or (os.altsep and os.altsep in name):
        return path
    stem = name[:-len(".toml")] if name.endswith(".toml") else name
    shipped = directory / f"{stem}.toml"
    return shipped if shipped.is_file() else path


def load(path: str | Path) -> Spec:
    """Read, check and build the spec file at `path`."""
    spec = read(path)
    spec.build()
    return spec


def read(path: str | Path, source: str | None = None) -> Spec:
    """The spec file at `path`, its shape checked but its model not built."""
    source = source if source is not None else str(path)
    return from_text(read_text(path, source), source, Path(path).stem)


def parse(text: str, source: str, name: str) -> Spec:
    """A spec from its TOML text, checked and built."""
    spec = from_text(text, source, name)
    spec.build()
    return spec


def from_text(text: str, source: str, name: str, texts: Mapping[str, str] | None = None,
              load_extensions: bool = True) -> Spec:
    """A spec from its TOML text; its extensions are read relative to `source`'s
    directory, or, with `texts`, taken from there (a document's copies, by name), or
    not loaded at all (the caller brings others)."""
    raw = parse_toml(text, source)
    loaded = _extensions(raw, source, texts) if load_extensions else []
    component_keys = (*COMPONENTS, *(c.name for e in loaded for c in e.classes))
    for key in raw:
        if key not in TOP_KEYS and key not in component_keys:
            raise SpecError(source, shown_key(key), "unknown key", ", ".join(TOP_KEYS + component_keys))
    components = _str_list(raw, "components", source, ["attributes"])
    if not components:
        raise SpecError(source, "components", "an empty list: a model needs a component", ", ".join(COMPONENTS))
    for c in components:
        if c not in COMPONENTS:
            raise SpecError(source, "components", f"unknown component {shown(c)}", ", ".join(COMPONENTS))
    sizes_raw = _table(raw, "sizes", source)
    try:
        sizes = Sizes.from_options(sizes_raw)
    except OptionError as e:
        raise SpecError(source, f"sizes.{e.key}", e.problem, e.allowed) from None
    options: dict[str, dict[str, Any]] = {}
    classes = {c.name: c for e in loaded for c in e.classes}
    enabled = order({**COMPONENTS, **classes}, [*components, *classes])  # with what they require
    for c in component_keys:
        table = _table(raw, c, source)
        if table and c not in enabled:
            raise SpecError(source, c, f"options for component {c!r}, which is not in components "
                            f"(nor required by them)", ", ".join(enabled))
        options[c] = table
    guards: dict[str, bool] = {}
    for g, state in _table(raw, "guards", source).items():
        if state not in ("off", "on"):
            raise SpecError(source, f"guards.{shown_key(g)}", f"{shown(state)} is not a guard state", "'off' | 'on'")
        guards[g] = state == "on"
    chosen: dict[str, str] = {}
    for k, value in _table(raw, "variants", source).items():
        if not isinstance(value, str) or not value:
            raise SpecError(source, f"variants.{shown_key(k)}", f"{shown(value)} is not a variant value",
                            "a string: one of the variant's values (python -m checker list variants)")
        chosen[k] = value
    invariants = None
    if "invariants" in raw:
        invariants = tuple(_str_list(raw, "invariants", source, []))
        if not invariants:
            raise SpecError(source, "invariants", "an empty list would check nothing but the model's own facts",
                            "one or more invariant names, or no key at all for every invariant that applies")
    depth = _int(raw, "depth", source, minimum=0)
    check_deadlock = raw.get("check_deadlock", False)
    if not isinstance(check_deadlock, bool):
        raise SpecError(source, "check_deadlock", f"{shown(check_deadlock)} is not a boolean", "true | false")
    check_progress = raw.get("check_progress", True)
    if not isinstance(check_progress, bool):
        raise SpecError(source, "check_progress", f"{shown(check_progress)} is not a boolean", "true | false")
    if not isinstance(raw.get("symmetry", False), bool):
        raise SpecError(source, "symmetry", f"{shown(raw['symmetry'])} is not a boolean", "true | false")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(source, "description", "is not a string", "a string")
    profile = raw.get("profile", profiles.DEFAULT)
    if not isinstance(profile, str) or not profile:
        raise SpecError(source, "profile", f"{shown(profile)} is not a profile name",
                        ", ".join(profiles.shipped()) + ", or a path to a profile file")
    return Spec(
        source, name, description, tuple(components), sizes, options, guards,
        invariants, depth, check_deadlock, _expect(raw, source), profile, chosen, raw, text, tuple(loaded),
    )


def _extensions(raw: dict[str, Any], source: str, texts: Mapping[str, str] | None) -> list[ext.Loaded]:
    names = _str_list(raw, "extensions", source, [])
    base = Path(source).parent
    loaded = []
    for n in names:
        if texts is not None and n not in texts:
            raise SpecError(source, "extensions", f"{shown(n)}: no copy of it in the document", "the extensions "
                            "the document carries")
        loaded.append(ext.load(n, "spec", base, source, "extensions", None if texts is None else texts[n]))
    ext.check_together(loaded, source)
    return loaded


def _read_profile(path: Path, source: str) -> dict[str, Any]:
    return parse_toml(read_text(path, source), source)


def load_profile(name: str, source: str, key: str) -> Profile:
    """The profile `name` (a shipped profile or a path), every key checked; a profile that
    does not exist is an error of `source` at `key`, a bad profile one of its own file."""
    if not name:
        raise SpecError(source, key, "an empty profile name", ", ".join(profiles.shipped()))
    try:
        return profiles.load(name, _read_profile)
    except ProfileError as e:
        if e.key == "profile":
            raise SpecError(source, key, e.problem, e.allowed) from None
        raise SpecError(e.source, e.key, e.problem, e.allowed) from None


def _expect(raw: dict[str, Any], source: str) -> Expect | None:
    if "expect" not in raw:
        return None
    table = _table(raw, "expect", source)
    for key in table:
        if key not in EXPECT_KEYS:
            raise SpecError(source, f"expect.{shown_key(key)}", "unknown key", ", ".join(EXPECT_KEYS))
    result = table.get("result")
    if result not in ("pass", "violation", "cycle"):
        raise SpecError(source, "expect.result", f"{shown(result)} is not a result", "'pass' | 'violation' | 'cycle'")
    invariant = table.get("invariant")
    if result != "pass" and not isinstance(invariant, str):
        raise SpecError(source, "expect.invariant", f"a {result} needs the name of the property it breaks",
                        "an invariant name" if result == "violation" else "a PROGRESS property name")
    if result == "pass" and invariant is not None:
        raise SpecError(source, "expect.invariant", "only a violation names an invariant")
    complete = table.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise SpecError(source, "expect.complete", f"{shown(complete)} is not a boolean", "true | false")
    witnesses = tuple(_str_list(table, "witnesses", source, [], prefix="expect."))
    others = tuple(_str_list(table, "profiles", source, [], prefix="expect."))
    own = raw.get("profile", profiles.DEFAULT)
    for name in others:
        if name == own:
            raise SpecError(source, "expect.profiles", f"{shown(name)} is the spec's own profile",
                            "other profiles than its `profile`")
        if others.count(name) > 1:
            raise SpecError(source, "expect.profiles", f"{shown(name)} is named twice", "each profile once")
        load_profile(name, source, "expect.profiles")
    return Expect(
        result, invariant, _int(table, "within", source, 0, "expect."), complete,
        _int(table, "distinct", source, 1, "expect."), _int(table, "depth", source, 0, "expect."), witnesses,
        others, _under(table, source, (own, *others)),
    )


def _under(table: dict[str, Any], source: str, named: tuple[str, ...]) -> Under:
    """expect.under: per other profile, the figures that differ there."""
    under = _table(table, "under", source, "expect.")
    out = []
    for name, figures in under.items():
        key = f"expect.under.{shown_key(name)}"
        if name in named:
            raise SpecError(source, key, f"{shown(name)} is already the spec's profile or in expect.profiles",
                            "a profile under which only the figures differ, named once")
        load_profile(name, source, key)
        if not isinstance(figures, dict) or not figures:
            raise SpecError(source, key, "is not a table of figures", ", ".join(UNDER_KEYS))
        for k in figures:
            if k not in UNDER_KEYS:
                raise SpecError(source, f"{key}.{shown_key(k)}", "not a figure another profile may change",
                                ", ".join(UNDER_KEYS))
        got: dict[str, Any] = {
            "within": _int(figures, "within", source, 0, key + "."),
            "distinct": _int(figures, "distinct", source, 1, key + "."),
            "depth": _int(figures, "depth", source, 0, key + "."),
        }
        if "witnesses" in figures:
            got["witnesses"] = tuple(_str_list(figures, "witnesses", source, [], prefix=key + "."))
        out.append((name, tuple((k, v) for k, v in got.items() if k in figures)))
    return tuple(out)


def _table(raw: dict[str, Any], key: str, source: str, prefix: str = "") -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(source, prefix + key, "is not a table", f"a [{prefix}{key}] table")
    return value


def _str_list(raw: dict[str, Any], key: str, source: str, default: list[str], prefix: str = "") -> list[str]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(source, prefix + key, f"{shown(value)} is not a list of strings", "a list of names")
    return value


def _int(raw: dict[str, Any], key: str, source: str, minimum: int, prefix: str = "") -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(source, prefix + key, f"{shown(value)} is not an integer >= {minimum}",
                        f"an integer >= {minimum}")
    return value
