"""Compare scheduling policies in the simulator: makespan vs. lower bound, completion time,
busy fractions and scheduler throughput.

    python bench/bench_policies.py            # full: includes 1,000 hosts / 10,000 jobs
    python bench/bench_policies.py --quick    # the huge scenario shrunk to 100 / 1,000

Decisions are events handled by the core (SchedulerState.handle). "core dec/s" divides them
by the real time spent inside the core; "end-to-end dec/s" by the whole simulation's real time
(core + simulator). Real time is measured here, never inside the core or the simulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from scheduler.core import available_policies
from scheduler.sim import (
    Scenario,
    Simulator,
    cpu_hosts_scenario,
    gpu_host_scenario,
    huge_scenario,
    small_host_scenario,
)

COLUMNS = ["scenario", "policy", "makespan s", "LB s", "mk/LB", "mean JCT s", "dev busy%",
           "CPU busy%", "contended%", "done", "decisions", "core dec/s", "e2e dec/s", "wall s"]


def run_one(make: Callable[[], Scenario], policy: str) -> dict:
    """Simulate one scenario under one policy; return a table row. "interleaved/cores" is
    interleaved with llvm profiles owning only their cores (cpu_profile_exclusivity);
    "predictive/narrow" is predictive without widening (policy option widen=False)."""
    scenario = make()
    label = policy
    if policy.endswith("/cores"):
        policy = policy.removesuffix("/cores")
        scenario.config = replace(scenario.config, cpu_profile_exclusivity="cores")
        scenario.jobs = [replace(m, cpu_profile_exclusivity="cores") for m in scenario.jobs]
    if policy.endswith("/narrow"):
        policy = policy.removesuffix("/narrow")
        scenario.config = replace(scenario.config, policy_options={"widen": False})
    started = time.perf_counter()
    result = Simulator(scenario, policy, timer=time.perf_counter).run()
    wall = time.perf_counter() - started
    return {
        "scenario": result.scenario, "policy": label,
        "makespan s": result.makespan, "LB s": result.lower_bound,
        "mk/LB": result.ratio, "mean JCT s": result.mean_completion,
        "dev busy%": 100 * result.device_busy, "CPU busy%": 100 * result.cpu_busy,
        "contended%": 100 * result.contended_profiles,
        "done": f"{result.done}/{result.jobs}", "decisions": result.decisions,
        "core dec/s": result.decisions / max(result.core_seconds, 1e-9),
        "e2e dec/s": result.decisions / max(wall, 1e-9), "wall s": wall,
    }


def run_seeds(make: Callable[[int], Scenario], policy: str, seeds: int) -> dict:
    """`run_one` over scenario seeds 0..seeds-1: the mean of every number, "mk/LB" also as
    its worst seed ("mk/LB max"), done and decisions summed."""
    rows = [run_one(lambda seed=seed: make(seed), policy) for seed in range(seeds)]
    out = {"scenario": f"{rows[0]['scenario']}, {seeds} seeds", "policy": policy}
    for key in COLUMNS[2:]:
        values = [r[key] for r in rows]
        if key == "done":
            out[key] = f"{sum(int(v.split('/')[0]) for v in values)}/" \
                       f"{sum(int(v.split('/')[1]) for v in values)}"
        elif key == "decisions":
            out[key] = sum(values)
        else:
            out[key] = statistics.fmean(values)
    out["mk/LB"] = f"{out['mk/LB']:.3f} max {max(r['mk/LB'] for r in rows):.3f}"
    return out


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(rows: list[dict]) -> None:
    """A rich table if rich is installed, else plain text."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in COLUMNS]
        print("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True)))
        for row in rows:
            print("  ".join(_fmt(row[c]).rjust(w) for c, w in zip(COLUMNS, widths,
                                                                   strict=True)))
        return
    table = Table(title="tunesched policies (simulated; MockJobs with docs/design.md stage times)",
                  box=box.SIMPLE_HEAD)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("scenario", "policy")
                         else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in COLUMNS))
    Console(width=max(Console().width, 200)).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="huge scenario shrunk to 100 hosts / 1,000 jobs")
    parser.add_argument("--policies", default=",".join(available_policies()),
                        help="comma-separated policy names")
    parser.add_argument("--huge-policies", default=None,
                        help="policies for the huge scenario (default: all of --policies)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    policies = args.policies.split(",")
    huge_policies = args.huge_policies.split(",") if args.huge_policies else policies
    hosts, jobs = (100, 1000) if args.quick else (1000, 10000)
    plan: list[tuple[Callable[[], Scenario], list[str]]] = [
        (gpu_host_scenario, policies),
        (cpu_hosts_scenario, [*policies, "interleaved/cores"]),
        (lambda: huge_scenario(hosts=hosts, jobs=jobs), huge_policies),
    ]
    rows = [run_seeds(small_host_scenario, policy, 20)
            for policy in [*policies, "predictive/narrow"] if policy != "shared"]
    for make, names in plan:
        for policy in names:
            rows.append(run_one(make, policy))
            print(f"  {rows[-1]['scenario']:>24} {policy:<12} "
                  f"{rows[-1]['wall s']:6.1f} s", file=sys.stderr)
    print_table(rows)
    print("LB = max(device s / devices, core-s / cores, longest job chain); an llvm profile "
          "holds its whole host (the default), or its 4 cores for interleaved/cores.\n"
          "shared goes below 1 because it breaks that exclusivity: 'contended%' counts "
          "profiles that shared their device (host for llvm, GPU for cuda).\n"
          "core dec/s: events / real time inside SchedulerState.handle; e2e dec/s: events / "
          "real time of the whole simulation (core + simulator).")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
