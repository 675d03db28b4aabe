"""`python -m checker`: check a scenario, list what a model has.

Exit codes: 0 expectations met (or, with --ignore-expected / no expectations, no
violation); 1 an invariant violated or an expectation not met; 2 bad usage or bad spec;
3 stopped by a budget (--max-states, --time-limit) before the depth bound; 4 z3 answered
unknown.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from invariants import CATALOGUE, Bound, Kind, applicable
from model.lang import Model, ModelError, SolverUnknown

from . import export, report
from .compile import Compiled, CompileError, compile_model
from .diagram import steps_lines
from .document import Context
from .explicit import Budget, ExplicitSearch, SearchResult
from .export import explore_around
from .progress import Lasso, find_lassos
from .replay import ReplayFileError, load_document, replay_document, report_lines
from .sanity import vacuous
from .spec import Spec, SpecError, load, parse
from .trace import Trace, rebuild, rebuild_lasso

OK, VIOLATION, USAGE, BUDGET, UNKNOWN = 0, 1, 2, 3, 4
DEFAULT_SPEC = "attributes-default"


def default_spec() -> Spec:
    text = resources.files("checker").joinpath("scenarios", f"{DEFAULT_SPEC}.toml").read_text("utf-8")
    return parse(text, "<default>", DEFAULT_SPEC)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] == "list":
            return list_command(args[1:])
        if args and args[0] == "replay":
            return replay_command(args[1:])
        return check_command(args)
    except (SpecError, ReplayFileError, export.ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE
    except (ModelError, CompileError) as e:
        print(f"error: model: {e}", file=sys.stderr)
        return USAGE
    except SolverUnknown as e:
        print(f"error: {e}", file=sys.stderr)
        return UNKNOWN


# -- check ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m checker",
        description="Explore every interleaving of a small KVM MMU scenario and check its "
        "invariants. Subcommands: `list` (specs, components, guards, invariants, actions), "
        "`replay FILE.json` (does a saved counterexample still reproduce?).",
    )
    p.add_argument("--spec", metavar="FILE", help="scenario TOML (default: the embedded attributes-default)")
    p.add_argument("--depth", type=int, metavar="N", help="explore at most N steps from the initial state")
    p.add_argument("--invariant", action="append", metavar="NAME", help="check only this invariant (repeatable)")
    p.add_argument("--guard", action="append", default=[], metavar="NAME=off|on",
                   help="switch a guard off or on (repeatable)")
    p.add_argument("--max-states", type=int, metavar="N", help="stop after N distinct states")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--export", metavar="DIR", help="write the counterexample to DIR/<spec>.<ext>")
    p.add_argument("--format", default="text",
                   help=f"export formats, comma-separated (default: text): {', '.join(export.FORMATS)}; "
                   "dot also renders svg when Graphviz is installed")
    p.add_argument("--neighbourhood", "--neighborhood", type=int, metavar="K",
                   help="put into the trace graph (dot, graphml, svg) every other choice at each state "
                   "of the trace, followed for K steps")
    p.add_argument("--all-violations", action="store_true",
                   help="keep searching after the first violation: the shortest counterexample for "
                   "each violated invariant, exported as DIR/<spec>.<invariant>.<ext>")
    p.add_argument("--ignore-expected", action="store_true",
                   help="check the scenario plainly: any violation exits 1")
    p.add_argument("--engine", choices=["explicit"], default="explicit", help="search engine")
    p.add_argument("--check-deadlock", action="store_true", help="report states with no enabled action")
    p.add_argument("--witness", action="append", default=[], metavar="NAME",
                   help="also print the shortest trace reaching this SOMETIMES witness")
    p.add_argument("--timing", action="store_true", help="print build, compile and search times")
    return p


@dataclass
class Run:
    spec: Spec
    model: Model
    bounds: list[Bound]
    result: SearchResult
    compiled: object
    context: Context
    expectations_apply: bool
    lassos: list[Lasso]
    progress_checked: bool


def check_command(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 0:
        parser.error("--depth must be >= 0")
    if args.max_states is not None and args.max_states < 1:
        parser.error("--max-states must be >= 1")
    if args.time_limit is not None and args.time_limit <= 0:
        parser.error("--time-limit must be > 0")
    formats = _formats(parser, args)
    guards = _guard_overrides(parser, args.guard)

    t0 = time.perf_counter()
    spec = load(args.spec) if args.spec else default_spec()
    model = spec.build(guards)
    bounds = spec.bound_invariants(model, tuple(args.invariant) if args.invariant else None)
    for warning in vacuous(model, bounds):
        print(f"warning: {warning}", file=sys.stderr)
    t1 = time.perf_counter()
    compiled = compile_model(model)
    t2 = time.perf_counter()
    depth = args.depth if args.depth is not None else spec.depth
    budget = Budget(depth=depth, max_states=args.max_states, time_limit=args.time_limit)
    with _Progress() as progress:
        search = ExplicitSearch(compiled, bounds, budget, args.check_deadlock or spec.check_deadlock, progress,
                                all_violations=args.all_violations)
        result = search.run()
    t3 = time.perf_counter()
    progress_bounds = [b for b in bounds if b.kind is Kind.PROGRESS]
    checked = bool(progress_bounds) and result.complete
    lassos = find_lassos(compiled, result, progress_bounds) if checked else []
    t4 = time.perf_counter()
    context = Context(spec.source, _reproduce(args), spec.name, spec.text, guards)
    applies = (spec.expect is not None and not args.ignore_expected and not args.guard and not args.invariant
               and not args.all_violations)
    run = Run(spec, model, bounds, result, compiled, context, applies, lassos, checked)

    print(f"spec: {spec.name} (components: {', '.join(model.parts)}; "
          f"guards off: {', '.join(model.guards_off()) or 'none'})")
    for hit in result.violations:
        print(f"violation: {hit.bound.name} after {hit.depth} steps")
    shown = result.violations if args.all_violations else [h for h in [_primary(run)] if h is not None]
    for hit in shown:
        trace = rebuild(compiled, result, hit.depth, hit.index)
        ctx = context
        if args.all_violations:
            ctx = replace(context, command=_reproduce(args, hit.bound.name))
        print()
        print(report.counterexample_text(trace, hit.bound, ctx), end="")
        print()
        if args.export:
            name = f"{spec.name}.{hit.bound.name}" if args.all_violations else spec.name
            _export(args, formats, name, compiled, trace, hit.bound, ctx)
    for lasso in lassos:
        print(f"cycle: {lasso.bound.name}: {lasso.who} waits forever after {len(lasso.prefix)} steps, "
              f"in a cycle of {len(lasso.cycle)}")
    if not shown and lassos:
        lasso = _primary_lasso(run)
        trace = rebuild_lasso(compiled, lasso)
        print()
        print(report.lasso_text(trace, lasso, context), end="")
        print()
        if args.export:
            _export(args, formats, spec.name, compiled, trace, lasso.bound, context, lasso)
    elif not shown and args.export:
        print("nothing to export: no counterexample")
    if progress_bounds and not checked:
        print(f"progress: not checked ({', '.join(b.name for b in progress_bounds)}): "
              "it needs a complete search")
    if result.deadlock is not None:
        d, i = result.deadlock
        print(f"deadlock: a state with no enabled action after {d} steps")
        trace = rebuild(compiled, result, d, i)
        print("\n".join(steps_lines(trace)))
    _print_witnesses(run, args.witness)
    if args.all_violations:
        broken = ", ".join(f"{h.bound.name} ({h.depth} steps)" for h in result.violations) or "none"
        print(f"violated ({len(result.violations)} of {len(search.always)} invariants): {broken}")
    print(report.summary_line(result))
    if args.timing:
        rate = result.distinct / result.seconds if result.seconds else 0.0
        print(f"time: load+build={t1 - t0:.2f}s compile={t2 - t1:.2f}s search={result.seconds:.2f}s "
              f"distinct_per_s={rate:.0f}" + (f" progress={t4 - t3:.2f}s" if checked else ""))
    return _verdict(run)


def _formats(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    formats = list(dict.fromkeys(f.strip() for f in args.format.split(",") if f.strip()))
    for f in formats:
        if f not in export.FORMATS:
            parser.error(f"--format: unknown format {f!r}; formats: {', '.join(export.FORMATS)}")
    if "svg" in formats and export.graphviz() is None:
        parser.error(f"--format svg: {export.GRAPHVIZ_HINT}")
    if args.neighbourhood is not None:
        if args.neighbourhood < 0:
            parser.error("--neighbourhood must be >= 0")
        if not {"dot", "graphml", "svg"} & set(formats) or not args.export:
            parser.error("--neighbourhood shapes the trace graph: give --export DIR and a format "
                         "among dot, graphml, svg")
    return formats


def _export(args: argparse.Namespace, formats: list[str], name: str, compiled: Compiled, trace: Trace,
            bound: Bound, context: Context, lasso: Lasso | None = None) -> None:
    around = explore_around(compiled, trace, args.neighbourhood) if args.neighbourhood else None
    wanted = list(formats)
    if "dot" in wanted and "svg" not in wanted:
        if export.graphviz() is not None:
            wanted.append("svg")
        else:
            print(f"note: {name}.svg not written: {export.GRAPHVIZ_HINT}")
    for path in export.write(Path(args.export), name, wanted, trace, bound, context, lasso, around):
        print(f"wrote {path}")


def _guard_overrides(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for item in items:
        name, sep, state = item.partition("=")
        if not sep or state not in ("off", "on") or not name:
            parser.error(f"--guard {item!r}: write NAME=off or NAME=on")
        out[name] = state == "on"
    return out


def _reproduce(args: argparse.Namespace, invariant: str | None = None) -> str:
    parts = ["python", "-m", "checker"]
    if args.spec:
        parts += ["--spec", args.spec]
    for g in args.guard:
        parts += ["--guard", g]
    for i in [invariant] if invariant else args.invariant or []:
        parts += ["--invariant", i]
    if args.depth is not None:
        parts += ["--depth", str(args.depth)]
    return " ".join(shlex.quote(p) for p in parts)


def _primary(run: Run):  # type: ignore[no-untyped-def]
    hits = run.result.violations
    if not hits:
        return None
    expected = run.spec.expect.invariant if run.spec.expect else None
    return next((h for h in hits if h.bound.name == expected), hits[0])


def _primary_lasso(run: Run) -> Lasso:
    expected = run.spec.expect.invariant if run.spec.expect else None
    return next((c for c in run.lassos if c.bound.name == expected), run.lassos[0])


def _print_witnesses(run: Run, show: list[str]) -> None:
    known = {b.name: b for b in run.bounds if b.kind is Kind.SOMETIMES}
    for name in show:
        if name not in known:
            raise SpecError(run.spec.source, "--witness", f"unknown witness {name!r}", ", ".join(known))
    for name, hit in run.result.witnesses.items():
        if hit is None:
            where = "not reached" if run.result.complete else "not reached (search incomplete)"
            print(f"witness {name}: {where}")
            continue
        print(f"witness {name}: reached after {hit.depth} steps")
        if name in show:
            trace = rebuild(run.compiled, run.result, hit.depth, hit.index)  # type: ignore[arg-type]
            print(report.witness_text(trace, hit.bound, run.context))


def _verdict(run: Run) -> int:
    r = run.result
    if r.stop == "depth":
        print(f"stopped: depth bound {r.depth} reached; the search is not exhaustive")
    if r.stop in ("max-states", "time-limit"):
        print(f"stopped: {r.stop} budget reached before the depth bound")
        return BUDGET
    if not run.expectations_apply:
        return VIOLATION if (r.violations or r.deadlock or run.lassos) else OK
    assert run.spec.expect is not None
    unmet = unmet_expectations(run.spec, r, run.lassos, run.progress_checked)
    want = _describe(run.spec)
    if unmet:
        print(f"expected: {want}: NOT met")
        for u in unmet:
            print(f"  - {u}")
        return VIOLATION
    print(f"expected: {want}: met")
    return OK


def _describe(spec: Spec) -> str:
    e = spec.expect
    assert e is not None
    if e.result == "pass":
        return "pass" + (" (exhaustive)" if e.complete else "")
    within = f" within {e.within} steps" if e.within is not None else ""
    if e.result == "cycle":
        return f"no-progress cycle breaking {e.invariant}{within}"
    return f"violation of {e.invariant}{within}"


def unmet_expectations(
    spec: Spec, r: SearchResult, lassos: list[Lasso] | None = None, progress_checked: bool = False
) -> list[str]:
    """What the search result (and its no-progress cycles) fails to meet in the spec's [expect] table."""
    e = spec.expect
    assert e is not None
    unmet: list[str] = []
    names = [h.bound.name for h in r.violations]
    cycles = {c.bound.name: c for c in lassos or []}
    if e.result == "pass":
        if names:
            unmet.append(f"violated: {', '.join(names)}")
        if cycles:
            unmet.append(f"no-progress cycle: {', '.join(cycles)}")
        if r.deadlock is not None:
            unmet.append("deadlock found")
        if e.complete and not r.complete:
            unmet.append(f"search incomplete (stopped: {r.stop})")
    elif e.result == "cycle":
        if names:
            unmet.append(f"violated: {', '.join(names)}")
        if not progress_checked:
            unmet.append(f"progress not checked: search incomplete (stopped: {r.stop})")
        elif e.invariant not in cycles:
            unmet.append(f"no cycle breaks {e.invariant}")
        elif e.within is not None and cycles[e.invariant].steps > e.within:
            unmet.append(f"the lasso has {cycles[e.invariant].steps} steps, more than {e.within}")
    else:
        if e.invariant not in names:
            unmet.append(f"{e.invariant} not violated" + (f" (violated instead: {', '.join(names)})" if names else ""))
        else:
            depth = next(h.depth for h in r.violations if h.bound.name == e.invariant)
            if e.within is not None and depth > e.within:
                unmet.append(f"shortest counterexample has {depth} steps, more than {e.within}")
    if e.distinct is not None and r.distinct != e.distinct:
        unmet.append(f"distinct states: {r.distinct}, pinned {e.distinct}")
    if e.depth is not None and r.depth != e.depth:
        unmet.append(f"depth: {r.depth}, pinned {e.depth}")
    for w in e.witnesses:
        if r.witnesses.get(w) is None:
            unmet.append(f"witness {w} not reached")
    return unmet


