"""`python -m checker replay FILE.json`: does a saved counterexample still reproduce?

The file carries its scenario (the spec's TOML and the guard overrides of the run), so
the model is rebuilt without the spec file; `--spec` and `--guard` replay it against
another model instead, e.g. one with the fix switched back on. Steps are matched by
action key (`name(param=value, ...)`) and applied one by one with the compiled model.
The first step whose action does not exist or whose guard is false ends the replay; for
a false guard, z3 names the part of it that fails. A step that applies but changes other
fields than the file recorded is reported and the replay goes on from the new state.
At the end the verdict is evaluated again: the invariant violated in the final state,
or the cycle closing with its actor still waiting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from invariants import Bound, Kind, select
from model.lang import Action, Model, UnknownName, printable, show, shown, shown_key
from model.mmu import COMPONENTS

from . import models
from .compile import Compiled, compile_model
from .diagram import WIDTH, wrap
from .document import FORMAT, SCHEMA_VERSION, actor_title, failing, fingerprint, read_fields, where_text
from .errors import InputError, UsageError
from .files import parse_json, read_text
from .report import failing_lines
from .spec import Spec, from_text
from .trace import failing_part, holds, successor


class ReplayFileError(InputError):
    """A counterexample file that cannot be replayed: names the file, the key and why."""


SCHEMA = json.loads(resources.files("checker").joinpath("counterexample.schema.json").read_text("utf-8"))
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def load_document(path: str | Path) -> dict[str, Any]:
    source = str(path)
    doc = parse_json(read_text(path, source), source)
    check_document(doc, source)
    return doc


def check_document(doc: Any, source: str) -> None:
    """`doc` must be a counterexample of this schema version, valid against
    counterexample.schema.json, with its steps numbered and its cycle ending at the end."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ReplayFileError(source, "format", f"not a counterexample file (expected format {FORMAT!r})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReplayFileError(source, "schema_version", f"{shown(version)} is not an integer")
    if version > SCHEMA_VERSION:
        raise ReplayFileError(source, "schema_version", f"{version} is newer than this checker's "
                              f"{SCHEMA_VERSION}; replay it with a newer checker")
    if version < OLDEST_READ:
        raise ReplayFileError(source, "schema_version", f"{version} is older than {OLDEST_READ} and "
                              "does not carry its scenario; export the counterexample again")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        key, problem, allowed = _schema_error(error)
        raise ReplayFileError(source, key, problem, allowed)
    for i, step in enumerate(doc["steps"]):
        if step["step"] != i + 1:
            raise ReplayFileError(source, f"steps[{i}].step", f"{step['step']} is not its place in the trace",
                                  str(i + 1))
    if doc["result"] == "cycle":
        first, length, steps = doc["cycle"]["first_step"], doc["cycle"]["steps"], len(doc["steps"])
        if first + length - 1 != steps:
            raise ReplayFileError(source, "cycle", f"steps {first} to {first + length - 1} do not end at the "
                                  f"last step, {steps}", "first_step + steps - 1 == the number of steps")


