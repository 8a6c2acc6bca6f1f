"""Jobs and their stages: specs, states, transition tables and the round logic.

A job runs extract once, then rounds of search -> build -> profile -> learn until its trial
budget is spent, its latency goal is met or search finds no new candidates; then one compile
stage (compile + final benchmark), then it is done. A job has at most one stage at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simpletvm.spec import JobSpec

from .demands import StageDemand, StageKind
from .transitions import HistoryEntry, TransitionTable, check_transition

__all__ = [
    "JOB_TRANSITIONS",
    "STAGE_TRANSITIONS",
    "TERMINAL_JOB_STATES",
    "Job",
    "JobState",
    "Stage",
    "StageState",
    "next_stage_kind",
    "stage_after_move",
]


class JobState(StrEnum):
    """Lifecycle of a job; done, failed and cancelled are final."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# the one home of the final job states (StrEnum members: "done" in TERMINAL_JOB_STATES holds)
TERMINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

JOB_TRANSITIONS: TransitionTable = {
    # JobSubmitted accepted: the job waits for a host and its extract stage.
    (None, JobState.QUEUED): "submitted",
    # Its first stage (extract) got a lease on a host.
    (JobState.QUEUED, JobState.RUNNING): "first stage started",
    # JobCancelled before any stage ran.
    (JobState.QUEUED, JobState.CANCELLED): "cancelled while queued",
    # Budget spent, latency goal met or search exhausted: the compile stage is queued.
    (JobState.RUNNING, JobState.FINISHING): "tuning stopped; compiling",
    # A stage failed more than max_stage_retries times.
    (JobState.RUNNING, JobState.FAILED): "stage retries exhausted",
    # JobCancelled while tuning; its lease is revoked.
    (JobState.RUNNING, JobState.CANCELLED): "cancelled while running",
    # Compile, then the final benchmark (a profile stage) reported success.
    (JobState.FINISHING, JobState.DONE): "compiled",
    # Compile or the final benchmark failed more than max_stage_retries times.
    (JobState.FINISHING, JobState.FAILED): "compile retries exhausted",
    # JobCancelled while compiling; its lease is revoked.
    (JobState.FINISHING, JobState.CANCELLED): "cancelled while finishing",
}


class StageState(StrEnum):
    """Lifecycle of one stage attempt. RUNNING means leased: the lease and StartStage are
    issued in the same decision. finished, failed and revoked are final; a retry is a new
    stage with the same kind and round."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    REVOKED = "revoked"


STAGE_TRANSITIONS: TransitionTable = {
    # Created by the round logic (or as a retry); waits for a lease.
    (None, StageState.PENDING): "created",
    # The policy placed it: lease granted, StartStage sent.
    (StageState.PENDING, StageState.RUNNING): "leased",
    # Its job was cancelled before it got a lease, or the job moved host mid-round.
    (StageState.PENDING, StageState.REVOKED): "job cancelled or moved while pending",
    # StageFinished arrived under its live lease.
    (StageState.RUNNING, StageState.FINISHED): "finished",
    # StageFailed arrived under its live lease.
    (StageState.RUNNING, StageState.FAILED): "failed",
    # Its lease was revoked or expired (runner lost, job cancelled, no heartbeat).
    (StageState.RUNNING, StageState.REVOKED): "lease revoked or expired",
}


@dataclass(slots=True)
class Stage:
    """One attempt at one stage of a job."""

    stage_id: str
    job_id: str
    kind: StageKind
    round: int
    attempt: int
    pending_since: float
    state: StageState = StageState.PENDING
    lease_id: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    def transition(self, new: StageState, now: float, reason: str) -> None:
        """Move to `new`; raises InvalidTransition for an edge not in STAGE_TRANSITIONS."""
        if (self.state, new) not in STAGE_TRANSITIONS:
            check_transition(STAGE_TRANSITIONS, "stage", self.stage_id, self.state, new,
                             self.history)
        self.history.append((now, self.state, new, reason))
        self.state = new

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {
            "stage_id": self.stage_id, "job_id": self.job_id, "kind": str(self.kind),
            "round": self.round, "attempt": self.attempt, "pending_since": self.pending_since,
            "state": str(self.state), "lease_id": self.lease_id,
            "history": [list(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        """Rebuild from `to_dict()` output."""
        return cls(data["stage_id"], data["job_id"], StageKind(data["kind"]), data["round"],
                   data["attempt"], data["pending_since"], StageState(data["state"]),
                   data["lease_id"], [tuple(h) for h in data["history"]])


@dataclass(slots=True)
class Job:
    """A job's mutable record. `stage` is its current (pending or running) stage, None once
    terminal. `host_id` is where it runs; None while it waits for a host. `est` holds running
    averages of its stage work (core-seconds; device-seconds for profile)."""

    spec: JobSpec
    seq: int
    submitted_at: float
    demands: dict[StageKind, StageDemand]
    state: JobState = JobState.QUEUED
    host_id: str | None = None
    last_host_id: str | None = None
    stage: Stage | None = None
    stages_created: int = 0
    round: int = 0
    trials_done: int = 0
    best_latency_us: float | None = None
    finished_at: float | None = None
    est: dict[str, float] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    job_id: str = field(init=False)  # the spec's, as a plain attribute (read on hot paths)

    def __post_init__(self) -> None:
        self.job_id = self.spec.job_id

    @property
    def terminal(self) -> bool:
        """True once done, failed or cancelled."""
        return self.state in TERMINAL_JOB_STATES

    @property
    def benchmarking(self) -> bool:
        """True while the job's stage is its final benchmark (the profile after compile)."""
        return (self.state is JobState.FINISHING and self.stage is not None
                and self.stage.kind is StageKind.PROFILE)

    def transition(self, new: JobState, now: float, reason: str) -> str:
        """Move to `new`, returning the old state's name; raises InvalidTransition."""
        old = self.state
        check_transition(JOB_TRANSITIONS, "job", self.job_id, old, new, self.history)
        self.history.append((now, old, new, reason))
        self.state = new
        return old.value

    def new_stage(self, kind: StageKind, round_: int, attempt: int, now: float) -> Stage:
        """Create the next stage (pending) and make it current."""
        self.stages_created += 1
        stage = Stage(f"{self.job_id}/{self.stages_created}", self.job_id, kind, round_,
                      attempt, now)
        stage.history.append((now, "", StageState.PENDING, "created"))
        self.stage = stage
        return stage

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (demands are recomputed from spec and config)."""
        return {
            "spec": self.spec.to_dict(), "seq": self.seq, "submitted_at": self.submitted_at,
            "state": str(self.state), "host_id": self.host_id, "last_host_id": self.last_host_id,
            "stage": self.stage.to_dict() if self.stage else None,
            "stages_created": self.stages_created, "round": self.round,
            "trials_done": self.trials_done, "best_latency_us": self.best_latency_us,
            "finished_at": self.finished_at, "est": dict(self.est),
            "history": [list(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  demands: Callable[[JobSpec], dict[StageKind, StageDemand]]) -> Job:
        """Rebuild from `to_dict()` output; `demands` resolves the spec's stage demands."""
        spec = JobSpec.from_dict(data["spec"])
        job = cls(spec, data["seq"], data["submitted_at"], demands(spec),
                  JobState(data["state"]), data["host_id"], data["last_host_id"])
        job.stage = Stage.from_dict(data["stage"]) if data["stage"] else None
        job.stages_created = data["stages_created"]
        job.round = data["round"]
        job.trials_done = data["trials_done"]
        job.best_latency_us = data["best_latency_us"]
        job.finished_at = data["finished_at"]
        job.est = dict(data["est"])
        job.history = [tuple(h) for h in data["history"]]
        return job


