"""Service errors, and the one table that maps them to gRPC status codes.

    ServiceError             base; INTERNAL
    ├── InvalidRequest       bad input from a client or runner; INVALID_ARGUMENT
    ├── NotFound             unknown job or runner id; NOT_FOUND
    ├── FailedPrecondition   the job is not in a state that allows this; FAILED_PRECONDITION
    ├── Unauthenticated      missing or wrong token; UNAUTHENTICATED
    ├── PermissionDenied     another user's job; PERMISSION_DENIED
    └── ResourceExhausted    over a size limit (an uploaded model); RESOURCE_EXHAUSTED
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base of the errors a servicer turns into a gRPC status."""

    code = grpc.StatusCode.INTERNAL


class InvalidRequest(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception (INTERNAL for anything unexpected)."""
    return exc.code if isinstance(exc, ServiceError) else grpc.StatusCode.INTERNAL


MAX_DETAILS = 500  # characters; gRPC clients refuse status trailers over 8 KiB


def one_line(text: str) -> str:
    """`text` as a gRPC status detail: one line (breaks folded into spaces), and short even
    when it quotes a huge client-sent id."""
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS - 3] + "..."
