"""Projection: the daemon's read model. Job and lease records, changed only by what the core
decided (an event and the commands it produced) and by what runners report of their stages.

No gRPC, SQLite or threads here: the daemon calls `apply` under its lock and writes the records
it returns in the same transaction as the event. Commands are dispatched by type in `_command`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import singledispatchmethod
from typing import Any

from scheduler.core import (
    Command,
    JobRejected,
    JobStateChanged,
    JobWaiting,
    MoveJob,
    PauseLease,
    ResultRejected,
    ResumeLease,
    RevokeLease,
    SchedulerState,
    StageFailed,
    StageFinished,
    StartStage,
)
from scheduler.service.records import JobRecord, LeaseRecord

log = logging.getLogger(__name__)


@dataclass
class Changes:
    """Ids of the records one `apply` changed (to persist and to tell watchers about)."""

    jobs: set[str] = field(default_factory=set)
    leases: set[str] = field(default_factory=set)


class Projection:
    """Every job record and the lease timeline, derived from the core's decisions."""

    def __init__(self, jobs: dict[str, JobRecord] | None = None,
                 leases: dict[str, LeaseRecord] | None = None) -> None:
        self.jobs: dict[str, JobRecord] = jobs or {}
        self.leases: dict[str, LeaseRecord] = leases or {}

    def apply(self, core: SchedulerState, event: Any, commands: list[Command],
              now: float) -> Changes:
        """Fold `event` and the `commands` the core answered it with into the records."""
        changes = Changes()
        rejected = any(isinstance(c, ResultRejected) for c in commands)
        if isinstance(event, (StageFinished, StageFailed)) and not rejected:
            self._result(event, now, changes)
        for command in commands:
            self._command(command, now, changes)
        for job_id in list(changes.jobs):
            self._sync(core, job_id)
        return changes

    def child_reported(self, result: dict[str, Any]) -> None:
        """What the runner saw of a lease's stage process: its own clock, pid, cores and pauses
        (call only for a result the core will accept: a late one must not rewrite the timeline).
        What the runner did beats what we asked: a stage that ended before its PauseLease
        arrived was never paused."""
        lease = self.leases.get(result["lease_id"])
        if lease is None or not result.get("started"):
            return
        lease.child_started, lease.child_finished = result["started"], result["finished"]
        lease.child_pid, lease.child_cores = result.get("pid", 0), list(result.get("cores", []))
        lease.paused_at = list(result.get("paused_at", []))
        lease.resumed_at = list(result.get("resumed_at", []))

    # ---------------------------------------------------------------- events
    def _result(self, event: StageFinished | StageFailed, now: float, changes: Changes) -> None:
        finished = isinstance(event, StageFinished)
        lease = self.leases.get(event.lease_id)
        if lease is not None:
            lease.end(now, "finished" if finished else "failed")
            changes.leases.add(event.lease_id)
        record = self.jobs.get(event.job_id)
        if record is None:
            return
        changes.jobs.add(record.job_id)
        if not finished:
            record.error = event.error
            return
        result = event.result
        if result.get("estimated_latency_us") is not None:
            record.best_latency_us = float(result["estimated_latency_us"])
            if lease is not None and lease.stage == "learn":
                trials = result.get("trials_total", record.trials_done)
                record.add_curve_point(now, trials, record.best_latency_us)
        if isinstance(result.get("task_rows"), list):
            record.task_rows = result["task_rows"]
        if "tuned_us" in result:
            record.tuned_us, record.untuned_us = result["tuned_us"], result.get("untuned_us")
        if isinstance(result.get("tasks"), int):  # extract's count of tuning tasks
            record.tasks = result["tasks"]
        if "reused_records" in result:  # the warm start: what it took
            record.reused_records = int(result["reused_records"])
            record.reused_tasks = int(result.get("reused_tasks", 0))
            record.known_trials = int(result.get("known_trials", 0))
        record.error = ""

    def _sync(self, core: SchedulerState, job_id: str) -> None:
        """Trials, round and ETA as the core counts them."""
        job, record = core.jobs.get(job_id), self.jobs.get(job_id)
        if job is None or record is None:
            return
        record.trials_done, record.round = job.trials_done, job.round
        host = core.hosts.get(job.host_id) if job.host_id else None
        cores = len(host.cores) if host is not None else None
        record.eta_s = 0.0 if record.terminal else core.estimates.remaining(job, cores)

    # ---------------------------------------------------------------- commands
    @singledispatchmethod
    def _command(self, command: Any, now: float, changes: Changes) -> None:
        raise TypeError(f"not a core command: {command!r}")

    @_command.register
    def _start(self, command: StartStage, now: float, changes: Changes) -> None:
        lease = command.lease
        self.leases[lease.lease_id] = LeaseRecord(
            lease.lease_id, lease.epoch, command.job_id, command.kind, command.round,
            lease.host_id, command.runner_id, list(lease.core_ids), list(lease.gpu_ids),
            str(lease.exclusive), lease.start)
        changes.leases.add(lease.lease_id)
        record = self.jobs.get(command.job_id)
        if record is not None:
            record.stage, record.host_id = command.kind, lease.host_id
            changes.jobs.add(command.job_id)

    @_command.register
    def _revoke(self, command: RevokeLease, now: float, changes: Changes) -> None:
        lease = self.leases.get(command.lease_id)
        if lease is not None and lease.live:
            lease.end(now, "expired" if command.expired else "revoked", command.reason)
            changes.leases.add(command.lease_id)

    @_command.register
    def _pause(self, command: PauseLease, now: float, changes: Changes) -> None:
        self._stamp(command.lease_id, "paused_at", now, changes)

    @_command.register
    def _resume(self, command: ResumeLease, now: float, changes: Changes) -> None:
        self._stamp(command.lease_id, "resumed_at", now, changes)

    def _stamp(self, lease_id: str, times: str, now: float, changes: Changes) -> None:
        lease = self.leases.get(lease_id)
        if lease is not None:
            getattr(lease, times).append(now)
            changes.leases.add(lease_id)

    @_command.register
    def _state(self, command: JobStateChanged, now: float, changes: Changes) -> None:
        record = self.jobs.get(command.job_id)
        if record is None:
            return
        record.state = command.new
        if record.terminal:
            record.finished_at, record.stage, record.waiting = now, "", ""
            if command.new == "failed":  # "<stage> failed N times: <last error>"
                record.error = command.reason or record.error
        changes.jobs.add(command.job_id)

    @_command.register
    def _rejected(self, command: JobRejected, now: float, changes: Changes) -> None:
        record = self.jobs.get(command.job_id)
        if record is not None:
            record.state, record.error, record.finished_at = "failed", command.reason, now
            changes.jobs.add(command.job_id)

    @_command.register
    def _waiting(self, command: JobWaiting, now: float, changes: Changes) -> None:
        record = self.jobs.get(command.job_id)
        if record is not None:
            record.waiting = command.reason
            changes.jobs.add(command.job_id)

    @_command.register
    def _moved(self, command: MoveJob, now: float, changes: Changes) -> None:
        log.warning("job %s moves from host %s to %s", command.job_id, command.from_host,
                    command.to_host)

    @_command.register
    def _result_rejected(self, command: ResultRejected, now: float, changes: Changes) -> None:
        log.warning("rejected result for lease %s epoch %d: %s", command.lease_id,
                    command.epoch, command.reason)
