"""Liveness/readiness of a scheduler that serves TLS: kubelet's native gRPC probes speak
plaintext only, so the TLS overlay runs this instead (an exec probe, in the scheduler's image).

    python health.py ADDRESS CA_FILE SERVER_NAME

Exit 0 when grpc.health.v1 Check(service "") at ADDRESS answers SERVING over TLS, trusting
CA_FILE and expecting a certificate for SERVER_NAME; 1 otherwise (one line on stderr says why).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python health.py ADDRESS CA_FILE SERVER_NAME", file=sys.stderr)
        return 2
    address, ca_file, server_name = argv
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(f.read())
    options = [("grpc.ssl_target_name_override", server_name)]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=4)
        except grpc.RpcError as exc:
            print(f"health check of {address} failed: {exc.code().name}", file=sys.stderr)
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
