"""Prometheus metrics of a runner agent (prometheus_client), served on `--metrics HOST:PORT`.

Same conventions as the daemon's (scheduler.service.metrics): the `tunesched_runner_` prefix,
base units, `_total` counters, no job-id or lease-id labels. One registry per RunnerMetrics.

    tunesched_runner_stages_total{stage,outcome}       stage processes that ended here: ok,
                                                       error, timeout, crashed, or revoked
                                                       (its lease was taken back); error also
                                                       for a stage that failed before its
                                                       process started (a bad job bundle)
    tunesched_runner_stage_cpu_seconds_total{stage}    user + system CPU seconds of those
                                                       processes and their reaped workers, as
                                                       the stage process measured itself (0
                                                       for one killed or crashed before it
                                                       reported)
    tunesched_runner_foreign_load                      the foreign load (0..1) of the latest
                                                       heartbeat
    tunesched_runner_leases                            leases this runner holds now (stages
                                                       starting or running)
    tunesched_runner_fork_server_restarts_total        warm fork servers started again after
                                                       the previous one died (multiprocessing
                                                       restarts it when the next stage starts)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


def fork_server_pid() -> int | None:
    """The pid of this process's multiprocessing fork server (None: none started). Read from
    multiprocessing's own bookkeeping, which is private: None where it is not there."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


class RunnerMetrics:
    """A runner's metrics and the registry its `/metrics` serves. Thread-safe."""

    def __init__(self, fork_server: Callable[[], int | None] = fork_server_pid) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stages = Counter("tunesched_runner_stages", "Stage processes that ended on this "
                              "runner, by outcome.", ["stage", "outcome"], registry=r)
        self.cpu = Counter("tunesched_runner_stage_cpu_seconds", "User + system CPU seconds "
                           "of the stage processes that ended here (with their workers).",
                           ["stage"], registry=r)
        self.foreign_load = Gauge("tunesched_runner_foreign_load", "Foreign load (0..1) this "
                                  "runner reported in its latest heartbeat.", registry=r)
        self.leases = Gauge("tunesched_runner_leases", "Leases this runner holds now.",
                            registry=r)
        self.fork_restarts = Counter("tunesched_runner_fork_server_restarts", "Warm fork "
                                     "servers started again after the previous one died.",
                                     registry=r)
        self._fork_server = fork_server
        self._fork_pid: int | None = None
        self._lock = threading.Lock()

    def stage_ended(self, stage: str, outcome: str, cpu_s: float) -> None:
        """A stage process ended with `outcome`, having used `cpu_s` CPU seconds."""
        self.stages.labels(stage, outcome).inc()
        self.cpu.labels(stage).inc(max(0.0, cpu_s))

    def fork_server_seen(self) -> None:
        """After the executor warmed up or started a stage: a fork server with another pid
        than the last one seen was started again."""
        pid = self._fork_server()
        with self._lock:
            if pid is not None and self._fork_pid is not None and pid != self._fork_pid:
                self.fork_restarts.inc()
            if pid is not None:
                self._fork_pid = pid

    def serve(self, address: str) -> tuple[WSGIServer, str]:
        """Serve `/metrics` at http://`address` ("HOST:PORT", port 0 picks one) from a
        thread; the server (`shutdown()` stops it) and the address it listens on."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--metrics wants HOST:PORT, got {address!r}")
        try:
            server, _ = start_http_server(int(port), host, self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {address}: {exc.strerror}") from exc
        return server, f"{host}:{server.server_port}"
