"""Fixtures that start the real daemon and real runner processes on loopback, and stop them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.api import Client
from client.timeline import running_windows

TUNESCHED = [sys.executable, "-m", "client"]


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             interval: float = 0.2) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """`tunesched scheduler` as a child process."""

    def __init__(self, state: Path, log: Path, listen: str = "127.0.0.1:0",
                 extra: list[str] | None = None) -> None:
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [*TUNESCHED, "scheduler", "--listen", listen, "--state", str(state),
             "--runner-timeout", "6", "--lease-ttl", "6", *(extra or [])],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise AssertionError(f"daemon did not start: {line!r}; log: {log.read_text()}")
        self.address = match.group(1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Runner:
    """`tunesched runner` as a child process (its stage processes are its children)."""

    def __init__(self, address: str, runner_id: str, host_id: str, work: Path, log: Path,
                 cores: str | None = None) -> None:
        self.log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        cmd = [*TUNESCHED, "runner", "--scheduler", address, "--runner-id", runner_id,
               "--host-id", host_id, "--work-dir", str(work), "--gpus", "none"]
        if cores:
            cmd += ["--cores", cores]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


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
    daemon = Daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")
    runners = [Runner(daemon.address, f"r{i}", "box", tmp_path / "work",
                      tmp_path / f"runner{i}.log") for i in (1, 2)]
    try:
        wait_for(lambda: connected_runners(daemon.address) == 2, 60, "two runners to register")
        yield {"daemon": daemon, "runners": runners, "address": daemon.address,
               "tmp": tmp_path}
    finally:
        for r in runners:
            r.stop()
        daemon.stop()


def assert_profiles_ran_alone(leases: list[dict]) -> None:
    """No stage ran on a profile's host while the profile's own process ran."""
    for p in (x for x in leases if x["stage"] == "profile"):
        assert p["exclusivity"] == "host"
        for other in leases:
            if other is p or other["host_id"] != p["host_id"]:
                continue
            for a, b in running_windows(other):
                assert not (a < p["child_finished"] and p["child_started"] < b), (p, other)
