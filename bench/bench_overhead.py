"""Scheduler overhead: jobs with known stage times through the real daemon and 1, 10, 100 runners.

    python bench/bench_overhead.py            # 1, 10 and 100 runners (~2 min on 2 cores)
    python bench/bench_overhead.py --quick    # half-length stages, 1 round per job (< 1 min)
    python bench/bench_overhead.py --runners 100 --dashboards 0,5,0,5   # dashboards' cost

What runs. The daemon is its own process (`tunesched scheduler --listen 127.0.0.1:0`,
SQLite state in a temporary directory on disk), so its CPU time and peak RSS are its own.
N runner agents (`runner.agent.Agent`, unchanged: one gRPC stream each, heartbeats every 2 s,
bundle fetch, state uploads after extract and learn, result upload after compile), each its
own host with 2 cores, run as threads of 4 helper processes (`--agent-procs`; one interpreter
for 100 agents would serialise them on its GIL, and real runners have hosts of their own; for
the same reason their job directories go to /dev/shm, not to one shared disk). Their stages
run in `simpletvm.fake_executor.SleepExecutor`: a stage sleeps its known time and writes what
the real
stage writes. 2 jobs per runner (zoo:conv2d, the smallest model, so state bundles stay small)
are submitted at once from 8 client threads. A job is 1 extract, TRIALS/BATCH rounds of search,
build, profile and learn, and 1 compile; stage times are FULL/QUICK below (about half of
docs/design.md section 1's), each varied by up to +-20% by a hash of (job, stage, round) so that
jobs fall out of lockstep as real ones do.

Ideal. The same jobs (same ids, trials, batch, stage times), on the same hosts (N hosts of
2 cores), under the same policy (interleaved: an llvm profile owns its host, CPU stages fill
the cores around profiles, at most 2 jobs per 2-core host), arriving when the daemon accepted
them (their submitted_at), through `scheduler.sim.Simulator`: the real scheduling core with a
simulated clock in which every result reaches the core the instant its stage ends and every
granted stage starts the instant it is granted. That is the makespan this policy reaches on
these arrivals with zero scheduling, network and runner latency, so makespan / ideal is the
overhead of the scheduling loop alone; what the policy itself does (two jobs on a host wait for
each other's profiles and cores) is in both. "ideal@0" is the same with every job arriving at
the first submit: makespan / ideal@0 also charges the time to submit N jobs and how the policy
reacts to that stagger (a job that arrives while the host's other job runs a 2-core search
waits for it). Makespan runs from the first SubmitJob to the last job's finished_at (the
daemon's clock; one machine, one clock).

Grant latency. The daemon grants leases while it handles an event; a lease granted while
handling a stage's result (its granted_at equals that result's ended_at: one daemon clock read)
was made possible by that result, whether the result readied the job's next stage or freed the
cores another job's stage waited for. For such a lease: grant latency = the granted stage's
start on its runner (child_started) - the triggering stage's end on its runner
(child_finished). It covers the whole loop: the runner's state upload (after extract and
learn), StageResult up the stream, the daemon's lock, core, SQLite commit and dispatch,
StartStage down the stream, the agent's stage thread and job-directory check. "up" is the part
up to the daemon's decision (child_finished -> ended_at), "down" the part after it
(granted_at -> child_started). A job's first extract is granted on its submission, not on a
result: it is not counted.

Daemon CPU is user+system seconds of the daemon process from the first submit to the last job
done (% of one core over the makespan); "idle CPU %" is measured before submitting, with all
runners connected and heartbeating (the cost of heartbeats alone); peak RSS is VmHWM. "runners
CPU s" is the helper processes' CPU over the same span. "overrun" is how much longer than its
nominal time a stage took on its runner (its job-directory writes, its process's load):
runner-side time, in the makespan and not in the ideal.

Dashboards (`--dashboards`, a list run in the order given, so that 0,5,0,5 alternates). With
D > 0 the daemon also serves its dashboard (`--http`), and D pollers in a helper process do
what D open browser tabs do, each GET every second from the first submit to the last job done:
the jobs page (GET /api/jobs), a job's page (its JSON and its curve SVG), the runners page
and the timeline page (its Gantt SVG and its JSON), pollers taking the pages in turn. "api p50/
p99 ms" is each request's wall time (connect to last byte) as the poller saw it.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from client.api import Client
from client.timeline import running_windows
from scheduler.core import TERMINAL_JOB_STATES, SchedulerConfig
from scheduler.core.demands import StageKind
from scheduler.sim import HostSpec, MockJob, Scenario, Simulator, mock_spec
from scheduler.testing import DaemonProcess, sleep_agent, wait_for
from simpletvm.executor import StageRequest
from simpletvm.spec import JobSpec

CORES = 2
JOBS_PER_RUNNER = 2
TARGET = {"kind": "llvm", "num-cores": CORES}
# Stage seconds, of the order of docs/design.md section 1's 2-core llvm times (extract 0.1-0.3,
# search 1.7-28, build 2.7-4.8, profile 4.7-6.3, learn 0.1-1.0, compile 3.5-6.7): search,
# profile and compile about half, build and learn about the same, extract more (section 1.3), so
# that 100 runners' stage traffic is what a real cluster of that size sends; --quick halves them.
FULL = {"seconds": {"extract": 0.5, "search": 3.0, "build": 3.0, "profile": 2.5, "learn": 0.3,
                    "compile": 4.0}, "trials": 64, "batch": 32}
QUICK = {"seconds": {"extract": 0.3, "search": 1.5, "build": 1.5, "profile": 1.25, "learn": 0.2,
                     "compile": 2.0}, "trials": 32, "batch": 32}
JITTER = 0.2  # each stage's time varies by up to +-20% around the plan's (see stage_seconds)
MODEL = "zoo:conv2d"  # the smallest zoo model (9 KB): state bundles stay small

COLUMNS = ["runners", "dashboards", "jobs done", "leases", "leases/job", "submit s", "makespan s",
           "ideal s", "mk/ideal", "ideal@0 s", "mk/ideal@0",
           "grant p50 ms", "grant p99 ms", "grant max ms", "up p50 ms", "down p50 ms",
           "overrun p99 ms", "daemon CPU s", "daemon CPU %", "idle CPU %", "peak RSS MiB",
           "runners CPU s", "api requests", "api p50 ms", "api p99 ms"]

log = logging.getLogger("bench_overhead")


# ---------------------------------------------------------------------- the ideal
def stage_seconds(plan: dict[str, Any], job_id: str, stage: str, round_: int) -> float:
    """Nominal seconds of one stage: the plan's time for its kind times a factor in
    [1 - JITTER, 1 + JITTER) drawn by hashing (job, stage, round), so that jobs fall out of
    lockstep as real ones do; the executor and the ideal use the same numbers."""
    u = zlib.crc32(f"{job_id}:{stage}:{round_}".encode()) / 2**32
    return plan["seconds"][stage] * (1.0 + JITTER * (2.0 * u - 1.0))


class PlanSeconds:
    """SleepExecutor durations: `stage_seconds` of the request's job (its directory's name)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan

    def __call__(self, request: StageRequest) -> float:
        return stage_seconds(self.plan, Path(request.job_dir).name, request.stage,
                             request.round)


