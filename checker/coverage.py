"""Coverage of the explored state space (`--coverage`, as TLC's `-coverage`).

Per action: how many expanded states enable it (its guard holds; every enabled state
yields one successor, a self-loop included) and how many distinct new states it produced
(each stored state is credited to the one action the search recorded for it, the smallest
(parent, action) among its ways in, so the figures sum to distinct - 1 and do not depend
on the block size). Per field: the values it takes in the stored states. An action that
no explored state enables is usually a modelling mistake: a guard that cannot hold in
this world, or a step no scenario reaches. A field that never leaves its initial value is
a constant of the world (a configuration choice), or a sign of the same mistake.

The figures cover the states the search explored: a search that stops on a violation or
a budget leaves its last level (or part of it) unexpanded, and a depth bound leaves the
states beyond it unreached; the text says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from model.lang import Field, Model

from .diagram import WIDTH, wrap
from .explicit import SearchResult

SCHEMA_VERSION = 1
MODELLING_MISTAKE = "usually a modelling mistake: a guard that cannot hold in this world, or a step no scenario reaches"
_STOPS = {"depth": "it stopped at the depth bound", "violation": "it stopped at a violation",
          "deadlock": "it stopped at a deadlock", "max-states": "--max-states stopped it",
          "time-limit": "--time-limit stopped it"}
_DENSE = 1 << 20  # fields with at most this many values are counted in a table, larger ones with np.unique


@dataclass(frozen=True)
class ActionCoverage:
    """One action instance (`key`, such as `name(gfn=0)`)."""

    key: str
    name: str
    actor: str
    enabling: int  # expanded states in which its guard holds
    new: int  # stored states credited to it


@dataclass(frozen=True)
class NameCoverage:
    """Every instance of one action name."""

    name: str
    instances: int
    instances_enabled: int  # instances whose guard holds in some expanded state
    enabling: int  # expanded states in which some instance's guard holds (each counted once)
    enablings: int  # the instances' `enabling` summed: the successors they generated
    new: int  # stored states credited to one of its instances


@dataclass(frozen=True)
class FieldCoverage:
    """The values one field takes in the stored states (in domain order)."""

    field: Field
    values: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.field.label(v) for v in self.values)

    @property
    def stays_initial(self) -> bool:
        return self.values == (self.field.init,)


@dataclass(frozen=True)
class Coverage:
    """Coverage of one search: figures per action instance, per action name, per field."""

    spec: str
    model: str
    profile: str | None  # the kernel profile's label, for the MMU model
    stored: int  # distinct states
    expanded: int  # stored states whose successors were computed
    depth: int
    complete: bool
    stop: str
    actions: tuple[ActionCoverage, ...]  # by action id (model order)
    names: tuple[NameCoverage, ...]  # in model order of first appearance
    fields: tuple[FieldCoverage, ...]  # in schema order

    @property
    def never_enabled(self) -> list[str]:
        """Action names no instance of which any expanded state enables."""
        return [n.name for n in self.names if n.instances_enabled == 0]

    @property
    def never_enabled_keys(self) -> list[str]:
        return [a.key for a in self.actions if a.enabling == 0]

    @property
    def never_left_initial(self) -> list[FieldCoverage]:
        return [f for f in self.fields if f.stays_initial]

    def text_lines(self) -> list[str]:
        """The coverage as plain text, for after a run's usual output."""
        out = [f"coverage: {self.expanded} of {self.stored} stored states expanded"
               + (" (the search was complete)" if self.complete else "")]
        if not self.complete:
            why = _STOPS.get(self.stop, f"stopped: {self.stop}")
            out += wrap(f"the search was not complete ({why}): coverage covers only what was explored, and an "
                        "action never enabled here may be enabled beyond it", WIDTH, "  ")
        out += ["", *self._action_table(), ""]
        never = self.never_enabled
        if never:
            out += wrap(f"never enabled ({len(never)} of {len(self.names)} actions): {', '.join(never)}; "
                        f"{MODELLING_MISTAKE}", WIDTH, "", "  ")
        else:
            out.append(f"never enabled: none; each of the {len(self.names)} actions was enabled")
        keys = self.never_enabled_keys
        out += wrap(f"action instances never enabled: {len(keys)} of {len(self.actions)} (each instance's figures "
                    "are in the coverage JSON: --export DIR)", WIDTH, "", "  ")
        moved = [f for f in self.fields if not f.stays_initial]
        out += ["", f"fields that left their initial value ({len(moved)} of {len(self.fields)}), "
                "with the values reached:"]
        for label, group in _families(moved):
            first = group[0]
            out += wrap(f"{label}: {' '.join(_shown(first))} ({len(first.values)} of {first.field.domain.size})",
                        WIDTH, "  ", "      ")
        still = self.never_left_initial
        out.append(f"fields that never left their initial value ({len(still)} of {len(self.fields)}):" if still
                   else f"fields that never left their initial value: none of {len(self.fields)}")
        for label, group in _families(still):
            out += wrap(f"{label} = {group[0].labels[0]}", WIDTH, "  ", "      ")
        return out

    def _action_table(self) -> list[str]:
        head = ("action", "instances", "ever enabled", "states enabling", "new states")
        rows = [(n.name, str(n.instances), str(n.instances_enabled), str(n.enabling), str(n.new))
                for n in self.names]
        width = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return ["  " + "  ".join([r[0].ljust(width[0]), *(c.rjust(w) for c, w in zip(r[1:], width[1:],
                                                                                   strict=True))]).rstrip()
                for r in [head, *rows]]

    def as_json(self) -> dict[str, object]:
        """The coverage as a JSON document: deterministic, in model and schema order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "spec": self.spec,
            "model": self.model,
            "profile": self.profile,
            "search": {"stored": self.stored, "expanded": self.expanded, "depth": self.depth,
                       "complete": self.complete, "stop": self.stop},
            "names": [{"name": n.name, "instances": n.instances, "instances_enabled": n.instances_enabled,
                       "states_enabling": n.enabling, "enablings": n.enablings, "new_states": n.new}
                      for n in self.names],
            "actions": [{"key": a.key, "name": a.name, "actor": a.actor, "states_enabling": a.enabling,
                         "new_states": a.new} for a in self.actions],
            "never_enabled": {"names": self.never_enabled, "keys": self.never_enabled_keys},
            "fields": [{"name": f.name, "initial": f.field.label(f.field.init), "domain_size": f.field.domain.size,
                        "reached": list(f.labels)} for f in self.fields],
            "never_left_initial": [f.name for f in self.never_left_initial],
        }


def to_json(cov: Coverage) -> str:
    """The coverage file's text: the JSON document, indented, one newline at the end."""
    return json.dumps(cov.as_json(), indent=2) + "\n"


