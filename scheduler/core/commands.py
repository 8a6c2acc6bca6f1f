"""Commands: what the core asks the outside world to do, returned by `handle()`.

Frozen dataclasses named as imperatives. Each carries the `cause` of the event that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError
from .leases import Lease

__all__ = [
    "COMMAND_TYPES",
    "Command",
    "JobRejected",
    "JobStateChanged",
    "JobWaiting",
    "MoveJob",
    "PauseLease",
    "ResultRejected",
    "ResumeLease",
    "RevokeLease",
    "StartStage",
    "command_from_dict",
    "command_to_dict",
]


@dataclass(frozen=True, slots=True)
class StartStage:
    """Run stage `stage_id` (kind, round, attempt) of `job_id` on `runner_id` under `lease`.
    The result must come back with lease.lease_id and lease.epoch."""

    lease: Lease
    job_id: str
    stage_id: str
    kind: str
    round: int
    attempt: int
    runner_id: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class RevokeLease:
    """Stop whatever runs under `lease_id` on `runner_id` (reason: runner lost, job cancelled,
    expired). Any result that still arrives for it will be rejected. `expired`: the lease ran
    out of time (no heartbeat from its runner), rather than being taken back."""

    lease_id: str
    runner_id: str
    reason: str
    cause: str = ""
    expired: bool = False


@dataclass(frozen=True, slots=True)
class PauseLease:
    """Stop (SIGSTOP) the stage under `lease_id` on `runner_id` until ResumeLease: a
    host-exclusive profile needs the host. Sent before that profile's StartStage."""

    lease_id: str
    epoch: int
    runner_id: str
    reason: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class ResumeLease:
    """Continue (SIGCONT) the stage under `lease_id` on `runner_id`: the profile has ended."""

    lease_id: str
    epoch: int
    runner_id: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    """Job `job_id` moved from `old` to `new` ("" for a new job)."""

    job_id: str
    old: str
    new: str
    reason: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class MoveJob:
    """Ship job `job_id`'s directory (records, cost model) from `from_host` to `to_host`:
    its old host lost all its runners and it was placed again."""

    job_id: str
    from_host: str
    to_host: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class ResultRejected:
    """A stage result arrived under a dead lease or a stale epoch; it was ignored."""

    lease_id: str
    epoch: int
    job_id: str
    stage_id: str
    reason: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class JobRejected:
    """A submission was refused (duplicate id or invalid spec)."""

    job_id: str
    reason: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class JobWaiting:
    """A queued job no registered runner can ever host, and why (one line); reason "" when it
    can be placed again."""

    job_id: str
    reason: str
    cause: str = ""


Command = (StartStage | RevokeLease | PauseLease | ResumeLease | JobStateChanged | MoveJob
           | ResultRejected | JobRejected | JobWaiting)

COMMAND_TYPES: Mapping[str, type] = {
    cls.__name__: cls
    for cls in (StartStage, RevokeLease, PauseLease, ResumeLease, JobStateChanged, MoveJob,
                ResultRejected, JobRejected, JobWaiting)
}


def command_to_dict(command: Command) -> dict[str, Any]:
    """Plain-data form: {"type": class name, field: value, ...}."""
    out: dict[str, Any] = {"type": type(command).__name__}
    for f in fields(command):
        value = getattr(command, f.name)
        out[f.name] = value.to_dict() if isinstance(value, Lease) else value
    return out


def command_from_dict(data: Mapping[str, Any]) -> Command:
    """Rebuild a command from `command_to_dict()` output."""
    cls = COMMAND_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ConfigError(f"unknown command type {data.get('type')!r}")
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if cls is StartStage:
        kwargs["lease"] = Lease.from_dict(kwargs["lease"])
    return cls(**kwargs)