@dataclass
class FixedJob(MockJob):
    """A MockJob whose stages take `stage_seconds`, whatever cores they hold (as the
    SleepExecutor's do)."""

    plan: dict[str, Any] = field(default_factory=dict)

    def work(self, kind: StageKind, round_: int) -> float:
        return stage_seconds(self.plan, self.job_id, str(kind), round_)

    def seconds(self, kind: StageKind, round_: int, cores: int) -> float:
        return stage_seconds(self.plan, self.job_id, str(kind), round_)


def ideal_makespan(runners: int, plan: dict[str, Any], arrivals: dict[str, float]) -> float:
    """Makespan of the same jobs (id -> arrival second) on the same hosts under the same
    policy, with zero overhead."""
    hosts = [HostSpec(f"host-{i:03d}", cores=CORES) for i in range(runners)]
    order = sorted(arrivals, key=lambda job_id: arrivals[job_id])
    jobs = [FixedJob(mock_spec(job_id, trials=plan["trials"], batch_size=plan["batch"]),
                     arrival=arrivals[job_id], plan=plan) for job_id in order]
    scenario = Scenario("overhead", hosts, jobs,
                        config=SchedulerConfig(policy="interleaved", lease_ttl_s=None))
    result = Simulator(scenario).run()
    if result.done != len(jobs):
        raise RuntimeError(f"simulation finished {result.done} of {len(jobs)} jobs")
    return result.makespan