def compute(result: SearchResult, model: Model, spec: str | None = None) -> Coverage:
    """The coverage of `result`, a search of `model` run with `coverage=True` (whose
    enabled counts it holds); `spec` names it (default: the model's name)."""
    enabled = result.enabled
    if enabled is None:
        raise ValueError("the search was run without coverage=True: it counted no enabled states")
    new = np.zeros(len(model.actions), np.int64)
    for level in result.levels[1:]:
        new += np.bincount(level.action, minlength=len(model.actions)).astype(np.int64)
    actions = tuple(ActionCoverage(a.key, a.name, a.actor, int(enabled.per_action[a.id]), int(new[a.id]))
                    for a in model.actions)
    names = []
    for i, name in enumerate(enabled.names):
        mine = [a for a in actions if a.name == name]
        names.append(NameCoverage(name, len(mine), sum(a.enabling > 0 for a in mine), int(enabled.per_name[i]),
                                  sum(a.enabling for a in mine), sum(a.new for a in mine)))
    return Coverage(
        spec=spec if spec is not None else model.name,
        model=model.name,
        profile=model.profile.label if model.profile is not None else None,
        stored=result.distinct,
        expanded=enabled.expanded,
        depth=result.depth,
        complete=result.complete,
        stop=result.stop,
        actions=actions,
        names=tuple(names),
        fields=tuple(FieldCoverage(f, v) for f, v in zip(model.schema.fields, reached_values(result, model),
                                                          strict=True)),
    )


def reached_values(result: SearchResult, model: Model) -> list[tuple[int, ...]]:
    """For each field (schema order), the values it takes in the stored states, sorted."""
    schema = model.schema
    dense: list[np.ndarray | None] = []
    sparse: list[set[int]] = []
    for f in schema.fields:
        dense.append(np.zeros(f.domain.size, dtype=bool) if f.domain.size <= _DENSE else None)
        sparse.append(set())
    for level in result.levels:
        for i, (f, slot) in enumerate(zip(schema.fields, schema.slots, strict=True)):
            seen = dense[i]
            if seen is not None and seen.all():
                continue
            codes = (level.states[:, slot.word] >> np.uint64(slot.shift)) & np.uint64(slot.mask)
            if seen is not None:
                seen |= np.bincount(codes.astype(np.intp), minlength=f.domain.size).astype(bool)
            else:
                sparse[i].update(int(c) for c in np.unique(codes))
    out = []
    for f, seen, other in zip(schema.fields, dense, sparse, strict=True):
        codes = [int(c) for c in np.flatnonzero(seen)] if seen is not None else sorted(other)
        out.append(tuple(c + f.domain.lo for c in codes))
    return out


def _families(fields: list[FieldCoverage]) -> list[tuple[str, list[FieldCoverage]]]:
    """Fields grouped for printing: members of one family (`name[label]`) next to each
    other with the same values reached share a line, as `name[a b c]`."""
    groups: list[list[FieldCoverage]] = []
    for f in fields:
        last = groups[-1][-1] if groups else None
        if last is not None and _family(last) is not None and _family(last) == _family(f) and last.values == f.values:
            groups[-1].append(f)
        else:
            groups.append([f])
    out = []
    for group in groups:
        family = _family(group[0])
        if len(group) == 1 or family is None:
            out.append((group[0].name, group))
        else:
            out.append((f"{family}[{' '.join(g.name[len(family) + 1:-1] for g in group)}]", group))
    return out


def _family(f: FieldCoverage) -> str | None:
    """The family name of an indexed field (`name` of `name[label]`), None for a plain one."""
    name = f.name
    return name.split("[")[0] if "[" in name and name.endswith("]") else None


def _shown(f: FieldCoverage) -> list[str]:
    """A field's reached values as labels, a run of three or more plain integers as `a..b`."""
    plain = [label == str(v) for v, label in zip(f.values, f.labels, strict=True)]
    out: list[str] = []
    i = 0
    while i < len(f.values):
        j = i
        while plain[i] and j + 1 < len(f.values) and plain[j + 1] and f.values[j + 1] == f.values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{f.values[i]}..{f.values[j]}")
            i = j + 1
        else:
            out.append(f.labels[i])
            i += 1
    return out
