"""Scheduler overhead: jobs with known stage times through the real daemon and 1, 10, 100 runners.

    python bench/bench_overhead.py            # 1, 10 and 100 runners (~3 min on 2 cores)
    python bench/bench_overhead.py --quick    # shorter stages, one round fewer (< 1 min)

What runs. The daemon is its own process (`python -m client scheduler --listen 127.0.0.1:0`,
SQLite state in a temporary directory), so its CPU time and peak RSS are its own. N runner
agents (`runner.agent.Agent`, unchanged: real gRPC stream, heartbeats every 2 s, bundle fetch
and state uploads) run as threads of this process, each its own host with 2 cores, each
running stages with `runner.fake.SleepExecutor`: a stage sleeps a fixed time per kind and
writes what the real stage writes. 2 jobs per runner are submitted at once (8 client threads).
Each job is 1 extract, TRIALS/BATCH rounds of search, build, profile, learn, and 1 compile.

Ideal. The same jobs (same trials, batch, stage durations), on the same hosts (N hosts of
2 cores), under the same policy (interleaved: an llvm profile owns its host; CPU stages fill
the cores around profiles), through `scheduler.sim.Simulator`: the real scheduling core with
a simulated clock in which every result reaches the core the instant its stage ends and every
granted stage starts the instant it is granted (zero network, daemon, runner and submission
latency). That is the makespan this policy reaches with no scheduling overhead, so
makespan / ideal measures the overhead alone; the policy's own choices (two jobs per 2-core
host wait for each other's profiles) are in both. Every host gets the same two jobs, so the
ideal does not depend on N. Makespan is measured from the first SubmitJob to the last job's
finished_at (the daemon's clock; one machine, one clock).

Grant latency. The daemon grants leases while it handles an event; a lease granted while
handling a stage's result (its granted_at equals that result's ended_at: the same daemon clock
read) was made possible by that result, whether the result readied the job's next stage or
freed the cores another job's stage waited for. For such a lease: grant latency = the granted
stage's start on its runner (child_started) - the triggering stage's end on its runner
(child_finished). It covers the whole loop: the runner's upload of job state (after extract
and learn), StageResult up the stream, the daemon's lock, core, SQLite commit and dispatch,
StartStage down the stream, the agent's stage thread and job-directory check. "up" is the part
up to the daemon's decision (child_finished -> ended_at), "down" the part after it
(granted_at -> child_started). A job's first extract is granted on its submission, not on a
result: it is not counted.

Daemon CPU is user+system seconds of the daemon process from the first submit to the last job
done (% of one core over the makespan); "idle CPU %" is measured before submitting, with all
runners connected and heartbeating (the cost of heartbeats alone); peak RSS is VmHWM.
"overrun" is how much longer than its nominal sleep a stage took on its runner (the job
directory writes at its end, and this process's load): runner-side time, not the scheduler's,
but it is in the makespan and not in the ideal.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from client.api import Client  # noqa: E402
from runner.fake import fake_agent  # noqa: E402
from scheduler.core import SchedulerConfig  # noqa: E402
from scheduler.core.demands import StageKind  # noqa: E402
from scheduler.core.jobs import JobSpec  # noqa: E402
from scheduler.sim import HostSpec, MockJob, Scenario, Simulator  # noqa: E402

CORES = 2
JOBS_PER_RUNNER = 2
TARGET = json.dumps({"kind": "llvm", "num-cores": CORES})
# Stage seconds: about half of DESIGN.md section 1's 2-core llvm times (extract 0.2, search
# 1.7-28, build 2.7-4.8, profile 4.7-6.3, learn 0.1-0.35, compile 8-15), so that 100 runners'
# stage traffic is what a real cluster of that size sends; --quick halves them again.
FULL = {"seconds": {"extract": 0.5, "search": 3.0, "build": 3.0, "profile": 2.5, "learn": 0.3,
                    "compile": 4.0}, "trials": 64, "batch": 32}
QUICK = {"seconds": {"extract": 0.3, "search": 1.5, "build": 1.5, "profile": 1.25, "learn": 0.2,
                     "compile": 2.0}, "trials": 32, "batch": 32}
MODEL = "zoo:conv2d"  # the smallest zoo model (9 KB): state bundles stay small

COLUMNS = ["runners", "jobs", "done", "leases", "submit s", "makespan s", "ideal s", "mk/ideal",
           "grant p50 ms", "grant p99 ms", "grant max ms", "up p50 ms", "down p50 ms",
           "overrun p99 ms", "daemon CPU s", "daemon CPU %", "idle CPU %", "peak RSS MiB",
           "runners CPU s"]

log = logging.getLogger("bench_overhead")


# ---------------------------------------------------------------------- the ideal
@dataclass
class FixedJob(MockJob):
    """A MockJob whose stages take fixed seconds per kind, whatever cores they hold (as
    SleepExecutor stages do)."""

    durations: dict[str, float] = field(default_factory=dict)

    def work(self, kind: StageKind, round_: int) -> float:
        return self.durations[str(kind)]

    def seconds(self, kind: StageKind, round_: int, cores: int) -> float:
        return self.durations[str(kind)]


def ideal_makespan(runners: int, plan: dict[str, Any]) -> float:
    """Makespan of the same jobs on the same hosts under the same policy, zero overhead."""
    hosts = [HostSpec(f"host-{i:03d}", cores=CORES) for i in range(runners)]
    jobs = [FixedJob(JobSpec(f"job-{k:04d}", trials=plan["trials"], batch_size=plan["batch"]),
                     durations=dict(plan["seconds"]))
            for k in range(runners * JOBS_PER_RUNNER)]
    scenario = Scenario("overhead", hosts, jobs,
                        config=SchedulerConfig(policy="interleaved", lease_ttl_s=None))
    result = Simulator(scenario).run()
    if result.done != len(jobs):
        raise RuntimeError(f"simulation finished {result.done} of {len(jobs)} jobs")
    return result.makespan


# ---------------------------------------------------------------------- the daemon
class DaemonProcess:
    """`python -m client scheduler` on a free loopback port, as a child process."""

    def __init__(self, state: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "client", "scheduler", "--listen", "127.0.0.1:0",
             "--state", str(state)], cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log)
        line = self.proc.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the daemon did not start ({line!r}): "
                               f"{log_path.read_text()[-2000:]}")
        self.address = match.group(1)
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def peak_rss_mib(self) -> float:
        """VmHWM (the high-water mark of resident memory) from /proc; else RSS now."""
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
            return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024
        except (OSError, AttributeError):
            return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------- the runners
class Agents:
    """N fake runner agents, each its own host, as threads of this process."""

    def __init__(self, address: str, runners: int, work: Path, seconds: dict[str, float]):
        self.stop_event = threading.Event()
        self.agents = [fake_agent(address, f"host-{i:03d}", work / f"host-{i:03d}",
                                  f"runner-{i:03d}", cores=CORES, seconds=seconds)
                       for i in range(runners)]
        self.threads = [threading.Thread(target=a.run, args=(self.stop_event,),
                                         name=f"agent-{i}", daemon=True)
                        for i, a in enumerate(self.agents)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for agent in self.agents:
            agent.stop()
        for thread in self.threads:
            thread.join(timeout=10)


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll `condition` until truthy; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------- measurements
def grant_latencies(leases: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Seconds per result-triggered grant: total, up (to the decision), down (after it)."""
    by_end = {round(x["ended_at"], 6): x for x in leases
              if x["outcome"] == "finished" and x["ended_at"]}
    out: dict[str, list[float]] = {"total": [], "up": [], "down": []}
    for lease in leases:
        trigger = by_end.get(round(lease["granted_at"], 6))
        if trigger is None or not lease["child_started"] or not trigger["child_finished"]:
            continue
        out["total"].append(lease["child_started"] - trigger["child_finished"])
        out["up"].append(trigger["ended_at"] - trigger["child_finished"])
        out["down"].append(lease["child_started"] - lease["granted_at"])
    return out


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds (nan when empty)."""
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def run_case(runners: int, plan: dict[str, Any], tmp: Path, idle_s: float,
             timelines: Path | None = None) -> dict[str, Any]:
    """One measurement: daemon + `runners` agents, 2 jobs each; a table row. With
    `timelines`, the lease timeline is written there as leases-RUNNERS.json."""
    ideal = ideal_makespan(runners, plan)
    daemon = DaemonProcess(tmp / "state" / "scheduler.db", tmp / "daemon.log")
    agents = None
    me = psutil.Process()
    try:
        agents = Agents(daemon.address, runners, tmp / "work", plan["seconds"])
        with Client(daemon.address, timeout=60) as client:
            wait_for(lambda: sum(r.connected for r in client.runners()) == runners,
                     60 + runners, f"{runners} runners to register")
            cpu0, wall0 = daemon.cpu_s(), time.monotonic()
            time.sleep(idle_s)  # measure, not synchronise: heartbeats only
            idle = (daemon.cpu_s() - cpu0) / (time.monotonic() - wall0)

            n_jobs = runners * JOBS_PER_RUNNER
            cpu_start, mine_start = daemon.cpu_s(), sum(me.cpu_times()[:2])
            t0 = time.time()
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(lambda k: client.submit(
                    MODEL, TARGET, trials=plan["trials"], batch_size=plan["batch"],
                    name=f"j{k}").job_id, range(n_jobs)))
            submit_s = time.time() - t0
            terminal = {"done", "failed", "cancelled"}
            jobs = wait_for(lambda: (lambda js: js if all(j.state in terminal for j in js)
                                     else None)(client.jobs()),
                            3 * ideal + 120, f"{n_jobs} jobs to finish", interval=0.5)
            cpu = daemon.cpu_s() - cpu_start
            mine = sum(me.cpu_times()[:2]) - mine_start
            leases = client.timeline()
    except RuntimeError:
        print(f"daemon log tail ({daemon.log_path}):\n"
              f"{daemon.log_path.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        if agents is not None:
            agents.stop()
        peak = daemon.peak_rss_mib()
        daemon.stop()
    assert {j.job_id for j in jobs} == set(ids)
    if timelines is not None:
        timelines.mkdir(parents=True, exist_ok=True)
        (timelines / f"leases-{runners}.json").write_text(json.dumps(
            {"t0": t0, "seconds": plan["seconds"], "leases": leases}))
    makespan = max(j.finished_at for j in jobs) - t0
    lat = grant_latencies(leases)
    overrun = [x["child_finished"] - x["child_started"] - plan["seconds"][x["stage"]]
               for x in leases if x["outcome"] == "finished"]
    return {
        "runners": runners, "jobs": n_jobs, "done": f"{sum(j.state == 'done' for j in jobs)}"
        f"/{n_jobs}", "leases": len(leases), "submit s": submit_s, "makespan s": makespan,
        "ideal s": ideal, "mk/ideal": makespan / ideal, "grant p50 ms": pct(lat["total"], 50),
        "grant p99 ms": pct(lat["total"], 99),
        "grant max ms": max(lat["total"]) * 1e3 if lat["total"] else float("nan"),
        "up p50 ms": pct(lat["up"], 50), "down p50 ms": pct(lat["down"], 50),
        "overrun p99 ms": pct(overrun, 99),
        "daemon CPU s": cpu, "daemon CPU %": 100 * cpu / makespan, "idle CPU %": 100 * idle,
        "peak RSS MiB": peak, "runners CPU s": mine, "grants timed": len(lat["total"]),
    }


# ---------------------------------------------------------------------- output
def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}" if abs(value) < 10 \
            else f"{value:.1f}"
    return str(value)


def print_table(rows: list[dict[str, Any]], plan: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rounds = -(-plan["trials"] // plan["batch"])
    stages = ", ".join(f"{k} {v:g}" for k, v in plan["seconds"].items())
    table = Table(title=f"tunesched scheduler overhead: real daemon + N runner agents on "
                        f"loopback, sleep stages (s: {stages}; {rounds} rounds/job, "
                        f"{JOBS_PER_RUNNER} jobs per {CORES}-core runner)",
                  box=box.SIMPLE_HEAD)
    for column in COLUMNS:
        table.add_column(column.replace(" ", "\n", 1), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in COLUMNS))
    Console(width=max(Console().width, 200)).print(table)
    print("ideal = the same jobs, hosts and policy in scheduler.sim with zero latency; grant "
          "latency = triggering stage's end -> granted stage's start, on the runners\n"
          "(up: -> the daemon's decision, includes the state upload after extract/learn; "
          "down: decision -> stage start); overrun: a stage's time beyond its nominal sleep (its\n"
          "job-directory writes); daemon CPU % is of one core over the makespan.")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="half-length stages and one round fewer per job")
    parser.add_argument("--runners", default="1,10,100", help="comma-separated runner counts")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--timelines", type=Path, default=None,
                        help="write each run's lease timeline to DIR/leases-RUNNERS.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    plan = QUICK if args.quick else FULL
    rows = []
    for runners in (int(n) for n in args.runners.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"tunesched-overhead-{runners}-") as tmp:
            started = time.perf_counter()
            rows.append(run_case(runners, plan, Path(tmp), 2.0 if args.quick else 4.0,
                                 args.timelines))
            print(f"  {runners:>4} runners: makespan {rows[-1]['makespan s']:.1f} s, "
                  f"ideal {rows[-1]['ideal s']:.1f} s, wall "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    print_table(rows, plan)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"plan": plan, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
