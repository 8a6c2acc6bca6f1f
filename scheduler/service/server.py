"""Build and run the daemon's gRPC server."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proto import tunesched_pb2_grpc as pb_grpc
from scheduler.service.daemon import Daemon, DaemonConfig
from scheduler.service.servicers import RunnerChannelServicer, SchedulerServicer

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVICES = ("tunesched.v1.Scheduler", "tunesched.v1.RunnerChannel")


def create_server(daemon: Daemon, address: str,
                  max_workers: int = 64) -> tuple[grpc.Server, int]:
    """A started-to-be server bound to `address` ("host:0" picks a port); returns it and port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    pb_grpc.add_SchedulerServicer_to_server(SchedulerServicer(daemon), server)
    pb_grpc.add_RunnerChannelServicer_to_server(RunnerChannelServicer(daemon), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}: is the port in use?")
    return server, port


class Service:
    """A running daemon and its server; `stop()` shuts both down cleanly."""

    def __init__(self, config: DaemonConfig, address: str) -> None:
        self.daemon = Daemon(config)
        self.server, self.port = create_server(self.daemon, address)
        host = address.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"

    def start(self) -> Service:
        self.server.start()
        self.daemon.start()
        return self

    def stop(self, grace: float = 2.0) -> None:
        self.daemon.begin_stop()
        self.server.stop(grace).wait()
        self.daemon.stop()


def serve(config: DaemonConfig, address: str, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (state stays consistent on disk)."""
    service = Service(config, address).start()
    log.warning("tunesched scheduler listening on %s (state %s, policy %s)", service.address,
                config.state_path, config.policy)
    print(f"listening on {service.address}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if ready:
        ready.set()
    done.wait()
    service.stop()
