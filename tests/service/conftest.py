"""Fixtures over the shipped harness (scheduler.testing): the real daemon and real runner
processes on loopback, always stopped; helpers the service tests share."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import Client
from client.timeline import running_windows
from scheduler.testing import TUNESCHED, DaemonProcess, RunnerProcess, wait_for
from simpletvm.spec import JobSpec

# a daemon that gives up on silent runners and their leases quickly
FAST_FAILOVER = ["--runner-timeout", "6", "--lease-ttl", "6"]


def start_daemon(state: Path, log: Path, listen: str = "127.0.0.1:0",
                 extra: list[str] | None = None) -> DaemonProcess:
    """`tunesched scheduler` (FAST_FAILOVER, then `extra`) on `listen`, default a free port."""
    return DaemonProcess(state, log, [*FAST_FAILOVER, *(extra or [])], listen)


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a `tunesched` client command as a subprocess."""
    return subprocess.run([*TUNESCHED, *args], capture_output=True, text=True, timeout=timeout)


def health(address: str, service: str = "") -> str:
    """The gRPC health status name ("SERVING", ...) the daemon reports for `service`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def connected_runners(address: str) -> int:
    with Client(address, timeout=5) as client:
        return sum(r.connected for r in client.runners())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict]:
    """A daemon and two runners sharing one host and work dir (as two containers on a box)."""
    d = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")
    runners = [RunnerProcess(d.address, f"r{i}", "box", tmp_path / "work",
                             tmp_path / f"runner{i}.log") for i in (1, 2)]
    try:
        wait_for(lambda: connected_runners(d.address) == 2, 60, "two runners to register")
        yield {"daemon": d, "runners": runners, "address": d.address, "tmp": tmp_path}
    finally:
        for r in runners:
            r.stop()
        d.stop()


def assert_profiles_ran_alone(leases: list[dict]) -> None:
    """No stage ran on a profile's host while the profile's own process ran."""
    for p in (x for x in leases if x["stage"] == "profile"):
        assert p["exclusivity"] == "host"
        for other in leases:
            if other is p or other["host_id"] != p["host_id"]:
                continue
            for a, b in running_windows(other):
                assert not (a < p["child_finished"] and p["child_started"] < b), (p, other)


def state_files(state: Path, job: str, kind: str = "state") -> dict[str, bytes]:
    """The daemon's committed `kind` bundle of `job` (state, model), as {path: bytes}."""
    data = (state.parent / f"{state.stem}-blobs" / job / f"{kind}.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def assert_exact_records(address: str, state: Path, job: str, trials: int, out: Path) -> None:
    """Done, with exactly `trials` records and measured hashes, none of them twice; the
    verification's records (at most verify_top per task, and its default schedule) are among
    them."""
    with Client(address, timeout=10) as client:
        info = client.get(job)
        assert info.state == "done", info.error
        assert info.trials_done == trials
        client.fetch_result(job, out)
    assert json.loads((out / "report.json").read_text())["trials"] == trials

    def traces(kind: str) -> list[tuple[str, str]]:  # (task folder, trace)
        return [(f.parent.name if kind == "search" else f.parent.parent.name,
                 json.dumps(json.loads(ln)[1][0], sort_keys=True))
                for f in sorted((out / "records").rglob("database_tuning_record.json"))
                if (f.parent.name == "verified") == (kind == "verified")
                for ln in f.read_text().splitlines() if ln.strip()]

    searched, verified = traces("search"), traces("verified")
    assert len(searched) == trials, f"{len(searched)} records for a budget of {trials}"
    assert len(set(searched)) == trials, "a candidate was recorded twice"
    tasks = len([d for d in (out / "records").iterdir() if d.is_dir()])
    # each verified task's leading candidates and its default (untransformed) schedule
    assert 2 <= len(verified) == len(set(verified)) <= (JobSpec.verify_top + 1) * tasks
    default = json.dumps([[["GetSBlock", [], ["root", "main"], ["b0"]]], []])  # changes nothing
    assert {v for v in verified if v[1] != default} <= set(searched)
    files = state_files(state, job)
    hashes = [h for name, data in files.items() if name.endswith("measured.txt")
              for h in data.decode().split()]
    assert len(hashes) == trials and len(set(hashes)) == trials, hashes
