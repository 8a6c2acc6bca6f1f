"""Prometheus metrics: counts after a known sequence of jobs through the real daemon and a
runner with sleep stages, the foreign load wait under the daemon's own clock, and `/metrics`
over HTTP from a `tunesched scheduler` process, parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.core import TERMINAL_JOB_STATES
from scheduler.service.config import DaemonConfig
from scheduler.service.daemon import Daemon
from scheduler.service.links import RunnerLink
from scheduler.testing import LocalCluster, wait_for
from simpletvm.spec import JobSpec

from .conftest import cli, start_daemon

QUICK = {"extract": 0.02, "search": 0.02, "build": 0.02, "profile": 0.02, "learn": 0.02,
         "compile": 0.02}
MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8, batch_size=4)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the exposition text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_and_histograms_count_what_the_jobs_did(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, {"box": 1}, seconds=QUICK) as cluster:
        client = cluster.client
        jobs = [client.submit(MLP).job_id, client.submit(MLP.with_(trials=4, fresh=True)).job_id]
        cancelled = client.submit(MLP.with_(target={"kind": "cuda"})).job_id  # no GPU here
        client.cancel(cancelled)
        for job in jobs:
            wait_for(lambda j=job: client.get(j).state in TERMINAL_JOB_STATES, 30,
                     f"{job} to end", interval=0.05)
        leases = client.timeline()
        records = sum(k.records for k in client.record_stats())
        text = generate_latest(cluster.service.daemon.metrics.registry).decode()
    got = samples(text)
    per_stage = Counter(x["stage"] for x in leases)
    assert all(x["outcome"] == "finished" for x in leases)
    for stage, count in per_stage.items():
        labels = (("stage", stage), ("target_kind", "llvm"))
        assert got[("tunesched_leases_granted_total", labels)] == count, stage
        assert got[("tunesched_stage_duration_seconds_count", labels)] == count, stage
    assert sum(v for (name, _), v in got.items()
               if name == "tunesched_leases_granted_total") == len(leases)
    assert got[("tunesched_lease_grant_latency_seconds_count", ())] == len(leases)
    assert got[("tunesched_trials_measured_total", ())] == 12
    assert got[("tunesched_jobs", (("state", "done"),))] == 2
    assert got[("tunesched_jobs", (("state", "cancelled"),))] == 1
    assert got[("tunesched_jobs", (("state", "running"),))] == 0
    assert got[("tunesched_runners_connected", ())] == 1
    assert got[("tunesched_hosts_connected", ())] == 1
    assert got[("tunesched_records", ())] == records == 12
    assert got[("tunesched_sqlite_commit_seconds_count", ())] >= len(leases)
    paused = sum(b - a for x in leases for a, b in zip(x["paused_at"], x["resumed_at"],
                                                         strict=False))
    assert abs(got[("tunesched_paused_seconds_total", ())] - paused) < 1e-6
    # the sum of stage durations is what the leases lasted
    total = sum(x["ended_at"] - x["granted_at"] for x in leases)
    summed = sum(v for (name, _), v in got.items()
                 if name == "tunesched_stage_duration_seconds_sum")
    assert abs(summed - total) < 1e-6 * max(1, len(leases))
    # no label names a job or a candidate
    assert not any(label in ("job_id", "job", "candidate", "lease_id")
                   for (_, labels) in got for label, _ in labels)


def test_the_scheduler_serves_metrics_over_http_when_asked(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "s.db", tmp_path / "daemon.log",
                          extra=["--http", "127.0.0.1:0"])
    try:
        line = daemon.proc.stdout.readline().decode()
        url = re.search(r"metrics at (\S+)", line).group(1)
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            got = samples(reply.read().decode())
        assert got[("tunesched_runners_connected", ())] == 0
        assert ("tunesched_jobs", (("state", "queued"),)) in got
        info = [labels for (name, labels) in got if name == "tunesched_build_info"]
        assert info and dict(info[0])["version"] != ""
    finally:
        daemon.stop()
    bad = cli("scheduler", "--state", str(tmp_path / "t.db"), "--http", "nowhere", timeout=60)
    assert bad.returncode == 2 and "--http" in bad.stderr and "HOST:PORT" in bad.stderr


def _finish_stage(daemon: Daemon, link: RunnerLink, job_id: str) -> str:
    """Report the job's running stage finished (an empty result); its kind."""
    stage = daemon.core.jobs[job_id].stage
    lease = daemon.core.leases[stage.lease_id]
    daemon.runner_result(link, {
        "lease_id": lease.lease_id, "epoch": lease.epoch, "job_id": job_id,
        "stage_id": stage.stage_id, "stage": str(stage.kind), "ok": True, "result": {},
        "error": ""})
    return str(stage.kind)


@pytest.mark.parametrize(("load", "held"), [(0.9, 15.0), (0.1, 0.0)])
def test_foreign_load_wait_counts_the_seconds_a_due_profile_was_held(
        tmp_path: Path, load: float, held: float) -> None:
    now = [1000.0]
    daemon = Daemon(DaemonConfig(tmp_path / "s.db", runner_timeout_s=600.0,
                                 clock=lambda: now[0]))

    def waited() -> float:
        return daemon.metrics.registry.get_sample_value(
            "tunesched_foreign_load_wait_seconds_total")

    try:
        link = daemon.runner_connected({"runner_id": "r1", "host_id": "box", "cores": [0, 1],
                                        "memory_mb": 65536, "target_kinds": ["llvm"]})
        daemon.runner_heartbeat(link, load, ())
        job = daemon.submit(MLP, b"").spec.job_id
        for stage in ("extract", "search", "build"):  # foreign load, but no profile due
            now[0] += 1.0
            assert _finish_stage(daemon, link, job) == stage
        assert waited() == 0.0
        profile = daemon.core.jobs[job].stage
        assert str(profile.kind) == "profile"
        now[0] += 10.0
        daemon.tick()  # an idle tick counts the time so far
        assert waited() == min(held, 10.0)
        assert (profile.lease_id is None) == (held > 0)
        now[0] += 5.0
        daemon.runner_heartbeat(link, 0.0, ())  # the load drops: the profile starts
        assert profile.lease_id is not None
        assert waited() == held
        now[0] += 20.0
        daemon.tick()
        assert waited() == held  # nothing held any more
    finally:
        daemon.stop()