# ---------------------------------------------------------------------- the daemon
def peak_rss_mib(pid: int) -> float:
    """VmHWM (the high-water mark of resident memory) from /proc; else RSS now."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024
    except (OSError, AttributeError):
        return psutil.Process(pid).memory_info().rss / 2**20


# ---------------------------------------------------------------------- the runners
def serve_agents(address: str, first: int, count: int, work: Path, quick: bool) -> None:
    """Run runner agents first..first+count-1 (hosts host-NNN) as threads of this process until
    stdin closes (the bench's helper processes run this)."""
    stop = threading.Event()
    seconds = PlanSeconds(QUICK if quick else FULL)
    agents = [sleep_agent(address, f"host-{i:03d}", work / f"host-{i:03d}", f"runner-{i:03d}",
                          cores=CORES, seconds=seconds) for i in range(first, first + count)]
    threads = [threading.Thread(target=a.run, args=(stop,), name=f"agent-{i}", daemon=True)
               for i, a in enumerate(agents)]
    for thread in threads:
        thread.start()
    sys.stdin.read()  # EOF: the bench is done (or died)
    stop.set()
    for agent in agents:
        agent.stop()
    for thread in threads:
        thread.join(timeout=10)


class Agents:
    """N fake runner agents, each its own host, spread over `procs` helper processes (real
    runners run on their own hosts: one interpreter for all would serialise them on its GIL)."""

    def __init__(self, address: str, runners: int, work: Path, quick: bool, procs: int):
        procs = max(1, min(procs, runners))
        bounds = [runners * i // procs for i in range(procs + 1)]
        self.procs = [subprocess.Popen(
            [sys.executable, __file__, "--serve-agents", address, str(lo), str(hi - lo),
             str(work), *(["--quick"] if quick else [])], stdin=subprocess.PIPE)
            for lo, hi in itertools.pairwise(bounds)]
        self.ps = [psutil.Process(p.pid) for p in self.procs]

    def cpu_s(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.ps)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- dashboards
PAGES = (("/api/jobs",), ("/api/jobs/{job}", "/api/jobs/{job}/curve.svg"), ("/api/runners",),
         ("/api/timeline.svg", "/api/timeline"))


def poll_dashboards(base: str, count: int, job: str) -> None:
    """`count` pollers GET what an open page does every second until stdin closes, then
    print each request's seconds as JSON (the bench's helper process runs this)."""
    import urllib.request

    stop, times, lock = threading.Event(), [], threading.Lock()

    def poller(i: int) -> None:
        paths = PAGES[i % len(PAGES)]
        while not stop.is_set():
            began = time.perf_counter()
            for path in paths:
                t = time.perf_counter()
                with urllib.request.urlopen(base + path.format(job=job), timeout=30) as reply:
                    reply.read()
                with lock:
                    times.append(time.perf_counter() - t)
            stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

    threads = [threading.Thread(target=poller, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    print(json.dumps(times))


class Dashboards:
    """`count` dashboards polling the daemon at `base`, in a helper process of their own."""

    def __init__(self, base: str, count: int, job: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--poll-dashboards", base,
                                      str(count), job], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)

    def stop(self) -> list[float]:
        """Stop polling; every request's seconds."""
        out, _ = self.proc.communicate(b"", timeout=60)
        return json.loads(out)


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


def run_case(runners: int, quick: bool, tmp: Path, work: Path, agent_procs: int,
             timelines: Path | None = None, dashboards: int = 0) -> dict[str, Any]:
    """One measurement: daemon (state under `tmp`) + `runners` agents (job directories under
    `work`), 2 jobs each, `dashboards` open; a table row. With `timelines`, the lease timeline
    is written there as leases-RUNNERS.json."""
    plan, idle_s = (QUICK, 2.0) if quick else (FULL, 4.0)
    daemon = DaemonProcess(tmp / "state" / "scheduler.db", tmp / "daemon.log",
                           ["--http", "127.0.0.1:0"] if dashboards else [])
    base = re.search(r"dashboard at (\S+)/", daemon.proc.stdout.readline().decode()).group(1) \
        if dashboards else ""
    agents = pollers = None
    api: list[float] = []
    try:
        agents = Agents(daemon.address, runners, work, quick, agent_procs)
        with Client(daemon.address, timeout=60) as client:
            wait_for(lambda: sum(r.connected for r in client.runners()) == runners,
                     60 + runners, f"{runners} runners to register")
            cpu0, wall0 = daemon.cpu_s(), time.monotonic()
            time.sleep(idle_s)  # measure, not synchronise: heartbeats only
            idle = (daemon.cpu_s() - cpu0) / (time.monotonic() - wall0)

            n_jobs = runners * JOBS_PER_RUNNER
            cpu_start, agents_start = daemon.cpu_s(), agents.cpu_s()
            t0 = time.time()
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(lambda k: client.submit(JobSpec(
                    model=MODEL, target=TARGET, trials=plan["trials"],
                    batch_size=plan["batch"], name=f"j{k}",
                    # every job does the same work: none skips what an earlier one recorded
                    fresh=True)).job_id, range(n_jobs)))
            submit_s = time.time() - t0
            if dashboards:
                pollers = Dashboards(base, dashboards, ids[0])
            jobs = wait_for(lambda: (lambda js: js if all(j.state in TERMINAL_JOB_STATES
                                                          for j in js) else None)(client.jobs()),
                            600 + n_jobs, f"{n_jobs} jobs to finish",
                            # listing 2,000 jobs is work for the daemon: ask less often
                            interval=max(0.5, n_jobs / 1000))
            if pollers is not None:
                api, pollers = pollers.stop(), None
            cpu = daemon.cpu_s() - cpu_start
            agents_cpu = agents.cpu_s() - agents_start
            leases = client.timeline()
    except (RuntimeError, TimeoutError):
        print(f"daemon log tail ({daemon.log_path}):\n"
              f"{daemon.log_path.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        if pollers is not None:
            pollers.stop()
        if agents is not None:
            agents.stop()
        peak = peak_rss_mib(daemon.pid)
        daemon.stop()
    assert {j.job_id for j in jobs} == set(ids)
    if timelines is not None:
        timelines.mkdir(parents=True, exist_ok=True)
        (timelines / f"leases-{runners}.json").write_text(json.dumps(
            {"t0": t0, "seconds": plan["seconds"], "leases": leases}))
    makespan = max(j.finished_at for j in jobs) - t0
    ideal = ideal_makespan(runners, plan, {j.job_id: j.submitted_at - t0 for j in jobs})
    ideal0 = ideal_makespan(runners, plan, {j.job_id: 0.0 for j in jobs})
    lat = grant_latencies(leases)
    overrun = [sum(b - a for a, b in running_windows(x))  # paused for a profile: not overrun
               - stage_seconds(plan, x["job_id"], x["stage"], x["round"])
               for x in leases if x["outcome"] == "finished"]
    return {
        "runners": runners, "dashboards": dashboards, "jobs": n_jobs,
        "jobs done": f"{sum(j.state == 'done' for j in jobs)}/{n_jobs}", "leases": len(leases),
        "leases/job": "{}-{}".format(*(lambda n: (min(n), max(n)))(
            collections.Counter(x["job_id"] for x in leases).values())),
        "submit s": submit_s, "makespan s": makespan,
        "ideal s": ideal, "mk/ideal": makespan / ideal, "ideal@0 s": ideal0,
        "mk/ideal@0": makespan / ideal0, "grant p50 ms": pct(lat["total"], 50),
        "grant p99 ms": pct(lat["total"], 99),
        "grant max ms": max(lat["total"]) * 1e3 if lat["total"] else float("nan"),
        "up p50 ms": pct(lat["up"], 50), "down p50 ms": pct(lat["down"], 50),
        "overrun p99 ms": pct(overrun, 99),
        "daemon CPU s": cpu, "daemon CPU %": 100 * cpu / makespan, "idle CPU %": 100 * idle,
        "peak RSS MiB": peak, "runners CPU s": agents_cpu, "grants timed": len(lat["total"]),
        "api requests": len(api), "api p50 ms": pct(api, 50), "api p99 ms": pct(api, 99),
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
                        f"loopback; sleep stages of {stages} s (+-{JITTER:.0%}), {rounds} "
                        f"rounds/job, {JOBS_PER_RUNNER} jobs per {CORES}-core runner",
                  box=box.SIMPLE_HEAD)
    for column in COLUMNS:
        table.add_column(column.replace(" ", "\n", 1), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in COLUMNS))
    Console(width=max(Console().width, 200)).print(table)
    print("ideal: the same jobs, hosts and policy in scheduler.sim with zero latency, jobs "
          "arriving when the daemon accepted them (ideal@0: all at the first submit).\n"
          "grant latency: triggering stage's end -> granted stage's start, on the runners; up: "
          "-> the daemon's decision (includes the state upload after extract/learn);\n"
          "down: decision -> stage start. overrun: a stage's time beyond its nominal time (its "
          "job-directory writes). daemon CPU %: of one core over the makespan.")


def write_markdown(rows: list[dict[str, Any]], plan: dict[str, Any], path: Path,
                   argv: list[str]) -> None:
    """The table as markdown, with the command that produced it."""
    stages = ", ".join(f"{k} {v:g}" for k, v in plan["seconds"].items())
    lines = [f"`python bench/bench_overhead.py {' '.join(argv)}`".replace(" `", "`"),
             "", f"Sleep stages of {stages} s, {JOBS_PER_RUNNER} jobs per {CORES}-core runner.",
             "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _shm() -> str | None:
    """/dev/shm if it is a writable directory (else None: the system's temporary dir)."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="half-length stages and one round fewer per job")
    parser.add_argument("--runners", default="1,10,100", help="comma-separated runner counts")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--markdown", type=Path,
                        default=Path(__file__).parent / "results" / "overhead.md",
                        help="write the table as markdown here (bench/results/overhead.md)")
    parser.add_argument("--work-base", default=_shm(),
                        help="where the fake runners' job directories go (default: /dev/shm "
                        "when writable: 100 hosts' disks, not one shared disk)")
    parser.add_argument("--agent-procs", type=int, default=4,
                        help="helper processes the runner agents are spread over")
    parser.add_argument("--dashboards", default="0",
                        help="comma-separated counts of open dashboards, run in this order "
                        "for each runner count (0,5,0,5 alternates)")
    parser.add_argument("--poll-dashboards", nargs=3, metavar=("BASE", "COUNT", "JOB"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--serve-agents", nargs=4, metavar=("ADDR", "FIRST", "COUNT", "WORK"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--timelines", type=Path, default=None,
                        help="write each run's lease timeline to DIR/leases-RUNNERS.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.serve_agents:
        address, first, count, work = args.serve_agents
        serve_agents(address, int(first), int(count), Path(work), args.quick)
        return 0
    if args.poll_dashboards:
        base, count, job = args.poll_dashboards
        poll_dashboards(base, int(count), job)
        return 0
    plan = QUICK if args.quick else FULL
    rows = []
    cases = [(int(n), int(d)) for n in args.runners.split(",")
             for d in args.dashboards.split(",")]
    for runners, dashboards in cases:
        with tempfile.TemporaryDirectory(prefix=f"tunesched-overhead-{runners}-") as tmp, \
                tempfile.TemporaryDirectory(prefix="tunesched-overhead-work-",
                                            dir=args.work_base) as work:
            started = time.perf_counter()
            rows.append(run_case(runners, args.quick, Path(tmp), Path(work), args.agent_procs,
                                 args.timelines, dashboards))
            print(f"  {runners:>4} runners, {dashboards} dashboards: makespan "
                  f"{rows[-1]['makespan s']:.1f} s, ideal {rows[-1]['ideal s']:.1f} s, wall "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    print_table(rows, plan)
    write_markdown(rows, plan, args.markdown, argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"plan": plan, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
