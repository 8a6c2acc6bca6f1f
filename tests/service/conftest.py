"""Fixtures over the shipped harness (scheduler.testing): the real daemon and real runner
processes on loopback, always stopped; helpers the service tests share."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import Client
from client.timeline import running_windows
from scheduler.testing import TUNESCHED, DaemonProcess, RunnerProcess, wait_for

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
