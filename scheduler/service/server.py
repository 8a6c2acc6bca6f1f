"""Build and run the daemon's gRPC server."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proto import tunesched_pb2_grpc as pb_grpc
from proto.transport import MAX_MESSAGE_BYTES
from scheduler.service.config import DaemonConfig
from scheduler.service.daemon import Daemon
from scheduler.service.servicers import RunnerChannelServicer, SchedulerServicer
from scheduler.service.web import WebServer

log = logging.getLogger(__name__)

SERVICES = ("tunesched.v1.Scheduler", "tunesched.v1.RunnerChannel")


def create_server(daemon: Daemon, address: str, tls: tuple[bytes, bytes] | None = None,
                  max_workers: int = 4096) -> tuple[grpc.Server, int]:
    """A server bound to `address` ("host:0" picks a port); returns it and its port.

    Every runner stream and every watcher holds a server thread for its lifetime (and a
    runner stream a reader thread besides), so the pool is sized for a thousand runners with
    their watchers and calls (threads are created on demand; an RPC beyond the pool is
    RESOURCE_EXHAUSTED). `tls` is (key, cert) PEM.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=max_workers,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    pb_grpc.add_SchedulerServicer_to_server(SchedulerServicer(daemon), server)
    pb_grpc.add_RunnerChannelServicer_to_server(RunnerChannelServicer(daemon), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if tls is not None:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}: is the port in use?")
    return server, port


class Service:
    """A running daemon and its servers (gRPC; the dashboard and metrics over HTTP when
    `http` names an address); `stop()` shuts them down cleanly."""

    def __init__(self, config: DaemonConfig, address: str,
                 tls: tuple[bytes, bytes] | None = None, http: str = "",
                 http_tls_files: tuple[str, str] | None = None) -> None:
        self.daemon = Daemon(config)
        self.server, self.port = create_server(self.daemon, address, tls)
        host = address.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"
        self._http = (http, http_tls_files)
        self.web: WebServer | None = None

    def start(self) -> Service:
        self.server.start()
        self.daemon.start()
        if self._http[0]:
            self.web = WebServer(self.daemon, *self._http).start()
        return self

    def stop(self, grace: float = 2.0) -> None:
        if self.web is not None:
            self.web.stop()
        self.daemon.begin_stop()
        self.server.stop(grace).wait()
        self.daemon.stop()


def serve(config: DaemonConfig, address: str, tls: tuple[bytes, bytes] | None = None,
          ready: threading.Event | None = None, http: str = "",
          http_tls_files: tuple[str, str] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (state stays consistent on disk)."""
    service = Service(config, address, tls, http, http_tls_files).start()
    if config.auth.clients_open and not address.startswith(("127.", "localhost", "[::1]")):
        log.warning("no --users-file: any client that reaches %s can submit and cancel jobs",
                    address)
    log.warning("tunesched scheduler listening on %s (state %s, policy %s)", service.address,
                config.state_path, config.core.policy)
    print(f"listening on {service.address}", flush=True)
    if service.web is not None:
        print(f"dashboard at {service.web.url} and metrics at {service.web.url}metrics",
              flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if ready:
        ready.set()
    done.wait()
    service.stop()