def _schema_error(error: jsonschema.ValidationError) -> tuple[str, str, str]:
    """(key, problem, allowed) for the most relevant schema error."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{shown_key(str(p))}" for p in error.absolute_path)
    key = path.lstrip(".") or "document"
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = next(k for k in value if k not in instance)
        return (f"{path}.{missing}".lstrip("."), "missing", "")
    if kind == "additionalProperties" and value is False:
        known = error.schema.get("properties", {})
        extra = next(k for k in instance if k not in known)
        return (f"{path}.{shown_key(extra)}".lstrip("."), "unknown key", ", ".join(known))
    if kind == "type":
        return (key, f"{shown(instance)} is not of type {value}", "")
    if kind in ("enum", "const"):
        allowed = value if kind == "enum" else [value]
        return (key, f"{shown(instance)} is not allowed", " | ".join(shown(v) for v in allowed))
    if kind in ("minItems", "maxItems"):
        return (key, f"{shown(instance)} has {len(instance)} items",
                "[old, new]" if error.schema.get("maxItems") == 2 else f"{kind} {value}")
    if kind == "minimum":
        return (key, f"{shown(instance)} is less than {value}", f"an integer >= {value}")
    if kind == "minLength":
        return (key, "is empty", "a non-empty string")
    if kind == "not":
        return ("cycle", "only a result 'cycle' has a cycle", "")
    return (key, printable(error.message)[:200], "")


@dataclass
class Outcome:
    """One step of the replay."""

    step: int
    actor: str
    text: str
    status: str  # "ok" | "differs" | "missing" | "disabled"
    detail: list[str] = field(default_factory=list)


@dataclass
class Replay:
    model: Model
    outcomes: list[Outcome]
    reproduces: bool
    verdict: list[str]  # what the end of the replay found, one line each
    notes: list[str]

    @property
    def stopped_at(self) -> Outcome | None:
        return next((o for o in self.outcomes if o.status in ("missing", "disabled")), None)


OLDEST_READ = 2  # schema 2 has no profile: its runs were of the model before profiles
PROFILE_BEFORE_PROFILES = "v6.16"


def scenario_spec(doc: Mapping[str, Any], source: str, profile: str | None = None,
                  extensions: Sequence[str] | None = None) -> Spec:
    """The scenario saved in the file under the profile it was run with (or `profile`,
    from --profile), with the extensions it carries (or the files `extensions`, from
    --extension, instead), checked and built like a spec file."""
    scenario = doc["scenario"]
    if "model" in scenario:  # a --model run: its file's text, run again
        copy = scenario["model"]
        if hashlib.sha256(copy["text"].encode()).hexdigest() != copy["sha256"]:
            raise ReplayFileError(source, "scenario.model.sha256", "does not match the text",
                                  "the sha256 of the model file's text")
        if profile is not None or extensions is not None:
            raise UsageError("--profile and --extension apply to a spec (the kernel model), not to a model file")
        return models.from_text(copy["text"], copy["path"])  # type: ignore[return-value]  # stands in for a Spec
    if extensions is not None:
        spec = from_text(scenario["toml"], f"{source}: scenario.toml", scenario["name"], load_extensions=False)
        return _under(spec.with_extensions(extensions), scenario, profile)
    copies = scenario.get("extensions", [])
    for i, e in enumerate(copies):
        if hashlib.sha256(e["text"].encode()).hexdigest() != e["sha256"]:
            raise ReplayFileError(source, f"scenario.extensions[{i}].sha256", "does not match the text",
                                  "the sha256 of the extension's text")
    texts = {e["name"]: e["text"] for e in copies if e["via"] == "spec"}
    spec = from_text(scenario["toml"], f"{source}: scenario.toml", scenario["name"], texts)
    given = {e["name"]: e["text"] for e in copies if e["via"] == "--extension"}
    return _under(spec.with_extensions(list(given), given), scenario, profile)


def _under(spec: Spec, scenario: Mapping[str, Any], profile: str | None) -> Spec:
    if profile is not None:
        spec = spec.with_profile(profile)
    else:
        spec = spec.with_profile(scenario.get("profile", PROFILE_BEFORE_PROFILES), "scenario.profile")
    spec.build()
    return spec


def recorded_guards(doc: Mapping[str, Any], source: str, spec: Spec) -> dict[str, bool]:
    """The guard settings the file was exported with; each must be a guard of `spec`."""
    known = spec.build().guards
    for name in doc["scenario"]["guards"]:
        if name not in known:
            raise ReplayFileError(source, f"scenario.guards.{shown_key(name)}", "unknown guard",
                                  ", ".join(sorted(known)))
    return {k: v == "on" for k, v in doc["scenario"]["guards"].items()}


def replay_document(doc: Mapping[str, Any], source: str, spec: Spec | None = None,
                    guards: Mapping[str, bool] | None = None) -> Replay:
    """Replay `doc` against the model of `spec` (default: its own scenario) with `guards`
    overriding the file's own guard settings."""
    check_document(doc, source)
    spec = spec if spec is not None else scenario_spec(doc, source)
    model = spec.build({**recorded_guards(doc, source, spec), **(guards or {})})
    notes = _identity(doc, model, source)
    bound = _bound(doc, model, source, spec)
    compiled = compile_model(model)
    by_key = {a.key: a for a in model.actions}
    words = model.init
    states = [model.schema.unpack(words)]
    outcomes: list[Outcome] = []
    for n, step in enumerate(doc["steps"], start=1):
        action = by_key.get(step["action"])
        actor, text = step["actor"], step["text"]
        if action is None:
            outcomes.append(Outcome(n, actor, text, "missing",
                                    [f"the model has no action {step['action']}"]))
            break
        nxt = successor(compiled, words, action)
        if nxt is None:
            outcomes.append(Outcome(n, actor, text, "disabled", _why_disabled(model, action, states[-1])))
            break
        words = nxt
        states.append(model.schema.unpack(words))
        changes = _changes(model, states[-2], states[-1])
        recorded = {k: list(v) for k, v in step["changes"].items()}
        if changes == recorded:
            outcomes.append(Outcome(n, actor, text, "ok"))
        else:
            outcomes.append(Outcome(n, actor, text, "differs", _difference(recorded, changes)))
    replay = Replay(model, outcomes, False, [], notes)
    stopped = replay.stopped_at
    if stopped is not None:
        replay.verdict = [f"does not reproduce: step {stopped.step} ({actor_title(stopped.actor)}: "
                          f"{stopped.text}) no longer applies"]
        return replay
    if doc["result"] == "violation":
        replay.reproduces, replay.verdict = _violation_verdict(model, bound, states)
    else:
        replay.reproduces, replay.verdict = _cycle_verdict(compiled, bound, doc["cycle"], states, source)
    differs = next((o for o in outcomes if o.status == "differs"), None)
    if differs is not None and not replay.reproduces:
        replay.verdict.append(f"  (from step {differs.step} on, the steps change other fields than the file "
                              "recorded)")
    return replay


