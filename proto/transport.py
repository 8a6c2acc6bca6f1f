"""The transport every side shares: message limits, chunking, and the client side's channels
(with a retry policy) and credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc

# The largest single gRPC message either side receives or sends (grpc's default is 4 MiB): a
# bigger one is refused by gRPC itself with RESOURCE_EXHAUSTED before any servicer runs. Models
# and bundles travel as streams of CHUNK_BYTES pieces, so this bounds one chunk or request, not
# a model (the daemon's --max-model-mb bounds a whole uploaded model).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1 << 20

# Calls that fail with UNAVAILABLE (the daemon restarting, a dropped connection) are retried
# with exponential backoff by gRPC itself; SubmitJob is safe to retry (its request id makes a
# retry return the same job), and the rest read or cancel. A streamed upload is retried only
# while it fits gRPC's retry buffer.
RETRY_POLICY = {"methodConfig": [{
    "name": [{"service": "tunesched.v1.Scheduler"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]}


def chunks(data: bytes) -> Iterator[bytes]:
    """`data` in pieces of at most CHUNK_BYTES (one empty piece for empty data)."""
    for i in range(0, max(len(data), 1), CHUNK_BYTES):
        yield data[i:i + CHUNK_BYTES]


def open_channel(address: str, tls_ca: bytes | None = None) -> grpc.Channel:
    """A channel to the scheduler, retrying UNAVAILABLE calls; TLS when `tls_ca` (PEM of the
    CA or self-signed cert)."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.enable_retries", 1),
               ("grpc.service_config", json.dumps(RETRY_POLICY)),
               # reconnect within the retries' backoff (grpc's first wait is 1 s)
               ("grpc.initial_reconnect_backoff_ms", 100),
               ("grpc.max_reconnect_backoff_ms", 3000)]
    if tls_ca is not None:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=tls_ca),
                                   options=options)
    return grpc.insecure_channel(address, options=options)


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the bearer token (nothing without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def read_pem(path: str | Path | None) -> bytes | None:
    """The bytes of a PEM file, or None."""
    return Path(path).read_bytes() if path else None