def _tuning_over(job: Job) -> bool:
    goal = job.spec.latency_goal_us
    if goal is not None and job.best_latency_us is not None and job.best_latency_us <= goal:
        return True
    return job.trials_done >= job.spec.trials


def _note_latency(job: Job, result: Mapping[str, Any]) -> None:
    for key in ("best_latency_us", "estimated_latency_us"):
        latency = result.get(key)
        if latency is not None and (job.best_latency_us is None or latency < job.best_latency_us):
            job.best_latency_us = float(latency)


def next_stage_kind(job: Job, finished: StageKind, result: Mapping[str, Any]) -> StageKind | None:
    """Record a finished stage's result on `job` and return the next stage kind (None: done).
    Rounds count from 0; `job.round` moves on when a learn is followed by a search.

    Understood result keys (simpletvm's stage results and the simulator's):
    profile: `trials` or `measured` (candidates timed; default: the round's batch),
    `best_latency_us`; search: `exhausted` or `done` (no new candidates: tuning ends);
    learn: `trials_total`, `estimated_latency_us`, `done` (whether tuning is over; without it:
    when the trial budget is spent or the latency goal met); search may also carry
    `trials_total` and `estimated_latency_us` (a warm start counts known trials).
    A finishing job runs compile, then one more profile (the final benchmark), then is done.
    """
    if finished is StageKind.PROFILE and job.state is JobState.FINISHING:
        return None  # the final benchmark (after compile): the job is done
    if finished is StageKind.PROFILE:
        batch = min(job.spec.batch_size, max(job.spec.trials - job.trials_done, 0))
        job.trials_done += int(result.get("trials", result.get("measured", batch)))
        _note_latency(job, result)
        return StageKind.LEARN
    if finished is StageKind.SEARCH:
        if "trials_total" in result:  # a first search counts what earlier jobs measured
            job.trials_done = int(result["trials_total"])
        _note_latency(job, result)
        done = result.get("exhausted") or result.get("done")
        return StageKind.COMPILE if done else StageKind.BUILD
    if finished is StageKind.BUILD:
        return StageKind.PROFILE
    if finished is StageKind.EXTRACT:
        return StageKind.COMPILE if _tuning_over(job) else StageKind.SEARCH
    if finished is StageKind.LEARN:
        if "trials_total" in result:  # what the job's records hold: authoritative (a round
            job.trials_done = int(result["trials_total"])  # redone after a move counts once)
        _note_latency(job, result)
        # a learn that says whether tuning is over is trusted: after the budget is spent it may
        # still want verification rounds (simpletvm.verification)
        if result["done"] if "done" in result else _tuning_over(job):
            return StageKind.COMPILE
        job.round += 1
        return StageKind.SEARCH
    if finished is StageKind.COMPILE:
        return StageKind.PROFILE  # the final benchmark, alone on the device like any profile
    raise ValueError(f"unknown stage kind {finished!r}")  # pragma: no cover


def stage_after_move(job: Job) -> StageKind | None:
    """The stage a job moved to another host starts again at (None: its stage runs there as
    it is). The new host has the job's state as of the last learn only: a round's candidates,
    artifacts and timings stayed behind, so the round starts again at search; so did the
    compiled models, so a final benchmark starts again at compile."""
    stage = job.stage
    if stage is None:
        return None
    if job.benchmarking:
        return StageKind.COMPILE
    if stage.kind in (StageKind.BUILD, StageKind.PROFILE, StageKind.LEARN):
        return StageKind.SEARCH
    return None
