"""The daemon's costs at scale. Heartbeats: one logged event a clock tick for those that only
extend leases, at once for one that moves its host across the foreign load threshold.
Snapshots: two events a job apart at least. Replay after a crash gives the state the live
daemon had."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from scheduler.core import SchedulerConfig
from scheduler.service.config import DaemonConfig
from scheduler.service.daemon import Daemon
from simpletvm.spec import JobSpec

SPEC = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8, batch_size=4)


def _events(daemon: Daemon, after: int) -> list[dict]:
    return [event for _, _, event in daemon.store.events_after(after)]


def test_heartbeats_are_logged_once_a_tick_unless_they_cross_the_threshold(
        tmp_path: Path) -> None:
    now = [1000.0]
    config = DaemonConfig(tmp_path / "s.db", runner_timeout_s=600.0, clock=lambda: now[0],
                          core=SchedulerConfig(lease_ttl_s=30.0))
    daemon = Daemon(config)
    links = [daemon.runner_connected({"runner_id": f"r{i}", "host_id": f"h{i}",
                                      "cores": [0, 1], "memory_mb": 65536,
                                      "target_kinds": ["llvm"]}) for i in range(3)]
    for _ in range(3):
        daemon.submit(SPEC, b"")
    leases = dict(daemon.core.leases)
    assert len(leases) == 3  # one extract on each host
    seq = daemon.store.last_seq()
    for beat in range(5):  # 15 heartbeats below the threshold: none logged yet
        now[0] += 2.0
        for link in links:
            daemon.runner_heartbeat(link, 0.1 * beat / 4, ())
    assert _events(daemon, seq) == []
    assert all(daemon.core.leases[x].expiry == leases[x].expiry for x in leases)
    now[0] += 0.5
    daemon.tick()  # one event for all three runners, their latest loads
    logged = _events(daemon, seq)
    assert [e["type"] for e in logged] == ["HeartbeatsReceived"]
    assert (logged[0]["runner_ids"], logged[0]["foreign_loads"]) == (["r0", "r1", "r2"],
                                                                      [0.1, 0.1, 0.1])
    assert all(daemon.core.leases[x].expiry == now[0] + 30.0 for x in leases)
    assert daemon.core.hosts["h1"].foreign_load == 0.1
    seq = daemon.store.last_seq()
    daemon.tick()  # nothing heard since: nothing logged
    assert _events(daemon, seq) == []
    now[0] += 1.0
    daemon.runner_heartbeat(links[1], 0.9, (0.5,))  # crosses 0.25: handled at once
    assert [(e["type"], e["runner_id"]) for e in _events(daemon, seq)] == [
        ("HeartbeatReceived", "r1")]
    assert daemon.core.hosts["h1"].foreign_load == 0.9
    expiries = {x: daemon.core.leases[x].expiry for x in leases}
    # a crash now (no stop, no snapshot): the log alone gives the same leases and loads
    recovered = Daemon(config)
    assert {x: recovered.core.leases[x].expiry for x in leases} == expiries
    assert [recovered.core.hosts[f"h{i}"].foreign_load for i in range(3)] == [0.1, 0.9, 0.1]
    live, replayed = daemon.core.snapshot(), recovered.core.snapshot()
    for state in (live, replayed):
        state.pop("events_handled")  # idle ticks count live and are not logged
    assert json.dumps(replayed, sort_keys=True) == json.dumps(live, sort_keys=True)
    recovered.stop()
    daemon.stop()


def test_snapshots_come_two_events_a_job_apart_and_replay_after_one_is_exact(
        tmp_path: Path) -> None:
    now = [1000.0]
    config = DaemonConfig(tmp_path / "s.db", runner_timeout_s=600.0, clock=lambda: now[0],
                          snapshot_every=4)
    daemon = Daemon(config)
    links = [daemon.runner_connected({"runner_id": f"r{i}", "host_id": f"h{i}",
                                      "cores": [0, 1], "memory_mb": 65536,
                                      "target_kinds": ["llvm"]}) for i in range(2)]
    jobs = [daemon.submit(SPEC, b"").spec.job_id for _ in range(5)]
    seqs = []
    for _ in range(6):  # finish every running stage, six times over
        for job in jobs:
            stage = daemon.core.jobs[job].stage
            if stage is None or stage.lease_id is None:
                continue
            lease = daemon.core.leases[stage.lease_id]
            now[0] += 1.0
            daemon.runner_result(links[int(lease.holder[1:])], {
                "lease_id": lease.lease_id, "epoch": lease.epoch, "job_id": job,
                "stage_id": stage.stage_id, "stage": str(stage.kind), "ok": True,
                "result": {}, "error": ""})
            snap = daemon.store.latest_snapshot()
            seqs.append(snap[0] if snap else 0)
    taken = sorted(set(seqs) - {0})
    assert len(taken) >= 2, f"snapshots at {taken}"
    # with the 5 jobs in: never closer than two events per job (10), though snapshot_every
    # says 4
    assert all(b - a >= 10 for a, b in itertools.pairwise(taken)), taken
    assert daemon.store.last_seq() > taken[-1]  # events after the latest snapshot to replay
    recovered = Daemon(config)  # a crash: the latest snapshot plus the events after it
    live, replayed = daemon.core.snapshot(), recovered.core.snapshot()
    for state in (live, replayed):
        state.pop("events_handled")
    assert json.dumps(replayed, sort_keys=True) == json.dumps(live, sort_keys=True)
    recovered.stop()
    daemon.stop()


def test_an_event_that_holds_the_lock_too_long_is_logged_with_where_the_time_went(
        tmp_path: Path, monkeypatch, caplog) -> None:
    daemon = Daemon(DaemonConfig(tmp_path / "s.db"))
    try:
        with caplog.at_level("WARNING", logger="scheduler.service.daemon"):
            daemon.submit(SPEC, b"")  # fast: nothing logged
            assert not [r for r in caplog.records if "under the lock" in r.getMessage()]
            monkeypatch.setattr("scheduler.service.daemon.SLOW_EVENT_S", 0.0)
            daemon.submit(SPEC, b"")
        [line] = [r.getMessage() for r in caplog.records if "under the lock" in r.getMessage()]
        assert line.startswith("JobSubmitted took ") and "core" in line and "SQLite" in line
    finally:
        daemon.stop()
