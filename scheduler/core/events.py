"""Events: what happened, told to `SchedulerState.handle(event, now)`.

Frozen dataclasses named in the past tense. Each has a `cause` (a request or message id) that
the commands it produces carry on, so a log line can be traced back to its stimulus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from simpletvm.spec import JobSpec

from .errors import ConfigError

__all__ = [
    "EVENT_TYPES",
    "Event",
    "HeartbeatReceived",
    "HeartbeatsReceived",
    "JobCancelled",
    "JobSubmitted",
    "LeaseExpired",
    "RunnerLost",
    "RunnerRegistered",
    "StageFailed",
    "StageFinished",
    "Tick",
    "event_from_dict",
    "event_to_dict",
]


@dataclass(frozen=True, slots=True)
class RunnerRegistered:
    """A runner attached to a host, offering these cores, GPUs and memory. Registering an id
    that is already known replaces it (its old leases are revoked)."""

    runner_id: str
    host_id: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...] = ()
    memory_mb: int = 0
    target_kinds: tuple[str, ...] = ("llvm",)
    cause: str = ""


@dataclass(frozen=True, slots=True)
class RunnerLost:
    """A runner disconnected or was declared dead; its leases are revoked."""

    runner_id: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    """A runner is alive. foreign_load: fraction (0..1) of host CPU used by processes no lease
    explains; gpu_util: optional per-GPU utilisation (0..1) in GPU id order."""

    runner_id: str
    foreign_load: float = 0.0
    gpu_util: tuple[float, ...] = ()
    cause: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatsReceived:
    """The heartbeats of several runners since the last one (the daemon logs one such event
    a clock tick instead of one per heartbeat): each runner's latest foreign load and GPU
    utilisation, in `runner_ids` order. Handled as each of them in turn."""

    runner_ids: tuple[str, ...] = ()
    foreign_loads: tuple[float, ...] = ()
    gpu_utils: tuple[tuple[float, ...], ...] = ()
    cause: str = ""

    def __post_init__(self) -> None:
        if not len(self.runner_ids) == len(self.foreign_loads) == len(self.gpu_utils):
            raise ValueError("HeartbeatsReceived needs one foreign load and one GPU "
                             "utilisation per runner id")


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    """A client submitted a tuning job."""

    spec: JobSpec
    cause: str = ""


@dataclass(frozen=True, slots=True)
class JobCancelled:
    """A client cancelled a job."""

    job_id: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class StageFinished:
    """A runner reports a stage done under a lease. result: e.g. {"trials": 32,
    "best_latency_us": 55.4} for profile, {"exhausted": True} for search."""

    lease_id: str
    epoch: int
    job_id: str
    stage_id: str
    result: Mapping[str, Any] = field(default_factory=dict)
    cause: str = ""


@dataclass(frozen=True, slots=True)
class StageFailed:
    """A runner reports a stage failed under a lease."""

    lease_id: str
    epoch: int
    job_id: str
    stage_id: str
    error: str = ""
    cause: str = ""


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """Someone outside the core decided this lease expired (the core also checks expiry
    itself on every event)."""

    lease_id: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; lets the core expire leases when nothing else happens."""

    cause: str = ""


Event = (RunnerRegistered | RunnerLost | HeartbeatReceived | HeartbeatsReceived | JobSubmitted
         | JobCancelled | StageFinished | StageFailed | LeaseExpired | Tick)

EVENT_TYPES: Mapping[str, type] = {
    cls.__name__: cls
    for cls in (RunnerRegistered, RunnerLost, HeartbeatReceived, HeartbeatsReceived,
                JobSubmitted, JobCancelled, StageFinished, StageFailed, LeaseExpired, Tick)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """Plain-data form: {"type": class name, field: value, ...} (tuples become lists)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, JobSpec):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from `event_to_dict()` output."""
    cls = EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ConfigError(f"unknown event type {data.get('type')!r}")
    kwargs = {k: v for k, v in data.items() if k != "type"}
    for name in ("cores", "gpus", "target_kinds", "gpu_util", "runner_ids", "foreign_loads"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    if "gpu_utils" in kwargs:
        kwargs["gpu_utils"] = tuple(tuple(u) for u in kwargs["gpu_utils"])
    if cls is JobSubmitted:
        kwargs["spec"] = JobSpec.from_dict(kwargs["spec"])
    return cls(**kwargs)
