"""The daemon's records: what it tells clients about a job (JobRecord) and about each lease
(LeaseRecord). Plain dataclasses, stored as JSON in SQLite; `projection` changes them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from scheduler.core.jobs import TERMINAL_JOB_STATES
from simpletvm.spec import JobSpec


@dataclass
class JobRecord:
    """One job as clients see it: its spec and what the daemon has learned of it since.

    `request_id` is the client's idempotency key, scoped per user; `state_version` counts the
    learn stages committed to the job's state bundle (-1: none yet, extract has not committed).
    `eta_s`: the core's estimate of the seconds left (0 once terminal)."""

    spec: JobSpec
    request_id: str = ""
    submitted_at: float = 0.0
    state: str = "queued"
    stage: str = ""
    round: int = 0
    trials_done: int = 0
    best_latency_us: float | None = None
    eta_s: float = -1.0
    error: str = ""
    host_id: str = ""
    finished_at: float = 0.0
    state_version: int = -1
    untuned_us: float | None = None
    tuned_us: float | None = None
    uploaded_model: bool = False
    tasks: int = 0  # the model's tuning tasks (once extracted)
    reused_records: int = 0  # what the job took from earlier jobs (its first search's import)
    reused_tasks: int = 0
    known_trials: int = 0
    waiting: str = ""  # why no registered runner can host the job ("" when one can)
    # [time, trials, estimated latency us] after each learn that had an estimate, thinned to
    # at most MAX_CURVE points; the tasks as the last learn saw them (Progress.task_rows)
    curve: list[list[float]] = field(default_factory=list)
    task_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _JOB_FIELDS}  # flat values only
        data["spec"] = self.spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        values = {k: v for k, v in data.items() if k in _JOB_FIELDS}
        values["spec"] = JobSpec.from_dict(data["spec"])
        return cls(**values)

    def add_curve_point(self, now: float, trials: int, latency_us: float) -> None:
        """Append a point of the best-latency curve (a new list: copies keep theirs)."""
        curve = [*self.curve, [now, float(trials), latency_us]]
        if len(curve) > MAX_CURVE:  # halve the resolution, keep the first and last point
            curve = [*curve[:-1:2], curve[-1]]
        self.curve = curve

    def copy(self) -> JobRecord:
        """A copy that later changes to this record do not reach (what a watcher is handed;
        the spec is immutable, so the copy shares it)."""
        return replace(self)


_JOB_FIELDS = frozenset(f.name for f in fields(JobRecord))
MAX_CURVE = 256


@dataclass
class LeaseRecord:
    """One lease in the timeline: what the core granted, how it ended, and what its stage
    process reported (the child_* fields and the pauses, on the runner's clock)."""

    lease_id: str
    epoch: int
    job_id: str
    stage: str
    round: int
    host_id: str
    runner_id: str
    cores: list[int]
    gpus: list[int]
    exclusivity: str
    granted_at: float
    ended_at: float = 0.0  # 0 while live
    outcome: str = "live"  # finished, failed, revoked, expired, live
    reason: str = ""
    child_started: float = 0.0
    child_finished: float = 0.0
    child_pid: int = 0
    child_cores: list[int] = field(default_factory=list)
    paused_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)

    @property
    def exclusive(self) -> bool:
        return self.exclusivity != "none"

    @property
    def live(self) -> bool:
        return not self.ended_at

    def end(self, now: float, outcome: str, reason: str = "") -> None:
        self.ended_at, self.outcome, self.reason = now, outcome, reason

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _LEASE_FIELDS}
        for name in _LEASE_LISTS:
            data[name] = list(data[name])
        data["exclusive"] = self.exclusive
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeaseRecord:
        return cls(**{k: v for k, v in data.items() if k in _LEASE_FIELDS})


_LEASE_FIELDS = frozenset(f.name for f in fields(LeaseRecord))
_LEASE_LISTS = ("cores", "gpus", "child_cores", "paused_at", "resumed_at")