def _identity(doc: Mapping[str, Any], model: Model, source: str) -> list[str]:
    """The file must come from this model (the same shipped components: the patch
    extensions may differ, a fix replayed in place of the patch); a changed shape is only noted."""
    recorded = doc["model"]
    components = [c for c in recorded["components"] if c in COMPONENTS]
    if components != [c for c in model.parts if c in COMPONENTS]:
        raise ReplayFileError(source, "model.components", f"the file is from a different model: "
                              f"{shown(components)}, but this model has {list(model.parts)!r}")
    notes = []
    if recorded["fingerprint"] != fingerprint(model):
        notes.append(f"the model's fields or actions differ from the file's (fingerprint "
                     f"{shown(recorded['fingerprint'])} -> {fingerprint(model)}); steps are matched by name")
    return notes


def _bound(doc: Mapping[str, Any], model: Model, source: str, spec: Spec) -> Bound:
    name = doc["invariant"]["name"]
    try:
        [bound] = select(spec.catalogue, model, [name])
    except (UnknownName, ValueError):
        raise ReplayFileError(source, "invariant.name", f"{shown(name)} is not an invariant of this model") from None
    want = Kind.ALWAYS if doc["result"] == "violation" else Kind.PROGRESS
    if bound.kind is not want:
        raise ReplayFileError(source, "invariant.name", f"{shown(name)} is {bound.kind.value}, not {want.value}")
    return bound


def _changes(model: Model, before: Sequence[int], after: Sequence[int]) -> dict[str, list[str]]:
    return {f.name: [f.label(a), f.label(b)]
            for f, a, b in zip(model.schema.fields, before, after, strict=True) if a != b}


def _difference(recorded: dict[str, list[str]], now: dict[str, list[str]]) -> list[str]:
    lines = []
    for name in sorted(set(recorded) | set(now)):
        was, is_ = recorded.get(name), now.get(name)
        if was != is_:
            lines.append(f"{name}: recorded {' -> '.join(was) if was else 'unchanged'}, "
                         f"now {' -> '.join(is_) if is_ else 'unchanged'}")
    return lines


def _why_disabled(model: Model, action: Action, values: Sequence[int]) -> list[str]:
    """The part of the action's guard that is false here, found with z3."""
    part = failing_part(model, action.guard, values)[-1]
    fields = model.schema.by_name
    lines = ["no longer applies: its guard is false; the part that fails:", "  " + show(part, fields)]
    where = read_fields(model, part, values)
    if where:
        lines.append("  " + where_text(where))
    return lines


def _violation_verdict(model: Model, bound: Bound, states: list[tuple[int, ...]]) -> tuple[bool, list[str]]:
    steps = len(states) - 1
    if holds(model, bound.term, states[-1]):
        return False, [f"does not reproduce: every step applies, but {bound.name} holds after step {steps}"]
    f = failing(model, bound.term, states[-1], bound.name)
    return True, [f"reproduces: {bound.name} violated after {steps} steps", *failing_lines(f)]


def _cycle_verdict(compiled: Compiled, bound: Bound, cycle: Mapping[str, Any], states: list[tuple[int, ...]],
                   source: str) -> tuple[bool, list[str]]:
    model = compiled.model
    first, length, who = cycle["first_step"], cycle["steps"], cycle["who"]
    waiting = dict(bound.waiting).get(who)
    if waiting is None:
        raise ReplayFileError(source, "cycle.who", f"{shown(who)} is not an actor that {bound.name} watches",
                              ", ".join(a for a, _ in bound.waiting))
    loop = states[first - 1:]
    if length and loop[0] != loop[-1]:
        return False, [f"does not reproduce: after step {len(states) - 1} the state is not the one "
                       f"after step {first - 1}, so the cycle does not close"]
    if not length:
        packed = model.schema.pack(states[-1])
        if any(successor(compiled, packed, a) is not None for a in model.actions):
            return False, [f"does not reproduce: an action is enabled after step {first - 1}"]
    for i, values in enumerate(loop):
        if not holds(model, waiting, values):
            return False, [f"does not reproduce: {actor_title(who)} does not wait after step {first - 1 + i}"]
    what = f"a cycle of {length} steps" if length else "a state where nothing can happen"
    return True, [f"reproduces: {bound.name} broken: {actor_title(who)} waits forever in {what}"]


def report_lines(replay: Replay, source: str) -> list[str]:
    model = replay.model
    out = [f"replay: {printable(source)}",
           *wrap(f"model: {printable(model.name)} (components: {', '.join(model.parts)}; "
                 f"guards off: {', '.join(model.guards_off()) or 'none'})", WIDTH, "", "  ")]
    out += [line for n in replay.notes for line in wrap(f"note: {n}", WIDTH, "", "  ")]
    width = max((len(actor_title(o.actor)) for o in replay.outcomes), default=5)
    for o in replay.outcomes:
        status = {"ok": "ok", "differs": "differs", "missing": "FAILS", "disabled": "FAILS"}[o.status]
        lead = f"{o.step:>3} {status:<8} {actor_title(o.actor):<{width}}  "
        out += wrap(o.text, WIDTH, lead, " " * len(lead))
        detail = " " * 13
        for line in o.detail:
            out += wrap(line, WIDTH, detail, detail + "  ")
    return out + [line for v in replay.verdict for line in wrap(v, WIDTH, "", "    ")]
