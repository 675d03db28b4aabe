"""The command line (`python -m checker`, `kvm-mmu-checker`): check a scenario, replay a counterexample,
list what a model has.

The exit code is the answer (errors.EXIT_CODES, printed by --help): 0 expectations met;
1 a violation or an expectation not met; 2 bad usage or bad input; 3 stopped by a budget;
4 z3 answered unknown; 5 an internal error; 6 a system error (memory, disk); 130 and 143
interrupted by SIGINT or SIGTERM. `main()` is the one place that turns an exception into
an exit code: a crash never exits 0 or 1, and never shows a traceback unless asked
(--debug, or KVM_MMU_CHECKER_DEBUG=1).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata, resources
from pathlib import Path
from typing import NoReturn

from invariants import Bound, Kind, applicable
from model.lang import Model, ModelError, SolverUnknown
from model.mmu import profiles

from . import coverage, diffparse, export, interrupts, models, patchmap, report, specindex
from .against import Side, differences, run_side, table
from .budget import Budget, Deadline, valid_time_limit
from .compile import Compiled, CompileError, compile_model
from .diagram import steps_lines, wrap
from .document import Context, kernel_location
from .errors import (
    BUDGET,
    EXIT_CODES,
    INTERNAL,
    INTERRUPTED,
    OK,
    SYSTEM,
    TERMINATED,
    UNKNOWN,
    USAGE,
    VIOLATION,
    BudgetExceeded,
    CheckerError,
    Terminated,
    UsageError,
)
from .explicit import ExplicitSearch, SearchResult
from .export import explore_around
from .extensions import load as load_extension
from .files import check_output_dir, read_text, write_all
from .meter import Meter, peak_rss_bytes, size_text
from .progress import Lasso, find_lassos, full_space
from .replay import load_document, replay_document, report_lines, scenario_spec
from .sanity import vacuous
from .spec import SHIPPED, Spec, SpecError, find, from_text, load_profile, read
from .symmetry import Reduction, wanted
from .text import printable
from .trace import Trace, rebuild, rebuild_lasso

DEFAULT_SPEC = "attributes-default"
DEBUG_ENV = "KVM_MMU_CHECKER_DEBUG"
MESSAGE_LIMIT = 2000  # characters of one error message


def default_spec() -> Spec:
    text = resources.files("checker").joinpath("scenarios", f"{DEFAULT_SPEC}.toml").read_text("utf-8")
    spec = from_text(text, "<default>", DEFAULT_SPEC)
    spec.build()
    return spec


def version() -> str:
    try:
        return metadata.version("kvm-mmu-checker")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


# -- the entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """Run the command line `argv`; return its exit code, whatever happens. A time limit
    counts from `started` (the program's start, imports included), or from now."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    interrupts.reset()  # main() may run more than once in a process (tests)
    try:
        if args and args[0] == "list":
            return list_command(args[1:])
        if args and args[0] == "replay":
            return replay_command(args[1:])
        if args and args[0] == "map":
            return map_command(args[1:])
        if args and args[0] == "index":
            return index_command(args[1:])
        return check_command(args, started)
    except BaseException as e:  # the one place an exception becomes an exit code
        return _exit_code(e, debug)


def _exit_code(e: BaseException, debug: bool) -> int:
    stop = interrupts.requested()
    if isinstance(e, Terminated) or stop == signal.SIGTERM:
        return _fail(TERMINATED, "terminated", prefix="")
    if isinstance(e, KeyboardInterrupt) or stop == signal.SIGINT:
        return _fail(INTERRUPTED, "interrupted", prefix="")
    if isinstance(e, SystemExit):  # --help and --version end here
        return e.code if isinstance(e.code, int) else OK
    if isinstance(e, BudgetExceeded):
        _flush_quietly()
        print(f"stopped: {e}")
        return BUDGET
    if isinstance(e, CheckerError):
        return _fail(e.exit_code, str(e))
    if isinstance(e, (ModelError, CompileError)):
        return _fail(USAGE, f"model: {e}")
    if isinstance(e, SolverUnknown):
        return _fail(UNKNOWN, str(e))
    if isinstance(e, MemoryError):
        return _fail(SYSTEM, "system error: out of memory; bound the run with --max-states", prefix="", debug=debug)
    if isinstance(e, OSError):
        where = f" ({printable(e.filename)})" if isinstance(e.filename, str) else ""
        return _fail(SYSTEM, f"system error: {e.strerror or e}{where}", prefix="", debug=debug)
    if not isinstance(e, Exception):  # GeneratorExit and the like: not ours to swallow
        raise e
    hint = "" if debug else " (run again with --debug for the traceback)"
    return _fail(INTERNAL, f"internal error: {_describe_exception(e)}{hint}; this is a bug in the checker",
                 prefix="", debug=debug)


def _describe_exception(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:
        text = ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _fail(code: int, message: str, prefix: str = "error: ", debug: bool = False) -> int:
    _flush_quietly()
    if debug:
        traceback.print_exc(file=sys.stderr)
    text = printable(message)
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT // 2] + f" ... ({len(text) - MESSAGE_LIMIT} characters cut) ... " + \
            text[-MESSAGE_LIMIT // 2:]
    print(prefix + text, file=sys.stderr)
    return code


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised (exit 2 through main) instead of an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _nonnegative(text: str) -> int:
    return _integer(text, 0)


def _positive(text: str) -> int:
    return _integer(text, 1)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{printable(text)[:40]!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is not an integer >= {minimum}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{printable(text)[:40]!r} is not a number of seconds") from None
    if not valid_time_limit(value):
        raise argparse.ArgumentTypeError(f"{printable(text)[:40]!r} is not a finite number of seconds > 0")
    return value


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name")
    return text


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)
    return f"exit codes:\n{codes}\n\n--debug (or {DEBUG_ENV}=1) prints the traceback of an internal error."


# -- check ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m checker",
        description="Explore every interleaving of a small KVM MMU scenario and check its "
        "invariants. Subcommands: `list` (specs, components, guards, invariants, actions), "
        "`replay FILE.json` (does a saved counterexample still reproduce?), `map PATCH` (what of the "
        "model a kernel patch touches), `index` (rewrite the shipped specs' coverage index).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"kvm-mmu-checker {version()}")
    p.add_argument("--spec", metavar="FILE|NAME",
                   help="scenario TOML, or a shipped spec's name (`list specs`); default: the embedded "
                   f"{DEFAULT_SPEC}")
    p.add_argument("--model", metavar="FILE.py",
                   help="check a model file instead of a spec: it defines build() -> Model and may define "
                   "PROPERTIES, DEPTH and EXPECT (README: Write your own model)")
    p.add_argument("--extension", action="append", default=[], metavar="FILE.py",
                   help="load a patch extension (a Python file defining a model.lang.Extension) after the "
                        "spec's own; repeatable")
    p.add_argument("--without-extensions", action="store_true",
                   help="load none of the spec's extensions: the scenario on the kernel without its patches")
    p.add_argument("--profile", type=_name, metavar="NAME|FILE",
                   help="check the scenario under this kernel profile instead of the spec's "
                   "(python -m checker list profiles)")
    p.add_argument("--against", type=_name, metavar="NAME|FILE",
                   help="check the scenario under this profile too, and print every verdict that differs")
    p.add_argument("--depth", type=_nonnegative, metavar="N", help="explore at most N steps from the initial state")
    p.add_argument("--invariant", action="append", type=_name, metavar="NAME",
                   help="check only this invariant (repeatable)")
    p.add_argument("--guard", action="append", default=[], metavar="NAME=off|on",
                   help="switch a guard off or on (repeatable)")
    p.add_argument("--max-states", type=_positive, metavar="N",
                   help="store at most N distinct states (the search, then a trace's neighbourhood); "
                   "stops with exit 3")
    p.add_argument("--time-limit", type=_seconds, metavar="SECONDS",
                   help="stop (exit 3) after this long, counted from the start: build, search, "
                   "progress check, neighbourhood and export included")
    p.add_argument("--export", metavar="DIR", help="write the counterexample to DIR/<spec>.<ext>")
    p.add_argument("--format", default="text",
                   help=f"export formats, comma-separated (default: text): {', '.join(export.FORMATS)}; "
                   "dot also renders svg when Graphviz is installed")
    p.add_argument("--neighbourhood", "--neighborhood", type=_nonnegative, metavar="K",
                   help="put into the trace graph (dot, graphml, svg) every other choice at each state "
                   "of the trace, followed for K steps (bounded by --max-states and --time-limit)")
    p.add_argument("--all-violations", action="store_true",
                   help="keep searching after the first violation: the shortest counterexample for "
                   "each violated invariant, exported as DIR/<spec>.<invariant>.<ext>")
    p.add_argument("--ignore-expected", action="store_true",
                   help="check the scenario plainly: any violation exits 1")
    p.add_argument("--engine", choices=["explicit"], default="explicit", help="search engine")
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="expand each level on N threads (default 1); the results are the same "
                   "whatever N, state for state")
    p.add_argument("--symmetry", action="store_true",
                   help="store one state per orbit of the interchangeable vCPUs (what the model declares "
                   "symmetric), after proving the model and the checked properties symmetric; verdicts, "
                   "counterexample lengths and the distinct count are those of the full space")
    p.add_argument("--check-deadlock", action="store_true", help="report states with no enabled action")
    p.add_argument("--witness", action="append", default=[], type=_name, metavar="NAME",
                   help="also print the shortest trace reaching this SOMETIMES witness")
    p.add_argument("--coverage", action="store_true",
                   help="after the run, print which actions the explored states enabled and which new "
                   "states each produced, the actions never enabled, and the values each field reached; "
                   "with --export DIR also write DIR/<spec>.coverage.json")
    p.add_argument("--timing", action="store_true",
                   help="print build, compile and search times, and the peak memory")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    return p


@dataclass
class Run:
    spec: Spec
    model: Model
    bounds: list[Bound]
    result: SearchResult
    compiled: Compiled
    context: Context
    expectations_apply: bool
    lassos: list[Lasso]
    progress_checked: bool


def load_spec(name: str | None, profile: str | None = None, extensions: Sequence[str] = (),
              without: bool = False) -> Spec:
    """The spec `--spec` names (a file or a shipped spec's bare name), or the default, under
    `profile` (--profile) if given, with `extensions` (--extension) loaded after its own
    (or, `without`, instead of them)."""
    spec = default_spec() if name is None else read(find(name))
    spec = (spec.without_extensions() if without else spec).with_extensions(extensions)
    return spec.with_profile(profile) if profile is not None else spec


def check_command(argv: list[str], started: float | None = None) -> int:
    args = _parser().parse_args(argv)
    budget = Budget(max_states=args.max_states, time_limit=args.time_limit)
    if started is not None:
        budget.started = started
    formats = _formats(args)
    guards = _guard_overrides(args.guard)
    out_dir = check_output_dir(args.export) if args.export is not None else None
    if args.model is not None:
        models.check_args(args)
    if args.spec is not None:
        find(args.spec)  # an empty name is a usage error before anything else

    if args.against is not None:
        return against_command(args, budget, guards, formats, out_dir)
    with Deadline(budget) as deadline:
        deadline.phase("reading the spec")
        spec = models.load(args.model) if args.model is not None else \
            load_spec(args.spec, args.profile, args.extension, args.without_extensions)
        deadline.phase("building the model")
        model = spec.build(guards)
        bounds = spec.bound_invariants(model, tuple(args.invariant) if args.invariant else None)
        _check_witnesses(spec, bounds, args.witness)
        for warning in vacuous(model, bounds):
            print(f"warning: {warning}", file=sys.stderr)
        t1 = budget.elapsed()
        deadline.phase("compiling the model")
        compiled = compile_model(model)
        reduced = _reduction(args, spec, model, bounds, deadline)
        t2 = budget.elapsed()
        budget.depth = args.depth if args.depth is not None else spec.depth
        deadline.phase("searching")
        deadlocks = args.check_deadlock or spec.check_deadlock
        with Meter(spec.name, budget) as meter:
            search = ExplicitSearch(compiled, bounds, budget, deadlocks, meter.tick,
                                    all_violations=args.all_violations, coverage=args.coverage,
                                    workers=args.workers, reduction=reduced)
            result = search.run()
        progress_bounds = [b for b in bounds if b.kind is Kind.PROGRESS]
        checked = bool(progress_bounds) and result.complete and spec.check_progress
        t3 = budget.elapsed()
        graph = result
        if checked and reduced is not None:
            deadline.phase("searching the full space for the progress check")
            graph = full_space(compiled, result, bounds, budget, deadlocks, args.workers)
            checked = graph.complete
        if checked:
            deadline.phase("checking progress (no-progress cycles)")
        lassos = find_lassos(compiled, graph, progress_bounds) if checked else []
        t4 = budget.elapsed()
        context = Context(spec.source if args.spec is None else args.spec, _reproduce(args), spec.name, spec.text,
                          guards, _carried(spec), spec.document() if isinstance(spec, models.ModelFile) else None)
        applies = (spec.expectation_applies and not args.ignore_expected and not args.guard and not args.invariant
                   and not args.all_violations and not args.extension and not args.without_extensions)
        run = Run(spec, model, bounds, result, compiled, context, applies, lassos, checked)
        _report(run, args, formats, out_dir, search, deadline, budget)
        if args.timing:
            rate = result.distinct / result.seconds if result.seconds else 0.0
            print(f"time: load+build={t1:.2f}s compile={t2 - t1:.2f}s search={result.seconds:.2f}s "
                  f"distinct_per_s={rate:.0f}" + (f" progress={t4 - t3:.2f}s" if checked else "")
                  + f" total={budget.elapsed():.2f}s peak_rss={size_text(peak_rss_bytes())}")
        code = _verdict(run)
        if args.coverage and result.stop == "time-limit":
            print("coverage: not computed: the time limit ran out in the search")
        elif args.coverage:
            _coverage(run, out_dir, deadline)
        return code


def _reduction(args: argparse.Namespace, spec: Spec, model: Model, bounds: list[Bound],
               deadline: Deadline) -> Reduction | None:
    """With --symmetry (or the spec's `symmetry = true`): the model's symmetry group, proved
    for the model and every property checked; None without, when it declares none, or
    with --coverage, which counts every state of the full space."""
    asked = args.symmetry or spec.symmetry
    if asked and args.coverage and model.symmetric:
        print("symmetry: not used: --coverage counts every state of the full space")
        return None
    if asked:
        deadline.phase("proving the symmetry")
    return wanted(model, bounds, asked)


def against_command(args: argparse.Namespace, budget: Budget, guards: dict[str, bool], formats: list[str],
                    out_dir: Path | None) -> int:
    """--against: the scenario under its profile and under another; every verdict that
    differs, side by side. Exit 0: nothing differs; 1: something does."""
    if args.all_violations or args.neighbourhood or args.witness:
        raise UsageError("--against compares every property already; --all-violations, --neighbourhood and "
                         "--witness do not apply")
    if args.coverage:
        raise UsageError("--coverage reports one search and --against runs two: run --coverage under each "
                         "profile in turn (--profile NAME)")
    with Deadline(budget) as deadline:
        deadline.phase("reading the spec")
        first = load_spec(args.spec, args.profile, args.extension, args.without_extensions)
        # the extensions stand for a patch on the spec's kernel: the other side is without it
        second = first.with_profile(args.against, "--against").without_extensions()
        budget.depth = args.depth if args.depth is not None else first.depth
        sides = []
        for spec in (first, second):
            deadline.phase(f"checking under {spec.label}")
            side = run_side(spec, guards, args.invariant, budget, args.check_deadlock or spec.check_deadlock,
                            args.symmetry)
            sides.append(side)
            r = side.result
            print(f"{spec.label}: {spec.profile.kernel}: distinct={r.distinct} depth={r.depth} "
                  f"complete={'yes' if r.complete else 'no'}")
        a, b = sides
        rows = differences(a, b)
        label = f"spec {printable(first.name)}: {a.spec.label} against {b.spec.label}"
        if not rows:
            print(f"{label}: every verdict is the same ({len(a.verdicts)} properties)")
        else:
            print(f"{label}: {len(rows)} of {len(set(a.verdicts) | set(b.verdicts))} verdicts differ")
            print("\n".join(table(a, b, rows)))
        if out_dir is not None and rows:
            deadline.phase("exporting")
            for side in sides:
                _export_side(args, side, {n for n, *_ in rows}, formats, out_dir, guards, deadline, budget)
        stopped = [s.result.stop for s in sides if s.result.stop in ("max-states", "time-limit")]
        if stopped:  # a comparison of cut searches is no answer either way
            print(f"stopped: {stopped[0]} budget reached before the searches ended; the verdicts are partial")
            return BUDGET
        return VIOLATION if rows else OK


def _export_side(args: argparse.Namespace, side: Side, names: set[str], formats: list[str], out_dir: Path,
                 guards: dict[str, bool], deadline: Deadline, budget: Budget) -> None:
    """The counterexamples of one profile's run for the properties whose verdicts differ,
    as DIR/<spec>@<profile>.<property>.<ext>."""
    spec, profile = side.spec, side.spec.profile.name
    patched = bool(spec.extensions)
    under = argparse.Namespace(**{**vars(args), "profile": profile, "extension": args.extension if patched else [],
                                  "without_extensions": args.without_extensions or not patched})
    found = [(h.bound, rebuild(side.compiled, side.result, h.depth, h.index), None) for h in side.result.violations
             if h.bound.name in names]
    found += [(lasso.bound, rebuild_lasso(side.compiled, lasso), lasso) for lasso in side.lassos
              if lasso.bound.name in names]
    for bound, trace, lasso in found:
        context = Context(spec.source if args.spec is None else args.spec, _reproduce(under, bound.name),
                          spec.name, spec.text, guards, _carried(spec))
        side_name = profile + "".join(f"+{c.name}" for c in spec.extension_classes)
        _export(args, out_dir, formats, f"{spec.name}@{side_name}.{bound.name}", side.compiled, trace, bound,
                context, deadline, budget, lasso)


def _report(run: Run, args: argparse.Namespace, formats: list[str], out_dir: Path | None,
            search: ExplicitSearch, deadline: Deadline, budget: Budget) -> None:
    """Everything the run prints after the search, and its exports."""
    spec, model, result, compiled, context = run.spec, run.model, run.result, run.compiled, run.context
    print(spec.header(model) if isinstance(spec, models.ModelFile) else
          f"spec: {printable(spec.name)} (profile: {printable(spec.label)}; components: "
          f"{', '.join(model.parts)}; "
          f"guards off: {', '.join(model.guards_off()) or 'none'})")
    for hit in result.violations:
        print(f"violation: {hit.bound.name} after {hit.depth} steps")
    shown = result.violations if args.all_violations else [h for h in [_primary(run)] if h is not None]
    for hit in shown:
        deadline.phase("rebuilding the counterexample")
        trace = rebuild(compiled, result, hit.depth, hit.index)
        ctx = context
        if args.all_violations:
            ctx = replace(context, command=_reproduce(args, hit.bound.name))
        print()
        print(report.counterexample_text(trace, hit.bound, ctx), end="")
        print()
        if out_dir is not None:
            name = f"{spec.name}.{hit.bound.name}" if args.all_violations else spec.name
            _export(args, out_dir, formats, name, compiled, trace, hit.bound, ctx, deadline, budget)
    for lasso in run.lassos:
        print(f"cycle: {lasso.bound.name}: {lasso.who} waits forever after {len(lasso.prefix)} steps, "
              f"in a cycle of {len(lasso.cycle)}")
    if not shown and run.lassos:
        lasso = _primary_lasso(run)
        deadline.phase("rebuilding the counterexample")
        trace = rebuild_lasso(compiled, lasso)
        print()
        print(report.lasso_text(trace, lasso, context), end="")
        print()
        if out_dir is not None:
            _export(args, out_dir, formats, spec.name, compiled, trace, lasso.bound, context, deadline, budget,
                    lasso)
    elif not shown and out_dir is not None:
        print("no counterexample to export; only the coverage is written" if args.coverage
              else "nothing to export: no counterexample")
    progress_bounds = [b for b in run.bounds if b.kind is Kind.PROGRESS]
    if progress_bounds and not run.progress_checked:
        why = "the spec says check_progress = false" if not run.spec.check_progress else "it needs a complete search"
        print(f"progress: not checked ({', '.join(b.name for b in progress_bounds)}): {why}")
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


def _coverage(run: Run, out_dir: Path | None, deadline: Deadline) -> None:
    """--coverage: the coverage of the run's search, printed, and with --export written
    as DIR/<spec>.coverage.json (whole or not at all)."""
    deadline.phase("computing coverage")
    cov = coverage.compute(run.result, run.model, run.spec.name)
    print()
    print("\n".join(cov.text_lines()))
    if out_dir is not None:
        deadline.phase("exporting coverage")
        for path in write_all(out_dir, {f"{run.spec.name}.coverage.json": coverage.to_json(cov)}):
            print(f"wrote {printable(str(path))}")


def _formats(args: argparse.Namespace) -> list[str]:
    parts = [f.strip() for f in args.format.split(",")]
    formats = list(dict.fromkeys(f for f in parts if f))
    if not formats or any(not f for f in parts):
        raise UsageError(f"--format {printable(args.format)!r}: an empty format; give one or more of "
                         f"{', '.join(export.FORMATS)}, comma-separated")
    for f in formats:
        if f not in export.FORMATS:
            raise UsageError(f"--format: unknown format {printable(f)[:40]!r}; formats: {', '.join(export.FORMATS)}")
    if "svg" in formats and export.graphviz() is None:
        raise UsageError(f"--format svg: {export.GRAPHVIZ_HINT}")
    if args.format != "text" and args.export is None:
        raise UsageError("--format chooses what --export writes: give --export DIR")
    if args.neighbourhood is not None and (not {"dot", "graphml", "svg"} & set(formats) or args.export is None):
        raise UsageError("--neighbourhood shapes the trace graph: give --export DIR and a format "
                         "among dot, graphml, svg")
    return formats


def _export(args: argparse.Namespace, out_dir: Path, formats: list[str], name: str, compiled: Compiled,
            trace: Trace, bound: Bound, context: Context, deadline: Deadline, budget: Budget,
            lasso: Lasso | None = None) -> None:
    around = None
    if args.neighbourhood:
        deadline.phase("exploring the neighbourhood")
        with Meter(name, budget) as meter:
            around = explore_around(compiled, trace, args.neighbourhood, budget,
                                    lambda k, states, edges: meter.note(
                                        f"neighbourhood step {k} of {args.neighbourhood}: {states:,} states, "
                                        f"{edges:,} steps", states))
    wanted = list(formats)
    if "dot" in wanted and "svg" not in wanted:
        if export.graphviz() is not None:
            wanted.append("svg")
        else:
            print(f"note: {printable(name)}.svg not written: {export.GRAPHVIZ_HINT}")
    deadline.phase("exporting")
    for path in export.write(out_dir, name, wanted, trace, bound, context, lasso, around):
        print(f"wrote {printable(str(path))}")


def _guard_overrides(items: list[str]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for item in items:
        name, sep, state = item.partition("=")
        if not sep or state not in ("off", "on") or not name:
            raise UsageError(f"--guard {printable(item)[:60]!r}: write NAME=off or NAME=on")
        out[name] = state == "on"
    return out


def _check_witnesses(spec: Spec, bounds: list[Bound], names: list[str]) -> None:
    known = [b.name for b in bounds if b.kind is Kind.SOMETIMES]
    for name in names:
        if name not in known:
            raise SpecError(spec.source, "--witness", f"unknown witness {printable(name)[:40]!r}",
                            ", ".join(known) or "none (this spec checks no witness)")


def _reproduce(args: argparse.Namespace, invariant: str | None = None) -> tuple[str, ...]:
    parts = ["python", "-m", "checker"]
    if args.spec:
        parts += ["--spec", args.spec]
    if args.model:
        parts += ["--model", args.model]
    if args.profile:
        parts += ["--profile", args.profile]
    if args.without_extensions:
        parts += ["--without-extensions"]
    for e in args.extension:
        parts += ["--extension", e]
    for g in args.guard:
        parts += ["--guard", g]
    for i in [invariant] if invariant else args.invariant or []:
        parts += ["--invariant", i]
    if args.depth is not None:
        parts += ["--depth", str(args.depth)]
    if args.symmetry:  # the same search finds the same counterexample
        parts += ["--symmetry"]
    return tuple(parts)


def _carried(spec: Spec) -> tuple[dict[str, str], ...]:
    """The extensions a document carries, so that it replays without their files."""
    return tuple(e.document() for e in spec.extensions)


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
    for name, hit in run.result.witnesses.items():
        if hit is None:
            where = "not reached" if run.result.complete else "not reached (search incomplete)"
            print(f"witness {name}: {where}")
            continue
        print(f"witness {name}: reached after {hit.depth} steps")
        if name in show:
            trace = rebuild(run.compiled, run.result, hit.depth, hit.index)
            print(report.witness_text(trace, hit.bound, run.context))


def _verdict(run: Run) -> int:
    r = run.result
    if r.stop == "depth":
        print(f"stopped: depth bound {r.depth} reached; the search is not exhaustive")
    if r.stop in ("max-states", "time-limit"):
        print(f"stopped: {r.stop} budget reached before the depth bound")
        return BUDGET
    if not run.expectations_apply:
        if run.spec.expect is not None and not run.spec.expectation_applies:
            print(f"expected: nothing under {run.spec.profile_name}: the spec's [expect] is for "
                  f"{', '.join(run.spec.expected_under)}")
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


# -- replay ---------------------------------------------------------------------------


def replay_command(argv: list[str]) -> int:
    p = _Parser(
        prog="python -m checker replay",
        description="Replay a counterexample saved with --export DIR --format json against the current "
        "model, step by step. Exit 1: it still reproduces; 0: it no longer does (the first step that "
        "no longer applies is named, with the part of its guard that fails); 2: bad file or usage.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE.json")
    p.add_argument("--spec", metavar="FILE|NAME", help="replay against this scenario's model instead of the one "
                   "saved in the file")
    p.add_argument("--guard", action="append", default=[], metavar="NAME=off|on",
                   help="switch a guard off or on (repeatable), e.g. the fix back on")
    p.add_argument("--extension", action="append", default=[], metavar="FILE.py",
                   help="replay against the scenario with this patch extension (repeatable) instead of the "
                        "extensions the file carries: e.g. the patch with its fix")
    p.add_argument("--profile", type=_name, metavar="NAME|FILE",
                   help="replay against this kernel profile instead of the one the file was run with")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = p.parse_args(argv)
    guards = _guard_overrides(args.guard)
    spec = load_spec(args.spec, args.profile, args.extension) if args.spec is not None else None
    doc = load_document(args.file)
    if spec is None and (args.profile is not None or args.extension):
        spec = scenario_spec(doc, args.file, args.profile, args.extension or None)
    result = replay_document(doc, args.file, spec, guards)
    print("\n".join(report_lines(result, args.file)))
    return VIOLATION if result.reproduces else OK


# -- map, index -----------------------------------------------------------------------


def map_command(argv: list[str]) -> int:
    p = _Parser(prog="python -m checker map",
                description="Which model actions, guards, variants and shipped specs a kernel patch touches: "
                "for each function its hunks change, what models it, or that nothing does. Exit 0 once the "
                "patch is read; 2: bad file or usage.",
                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("patch", metavar="PATCH", help="a unified diff, or an mbox (git format-patch, b4 am)")
    p.add_argument("--profile", type=_name, metavar="NAME|FILE",
                   help=f"the kernel whose names the patch uses (default: {profiles.DEFAULT})")
    p.add_argument("--extension", action="append", default=[], metavar="FILE.py",
                   help="count the actions of this patch extension too (repeatable)")
    p.add_argument("--index", metavar="FILE", help=f"the specs' coverage index (default: {specindex.INDEX})")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = p.parse_args(argv)
    patches = diffparse.read(read_text(args.patch), args.patch)
    profile = load_profile(args.profile or profiles.DEFAULT, "--profile", "--profile")
    index = specindex.read(Path(args.index) if args.index else specindex.INDEX)
    loaded = [load_extension(e, "--extension", None, "--extension", "--extension") for e in args.extension]
    profile = profile.with_extensions([c for e in loaded for c in e.classes])  # their kernel map too
    print("\n".join(patchmap.report(patchmap.find(patches, profile, index, loaded), profile, index)))
    return OK


def index_command(argv: list[str]) -> int:
    p = _Parser(prog="python -m checker index",
                description="Run shipped specs under their own profiles with coverage and write, for each, the "
                f"action names its run enables into {specindex.INDEX} (what `map` reads; the spec tests check "
                "it). Every spec by default: as long as the exhaustive runs (about 20 minutes, 4 GB).",
                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="only these shipped specs (the others' entries stay)")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = p.parse_args(argv)
    paths = [find(n) for n in args.names] if args.names else sorted(SHIPPED.glob("*.toml"))
    keep = specindex.read() if args.names and specindex.INDEX.is_file() else None
    print(f"wrote {printable(str(specindex.write(paths, keep)))}")
    return OK


# -- list -----------------------------------------------------------------------------

LISTABLE = ("specs", "profiles", "variants", "components", "guards", "invariants", "actions")


def list_command(argv: list[str]) -> int:
    p = _Parser(prog="python -m checker list",
                description="List the shipped specs (the names --spec accepts), the components, or the "
                "guards, invariants or actions of a scenario's model.",
                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=LISTABLE)
    p.add_argument("--spec", metavar="FILE|NAME", help="the scenario whose model to list (default: embedded); "
                   "not for `list specs`")
    p.add_argument("--specs-dir", metavar="DIR", help=f"where `list specs` looks (default: {SHIPPED})")
    p.add_argument("--extension", action="append", default=[], metavar="FILE.py",
                   help="load a patch extension (a Python file defining a model.lang.Extension) after the "
                        "spec's own; repeatable")
    p.add_argument("--profile", type=_name, metavar="NAME|FILE",
                   help="the kernel profile of the scenario's model (default: the spec's)")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = p.parse_args(argv)
    if args.what in ("profiles", "variants"):
        if args.spec is not None or args.specs_dir is not None:
            raise UsageError(f"list {args.what}: lists every one; --spec and --specs-dir do not apply")
        return _list_profiles(args.profile) if args.what == "profiles" else _list_variants()
    if args.what == "specs":
        if args.spec is not None:
            raise UsageError("list specs: --spec names one scenario; `list specs` lists them all "
                             "(use --specs-dir to list another directory)")
        return _list_specs(Path(args.specs_dir) if args.specs_dir is not None else SHIPPED)
    if args.specs_dir is not None:
        raise UsageError(f"list {args.what}: --specs-dir is for `list specs`; give --spec for a scenario")
    if args.what == "components":
        if args.spec is not None:
            raise UsageError("list components: lists every component; --spec does not apply")
        from model.mmu import COMPONENTS

        for name, cls in COMPONENTS.items():
            print(f"{name}: {cls.summary}")
            for o in cls.options:
                print(f"  {o.name} = {o.default!r}: {o.doc}")
        return OK
    spec = load_spec(args.spec, args.profile, args.extension)
    model = spec.build()
    if args.what == "guards":
        for g in model.guards.values():
            state = "on" if g.enabled else "off"
            print(f"{g.name} ({g.component}, {state}): {g.summary} [{g.reference}]")
    elif args.what == "invariants":
        for i in applicable(spec.catalogue, model):
            print(f"{i.name} ({i.kind.value}): {i.statement} [{i.reference}]")
        for f in model.facts:
            print(f"{f.name} (ALWAYS, model fact): {f.statement}")
    else:
        for a in model.actions:
            print(f"{a.actor:<8} {a.key}  [{kernel_location(model, a.kernel)}]")
    return OK


def _list_profiles(name: str | None) -> int:
    """Each profile: the kernel it stands for, its base, what it changes, and its sources."""
    from model.mmu import profiles

    for n in [name] if name is not None else profiles.shipped():
        p = load_profile(n, "--profile", "--profile")
        default = " (default)" if p.name == profiles.DEFAULT else ""
        print(f"{p.name}{default}: {p.kernel}" + (f", on {p.base}" if p.base else ""))
        print(*wrap(p.summary, 100, "  ", "  "), sep="\n")
        print(f"  components: {', '.join(p.components)}")
        for k, v in (p.changes if p.base else p.variants).items():
            print(f"  {k} = {v}")
        for g, on in p.guards.items():
            print(f"  guard {g}: {'on' if on else 'off'} by default")
        for s in p.sources:
            print(*wrap(s, 100, "  source: ", "          "), sep="\n")
    return OK


def _list_variants() -> int:
    """Each variant: its values, the kernel that has each, and the commit or mail behind it."""
    from model.mmu import profiles

    for key, v in profiles.variants().items():
        print(f"{key}: {v.doc}")
        for value in v.values:
            print(f"  {value.name} ({value.since}): {value.summary}")
            print(*wrap(value.source, 100, "    source: ", "            "), sep="\n")
    return OK


def _list_specs(directory: Path) -> int:
    """Each spec's name (what --spec accepts) and expected result, read without building."""
    if not directory.is_dir():
        raise UsageError(f"list specs: {printable(str(directory))} is not a directory; give --specs-dir")
    paths = sorted(directory.glob("*.toml"), key=lambda p: p.stem)  # by the names it prints
    width = max((len(p.stem) for p in paths), default=0) + 2
    for path in paths:
        spec = read(path)
        e = spec.expect
        expect = "-" if e is None else (e.result if e.result == "pass" else f"{e.result} {e.invariant}")
        print(f"{printable(path.stem):<{width}}{expect}")
    return OK
