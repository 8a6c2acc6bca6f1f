"""Client-side transport shared by the CLI client and the runners: channels and credentials."""

from __future__ import annotations

from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def open_channel(address: str, tls_ca: bytes | None = None) -> grpc.Channel:
    """A channel to the scheduler; TLS when `tls_ca` (PEM of the CA or self-signed cert)."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
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
