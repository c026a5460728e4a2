"""Core orchestration benchmark: prints one JSON document.

    python benchmarks/bench_core.py              # everything, 3 runs each
    python benchmarks/bench_core.py --runs 5 --n 2000

Measures (see benchmarks/README.md for what the numbers mean):

* ``chain``: a 5-agent chain of pure-Python engines (Stage0 → … → Stage5) over ``n`` inputs,
  each input its own correlation id.
* ``chain_one_correlation``: the same chain with every input in ONE correlation id, at several
  sizes, so super-linear costs (context queries, gate/loop-guard bookkeeping) show up.
* ``import``: ``import flock`` time and RSS in a fresh interpreter, and whether DSPy/LiteLLM
  were imported.

Every run happens in a fresh subprocess so that peak RSS belongs to that run alone and runs do not
warm each other's caches.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

STAGES = 5
TARGET_US_PER_ACTIVATION = 100.0
TARGET_IMPORT_S = 0.3
TARGET_IMPORT_MB = 60.0


# --------------------------------------------------------------------------- worker: one chain run
def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _build(n_iterations: int) -> tuple[Any, list[type], list[float]]:
    from pydantic import BaseModel, create_model

    from flock import Flock, flock_type

    stages: list[type[BaseModel]] = [
        flock_type(create_model(f"Stage{i}", value=(int, ...))) for i in range(STAGES + 1)
    ]
    engine_time = [0.0]
    clock = time.perf_counter

    def make_step(out_model: type[BaseModel]) -> Any:
        def step(item: Any) -> Any:
            return out_model(value=item.value + 1)

        @functools.wraps(step)
        def timed(item: Any) -> Any:
            t0 = clock()
            result = step(item)
            engine_time[0] += clock() - t0
            return result

        return timed

    flock = Flock(max_agent_iterations=n_iterations)
    for i in range(1, STAGES + 1):
        flock.agent(f"stage{i}").consumes(stages[i - 1]).publishes(stages[i]).calls(make_step(stages[i]))
    return flock, stages, engine_time


def _timer_overhead_s() -> float:
    """Cost of the two perf_counter calls the engine wrapper adds (subtracted too)."""
    clock = time.perf_counter
    n = 100_000
    t0 = clock()
    for _ in range(n):
        a = clock()
        _ = clock() - a
    return (clock() - t0) / n


async def _run_chain(n: int, one_correlation: bool) -> dict[str, Any]:
    from flock import FilterConfig

    flock, stages, engine_time = _build(n_iterations=max(100, n * 2))
    inputs = [stages[0](value=i) for i in range(n)]
    options = {"correlation_id": "bench-one"} if one_correlation else {}
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    await flock.publish_many(inputs, **options)
    t1 = time.perf_counter()
    summary = await flock.run_until_idle()
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    activations = summary.activations
    expected = n * STAGES
    if activations != expected or summary.errors:
        raise SystemExit(
            f"benchmark run is wrong: {activations} activations (expected {expected}), "
            f"{len(summary.errors)} errors: {summary.errors[:3]}"
        )
    final, total = await flock.store.query_artifacts(
        FilterConfig(type_names=frozenset({f"Stage{STAGES}"})), limit=1
    )
    if total != n or final[0].payload["value"] != STAGES:
        raise SystemExit(f"benchmark run is wrong: {total} final artifacts, first {final[:1]}")
    wall = t2 - t0
    engine = engine_time[0] + activations * _timer_overhead_s()
    return {
        "inputs": n,
        "activations": activations,
        "artifacts": len(flock.store),
        "wall_s": wall,
        "publish_s": t1 - t0,
        "run_s": t2 - t1,
        "activations_per_s": activations / wall,
        "us_per_activation": wall / activations * 1e6,
        "engine_us_per_activation": engine / activations * 1e6,
        "orchestration_us_per_activation": (wall - engine) / activations * 1e6,
        "cpu_us_per_activation": cpu / activations * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb": _vm_kb("VmRSS") / 1024,
    }


def _worker(args: argparse.Namespace) -> None:
    import anyio

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        anyio.run(_run_chain, args.n, args.one_correlation)
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stderr).sort_stats(args.profile)
        stats.print_stats(35)
        return
    result = anyio.run(_run_chain, args.n, args.one_correlation)
    print(json.dumps(result))


# --------------------------------------------------------------------------- worker: import
_IMPORT_PROBE = r"""
import json, sys, time
def rss(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
before = rss("VmRSS")
c0 = time.process_time()
t0 = time.perf_counter()
import flock
t1 = time.perf_counter()
c1 = time.process_time()
after = rss("VmRSS")
heavy = ("dspy", "litellm", "openai", "opentelemetry", "httpx", "sqlalchemy")
print(json.dumps({
    "import_s": t1 - t0,
    "import_cpu_s": c1 - c0,
    "rss_before_mb": before / 1024,
    "rss_after_mb": after / 1024,
    "rss_delta_mb": (after - before) / 1024,
    "peak_rss_mb": rss("VmHWM") / 1024,
    "modules_loaded": len(sys.modules),
    "imported": {name: any(m == name or m.startswith(name + ".") for m in sys.modules) for name in heavy},
}))
"""


def _import_once() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, check=True, env=_clean_env()
    )
    return json.loads(out.stdout)


def _import_top_modules(k: int = 8) -> list[dict[str, Any]]:
    """The slowest top-level packages under ``import flock`` (cumulative, from ``-X importtime``)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flock"],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    per_package: dict[str, int] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except ValueError:
            continue  # header line
        root = parts[2].strip().split(".")[0]
        per_package[root] = per_package.get(root, 0) + self_us
    top = sorted(per_package.items(), key=lambda kv: -kv[1])[:k]
    return [{"package": name, "self_ms": us / 1000} for name, us in top]


# --------------------------------------------------------------------------- driver
def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _spawn_chain(n: int, one_correlation: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--n", str(n)]
    if one_correlation:
        cmd.append("--one-correlation")
    out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(cmd)}):\n{out.stderr}")
    return json.loads(out.stdout)


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best (fastest wall time) run and the median of each number."""
    best = min(runs, key=lambda r: r["wall_s"])
    keys = [k for k, v in best.items() if isinstance(v, float)]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    return {
        "inputs": best["inputs"],
        "activations": best["activations"],
        "artifacts": best["artifacts"],
        "runs": len(runs),
        "best": {k: round(best[k], 4) for k in keys},
        "median": {k: round(median[k], 4) for k in keys},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="input artifacts per run (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument(
        "--scaling",
        default="250,500,1000",
        help="input counts for the one-correlation variant (default 250,500,1000)",
    )
    parser.add_argument(
        "--skip-one-correlation", action="store_true", help="skip the one-correlation variant"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-correlation", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="SORT",
        help="run one chain in-process under cProfile and print the top 35 by SORT (e.g. tottime)",
    )
    args = parser.parse_args()

    if args.worker or args.profile:
        _worker(args)
        return

    report: dict[str, Any] = {
        "benchmark": "bench_core",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Wall-clock numbers are only comparable on an idle machine; this shows if it was not.
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
    }
    chain = _summarize([_spawn_chain(args.n, False) for _ in range(args.runs)])
    report["chain"] = chain

    if not args.skip_one_correlation:
        sizes = sorted({int(s) for s in args.scaling.split(",") if s} | {args.n})
        one: dict[str, Any] = {}
        for size in sizes:
            one[str(size)] = _summarize([_spawn_chain(size, True) for _ in range(args.runs)])
        smallest, largest = one[str(sizes[0])], one[str(sizes[-1])]
        report["chain_one_correlation"] = {
            "by_inputs": one,
            # ~1.0 means linear; ~largest/smallest means each activation costs O(n) (quadratic total).
            "us_per_activation_growth": round(
                largest["median"]["us_per_activation"] / smallest["median"]["us_per_activation"], 2
            ),
            # The same on CPU time: steadier when other processes share the machine.
            "cpu_us_per_activation_growth": round(
                largest["median"]["cpu_us_per_activation"] / smallest["median"]["cpu_us_per_activation"], 2
            ),
            "size_ratio": round(sizes[-1] / sizes[0], 2),
        }

    imports = [_import_once() for _ in range(max(args.runs, 5))]
    best_imp = min(imports, key=lambda r: r["import_s"])
    report["import"] = {
        "runs": len(imports),
        "best": {k: round(v, 4) for k, v in best_imp.items() if isinstance(v, float)},
        "median": {
            k: round(statistics.median(r[k] for r in imports), 4)
            for k, v in best_imp.items()
            if isinstance(v, float)
        },
        "modules_loaded": best_imp["modules_loaded"],
        "imported": best_imp["imported"],
        "top_packages": _import_top_modules(),
    }

    med = chain["median"]
    report["targets"] = {
        "orchestration_us_per_activation<=100": med["orchestration_us_per_activation"]
        <= TARGET_US_PER_ACTIVATION,
        # The same target on CPU time, for runs on a busy machine (see load_avg_1m_*).
        "cpu_us_per_activation<=100": med["cpu_us_per_activation"] <= TARGET_US_PER_ACTIVATION,
        "import_s<=0.3": report["import"]["median"]["import_s"] <= TARGET_IMPORT_S,
        "import_cpu_s<=0.3": report["import"]["median"]["import_cpu_s"] <= TARGET_IMPORT_S,
        "import_rss_mb<=60": report["import"]["median"]["rss_after_mb"] <= TARGET_IMPORT_MB,
        "no_dspy_or_litellm": not (best_imp["imported"]["dspy"] or best_imp["imported"]["litellm"]),
    }
    report["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
