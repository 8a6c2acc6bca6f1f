"""Load on one daemon (its own process, loopback): 200 concurrent watchers and 50 concurrent
submitters while fake runners (sleep stages: scheduler.testing.sleep_agent) drive every job
to done.
No watcher may lose an event; SubmitJob, GetJob, ListJobs and the first watch event stay
under a p99 bound."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import Client
from proto import tunesched_pb2 as pb
from scheduler.core import TERMINAL_JOB_STATES
from scheduler.testing import sleep_agent, wait_for
from simpletvm.spec import JobSpec

from .conftest import start_daemon

SUBMITTERS = 50
WATCHERS_PER_JOB = 4            # 200 watchers
HOSTS = 6                       # fake hosts, one runner of 2 cores each
TRIALS, BATCH = 8, 4            # extract, 2 x (search, build, profile, learn), compile
TARGET = {"kind": "llvm", "num-cores": 2}
SECONDS = {"extract": 0.02, "search": 0.02, "build": 0.02, "profile": 0.02, "learn": 0.02,
           "compile": 0.02}
P99_BOUND_S = 5.0
TEST_BUDGET_S = 90.0


@dataclass
class Watcher:
    job_id: str
    started: float = 0.0
    first_event_s: float | None = None
    events: list[tuple] = field(default_factory=list)
    final: pb.JobInfo | None = None
    error: str = ""


def _key(event: pb.JobEvent) -> tuple:
    j = event.job
    return (event.time, j.state, j.stage, j.round, j.trials_done, j.host_id)


def _watch(stub: object, w: Watcher) -> None:
    w.started = time.monotonic()
    try:
        for event in stub.WatchJob(pb.WatchJobRequest(job_id=w.job_id), timeout=TEST_BUDGET_S):
            if w.first_event_s is None:
                w.first_event_s = time.monotonic() - w.started
            w.events.append(_key(event))
            w.final = event.job
    except grpc.RpcError as exc:
        w.error = f"{exc.code().name}: {exc.details()}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.slow
def test_200_watchers_and_50_submitters_lose_no_events(tmp_path: Path) -> None:
    t_begin = time.monotonic()
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log",
                          extra=["--runner-timeout", "30", "--lease-ttl", "30"])
    stop = threading.Event()
    agents, agent_threads, clients = [], [], []
    lat: dict[str, list[float]] = {"SubmitJob": [], "GetJob": [], "ListJobs": []}
    lat_lock = threading.Lock()
    watchers: list[Watcher] = []
    watcher_threads: list[threading.Thread] = []
    jobs: list[str] = []
    failures: list[str] = []
    runners_started = threading.Event()

    def timed(kind: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        out = fn()
        with lat_lock:
            lat[kind].append(time.monotonic() - t0)
        return out

    def submitter(i: int, start: threading.Barrier) -> None:
        try:
            client = clients[i]
            start.wait(timeout=30)
            info = timed("SubmitJob", lambda: client.submit(JobSpec(
                model="zoo:mlp", target=TARGET, trials=TRIALS, name=f"load-{i}",
                batch_size=BATCH)))
            with lat_lock:
                jobs.append(info.job_id)
                for _ in range(WATCHERS_PER_JOB):
                    w = Watcher(info.job_id)
                    t = threading.Thread(target=_watch, args=(client.stub, w), daemon=True,
                                         name=f"watch-{i}")
                    watchers.append(w)
                    watcher_threads.append(t)
                    t.start()
            # poll like a dashboard until the job ends: load while the jobs progress
            deadline = time.monotonic() + TEST_BUDGET_S
            while time.monotonic() < deadline:
                state = timed("GetJob", lambda: client.get(info.job_id)).state
                timed("ListJobs", client.jobs)
                if state in TERMINAL_JOB_STATES and runners_started.is_set():
                    return
                time.sleep(0.2)
        except Exception as exc:  # reported below, with the others
            failures.append(f"submitter {i}: {type(exc).__name__}: {exc}")

    try:
        clients.extend(Client(daemon.address, timeout=30) for _ in range(SUBMITTERS))
        start = threading.Barrier(SUBMITTERS)
        submitters = [threading.Thread(target=submitter, args=(i, start), daemon=True,
                                       name=f"submit-{i}") for i in range(SUBMITTERS)]
        for t in submitters:
            t.start()
        # every watcher attached and saw the job queued before any runner exists: each must
        # then see the whole life of its job
        wait_for(lambda: len(watchers) == SUBMITTERS * WATCHERS_PER_JOB
                 and all(w.first_event_s is not None or w.error for w in watchers),
                 45, "200 watchers to get their first event", interval=0.1)
        t_attached = time.monotonic()
        for h in range(HOSTS):
            agent = sleep_agent(daemon.address, f"host{h}", tmp_path / f"work{h}", f"r{h}",
                               cores=2, seconds=SECONDS)
            thread = threading.Thread(target=agent.run, args=(stop,), daemon=True,
                                      name=f"agent-{h}")
            thread.start()
            agents.append(agent)
            agent_threads.append(thread)
        runners_started.set()
        for t in watcher_threads:
            t.join(timeout=max(1.0, TEST_BUDGET_S - (time.monotonic() - t_begin)))
        t_done = time.monotonic()
        for t in submitters:
            t.join(timeout=10)
        assert not failures, failures
        assert not [t for t in watcher_threads if t.is_alive()], "watchers still waiting"

        check = clients[0]
        final = {j: check.get(j) for j in jobs}
        timeline = check.timeline()
        with grpc.insecure_channel(daemon.address) as channel:
            assert health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        assert daemon.proc.poll() is None, "the daemon died under load"
    finally:
        stop.set()
        for agent in agents:
            agent.stop()
        for t in agent_threads:
            t.join(timeout=10)
        for c in clients:
            c.close()
        code = daemon.stop()
    assert code == 0

    # every job done with its whole budget, as the daemon records it
    assert len(jobs) == SUBMITTERS and len(watchers) == SUBMITTERS * WATCHERS_PER_JOB
    assert {j: (f.state, f.trials_done) for j, f in final.items()} == \
        {j: ("done", TRIALS) for j in jobs}
    by_job: dict[str, list[Watcher]] = {}
    for w in watchers:
        by_job.setdefault(w.job_id, []).append(w)
    for job, ws in by_job.items():
        assert not [w.error for w in ws if w.error], [w.error for w in ws]
        stages = [x["stage"] for x in sorted(timeline, key=lambda x: x["granted_at"])
                  if x["job_id"] == job]
        reference = ws[0].events
        for w in ws:
            # attached while queued, so every watcher of a job saw the same events in order
            assert w.events[1:] == reference[1:], f"{job}: watchers disagree"
            assert w.events[0][1] == "queued" and w.events[-1][1] == "done", w.events
            trials = [e[4] for e in w.events]
            assert trials == sorted(trials) and trials[-1] == TRIALS, trials
            seen = [e[2] for e in w.events if e[2]]
            seen = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
            assert seen == stages, (seen, stages)  # every stage start the daemon leased
            f, d = w.final, final[job]
            assert (f.state, f.trials_done, f.best_latency_us, f.tuned_latency_us) == \
                (d.state, d.trials_done, d.best_latency_us, d.tuned_latency_us)

    first = [w.first_event_s for w in watchers]
    rows = {"SubmitJob": lat["SubmitJob"], "GetJob": lat["GetJob"],
            "ListJobs": lat["ListJobs"], "first watch event": first}
    events = sum(len(w.events) for w in watchers)
    print(f"\nload: {len(watchers)} watchers, {SUBMITTERS} submitters, {len(jobs)} jobs x "
          f"{TRIALS} trials on {HOSTS} fake hosts; {events} watch events, none lost; "
          f"attach {t_attached - t_begin:.1f} s, run {t_done - t_attached:.1f} s, "
          f"total {time.monotonic() - t_begin:.1f} s")
    for name, values in rows.items():
        print(f"  {name:<18} n={len(values):<5} p50={1000 * statistics.median(values):7.1f} ms"
              f"  p99={1000 * _pct(values, 0.99):7.1f} ms  max={1000 * max(values):7.1f} ms")
    for name, values in rows.items():
        assert _pct(values, 0.99) < P99_BOUND_S, f"{name} p99 {_pct(values, 0.99):.2f} s"
    assert time.monotonic() - t_begin < TEST_BUDGET_S