class _Progress:
    """A one-line progress display on a terminal, shown once a run passes one second."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __enter__(self) -> _Progress:
        return self

    def __call__(self, depth: int, distinct: int, generated: int, seconds: float) -> None:
        if not self.enabled or seconds < 1.0:
            return
        rate = distinct / seconds
        sys.stderr.write(f"\rdepth {depth}  distinct {distinct:,}  generated {generated:,}  {rate:,.0f}/s ")
        sys.stderr.flush()
        self.shown = True

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


# -- replay ---------------------------------------------------------------------------


def replay_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m checker replay",
        description="Replay a counterexample saved with --export DIR --format json against the current "
        "model, step by step. Exit 1: it still reproduces; 0: it no longer does (the first step that "
        "no longer applies is named, with the part of its guard that fails); 2: bad file or usage.",
    )
    p.add_argument("file", metavar="FILE.json")
    p.add_argument("--spec", metavar="FILE", help="replay against this scenario's model instead of the one "
                   "saved in the file")
    p.add_argument("--guard", action="append", default=[], metavar="NAME=off|on",
                   help="switch a guard off or on (repeatable), e.g. the fix back on")
    args = p.parse_args(argv)
    guards = _guard_overrides(p, args.guard)
    doc = load_document(args.file)
    spec = load(args.spec) if args.spec else None
    result = replay_document(doc, args.file, spec, guards)
    print("\n".join(report_lines(result, args.file)))
    return VIOLATION if result.reproduces else OK


# -- list -----------------------------------------------------------------------------

LISTABLE = ("specs", "components", "guards", "invariants", "actions")


def list_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m checker list",
                                description="List the specs, components, guards, invariants or actions.")
    p.add_argument("what", choices=LISTABLE)
    p.add_argument("--spec", metavar="FILE", help="the scenario whose model to list (default: embedded)")
    p.add_argument("--specs-dir", default="specs", help="where `list specs` looks (default: specs)")
    args = p.parse_args(argv)
    if args.what == "specs":
        directory = Path(args.specs_dir)
        if not directory.is_dir():
            print(f"error: {directory}: no such directory (run from the repository root or give --specs-dir)",
                  file=sys.stderr)
            return USAGE
        for path in sorted(directory.glob("*.toml")):
            spec = load(path)
            e = spec.expect
            expect = "-" if e is None else (e.result if e.result == "pass" else f"{e.result} {e.invariant}")
            print(f"{path.name:<60} {expect}")
        return OK
    if args.what == "components":
        from model.mmu import COMPONENTS

        for name, cls in COMPONENTS.items():
            print(f"{name}: {cls.summary}")
            for o in cls.options:
                print(f"  {o.name} = {o.default!r}: {o.doc}")
        return OK
    spec = load(args.spec) if args.spec else default_spec()
    model = spec.build()
    if args.what == "guards":
        for g in model.guards.values():
            state = "on" if g.enabled else "off"
            print(f"{g.name} ({g.component}, {state}): {g.summary} [{g.reference}]")
    elif args.what == "invariants":
        for i in applicable(CATALOGUE, model):
            print(f"{i.name} ({i.kind.value}): {i.statement} [{i.reference}]")
        for f in model.facts:
            print(f"{f.name} (ALWAYS, model fact): {f.statement}")
    else:
        for a in model.actions:
            print(f"{a.actor:<8} {a.key}  [{a.kernel}]")
    return OK
