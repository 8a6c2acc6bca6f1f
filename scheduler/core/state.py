"""SchedulerState: the whole scheduler as a pure state machine, `handle(event, now) -> commands`.

No I/O and no clock: `now` (seconds) comes with every event. Each call (1) expires leases whose
time is up, (2) applies the event, (3) places waiting jobs on hosts with room and lets the
policy start ready stages on every host whose resources or ready set changed. Indexes (free
resources per host, ready jobs per host, hosts with room per target kind, lease expiry heap)
keep each event's work proportional to what it touches, not to jobs x hosts.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import hosting, pausing
from .commands import (
    Command,
    JobRejected,
    JobStateChanged,
    MoveJob,
    ResultRejected,
    RevokeLease,
    StartStage,
)
from .config import SchedulerConfig
from .demands import Exclusivity, StageKind, job_demands
from .errors import ConfigError, SchedulerError
from .estimates import BENCHMARK, Estimates
from .events import (
    Event,
    HeartbeatReceived,
    HeartbeatsReceived,
    JobCancelled,
    JobSubmitted,
    LeaseExpired,
    RunnerLost,
    RunnerRegistered,
    StageFailed,
    StageFinished,
    Tick,
)
from .fairshare import AdmissionQueue, FairShare
from .jobs import Job, JobState, StageState, next_stage_kind, stage_after_move
from .leases import LEASE_TRANSITIONS, Lease, LeaseState
from .policies import Policy, get_policy
from .policies.base import Placement
from .resources import Host, Runner
from .transitions import check_transition

__all__ = ["SchedulerState"]

logger = logging.getLogger(__name__)


class SchedulerState:
    """All hosts, runners, jobs and leases of one scheduler, changed only by `handle()`."""

    def __init__(self, config: SchedulerConfig | None = None,
                 policy: Policy | str | None = None) -> None:
        self.config = config or SchedulerConfig()
        if isinstance(policy, Policy):
            self.policy = policy
        else:
            self.policy = get_policy(policy or self.config.policy,
                                     **self.config.policy_options)
        self.now = 0.0
        self.epoch = 0
        self.runners: dict[str, Runner] = {}
        self.hosts: dict[str, Host] = {}
        self.jobs: dict[str, Job] = {}
        self.leases: dict[str, Lease] = {}  # active leases only
        self.fair = FairShare()
        self.estimates = Estimates(self.config.estimate_alpha)
        self.queue = AdmissionQueue(self.config.aging_per_s)
        self.waiting = hosting.WaitingRoom()  # unplaced jobs no runner can host, and why
        self.placed_jobs = 0
        self.events_handled = 0
        self.leases_granted = 0
        self._expiry: list[tuple[float, int, str]] = []
        self.room: dict[str, list[tuple[int, int, str]]] = {}  # kind -> heap of hosts with room
        self._dirty: dict[str, None] = {}
        self._resumed = False  # some ResumeLease went out in this handle() call
        self.cause = ""  # the cause of the event being handled; its commands carry it
        self._handlers: dict[type, Callable[[Any, float, list[Command]], None]] = {
            RunnerRegistered: self._on_runner_registered,
            RunnerLost: self._on_runner_lost,
            HeartbeatReceived: self._on_heartbeat,
            HeartbeatsReceived: self._on_heartbeats,
            JobSubmitted: self._on_job_submitted,
            JobCancelled: self._on_job_cancelled,
            StageFinished: self._on_stage_finished,
            StageFailed: self._on_stage_failed,
            LeaseExpired: self._on_lease_expired,
            Tick: self._on_tick,
        }

    # ---------------------------------------------------------------- public API

    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply one event at time `now` and return the commands it produces, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"not a scheduler event: {event!r}")
        now = max(now, self.now)  # the core's clock never runs backwards
        self.now = now
        self.cause = event.cause
        self._resumed = False
        commands: list[Command] = []
        self._expire_due(now, commands)
        handler(event, now, commands)
        self._schedule(now, commands)
        self.events_handled += 1
        return pausing.coalesce(commands) if self._resumed else commands

    def can_pause_host(self, host: Host) -> bool:
        """True if a host-exclusive profile may start on `host` now by pausing every lease
        there (see `pausing.can_pause_host`)."""
        return pausing.can_pause_host(self, host)

    def score(self, job: Job, since: float, now: float) -> float:
        """Priority + aging since `since` - fair-share excess of the job's user."""
        config = self.config
        return (job.spec.priority + config.aging_per_s * (now - since)
                - config.fair_share_weight * self.fair.excess(job.spec.user))

    def validate_state(self) -> None:
        """Raise InvariantViolation if any invariant is broken (see `validation`)."""
        from .validation import validate_state

        validate_state(self)

    def snapshot(self) -> dict[str, Any]:
        """Plain, JSON-able data that `restore()` rebuilds an identical state from."""
        from .snapshot import snapshot

        return snapshot(self)

    @classmethod
    def restore(cls, data: Mapping[str, Any], policy: Policy | None = None) -> SchedulerState:
        """Rebuild a state from `snapshot()` output (policy: by default from the config)."""
        from .snapshot import restore

        return restore(cls, data, policy)

    # ---------------------------------------------------------------- runners and hosts

    def _on_runner_registered(self, ev: RunnerRegistered, now: float, out: list[Command]) -> None:
        if ev.runner_id in self.runners:
            self._drop_runner(ev.runner_id, now, "runner re-registered", out)
        host = self.hosts.get(ev.host_id)
        if host is None:
            host = self.hosts[ev.host_id] = Host(ev.host_id, len(self.hosts))
        runner = Runner(ev.runner_id, ev.host_id, tuple(ev.cores), tuple(ev.gpus),
                        int(ev.memory_mb), tuple(ev.target_kinds))
        self.runners[runner.runner_id] = runner
        host.runners[runner.runner_id] = runner
        host.recompute_offer()
        hosting.runner_came(self, out)
        self._host_changed(host)

    def _on_runner_lost(self, ev: RunnerLost, now: float, out: list[Command]) -> None:
        if ev.runner_id not in self.runners:
            logger.info("RunnerLost for unknown runner %s (cause %s)", ev.runner_id, ev.cause)
            return
        self._drop_runner(ev.runner_id, now, "runner lost", out)

    def _drop_runner(self, runner_id: str, now: float, reason: str, out: list[Command]) -> None:
        runner = self.runners[runner_id]
        for lease_id in list(runner.leases):
            self._kill_lease(self.leases[lease_id], LeaseState.REVOKED, now, reason, out)
        del self.runners[runner_id]
        host = self.hosts[runner.host_id]
        del host.runners[runner_id]
        host.recompute_offer()
        hosting.runner_went(self, out)
        for job_id in list(host.jobs):
            job = self.jobs[job_id]
            if not hosting.host_can_host(host, job):
                if job.stage.state is StageState.RUNNING:
                    lease = self.leases[job.stage.lease_id]
                    self._kill_lease(lease, LeaseState.REVOKED, now, "host cannot serve job", out)
                self._unplace(job, out)
        self._host_changed(host)

    def _on_heartbeat(self, ev: HeartbeatReceived, now: float, out: list[Command]) -> None:
        runner = self.runners.get(ev.runner_id)
        if runner is None:
            logger.info("heartbeat from unknown runner %s (cause %s)", ev.runner_id, ev.cause)
            return
        host = self.hosts[runner.host_id]
        host.foreign_load = min(max(float(ev.foreign_load), 0.0), 1.0)
        host.gpu_util = tuple(ev.gpu_util)
        ttl = self.config.lease_ttl_s
        if ttl is not None:
            for lease_id in runner.leases:
                self.leases[lease_id] = self.leases[lease_id].extended(now + ttl)
        if host.ready:
            self._dirty[host.host_id] = None

    def _on_heartbeats(self, ev: HeartbeatsReceived, now: float, out: list[Command]) -> None:
        for beat in zip(ev.runner_ids, ev.foreign_loads, ev.gpu_utils, strict=True):
            self._on_heartbeat(HeartbeatReceived(*beat, cause=ev.cause), now, out)

    # ---------------------------------------------------------------- jobs

    def _on_job_submitted(self, ev: JobSubmitted, now: float, out: list[Command]) -> None:
        spec = ev.spec
        if not spec.job_id or spec.job_id in self.jobs:
            why = "duplicate job id" if spec.job_id else "a submitted job needs a job id"
            out.append(JobRejected(spec.job_id, why, self.cause))
            return
        try:
            demands = job_demands(spec, self.config.cpu_profile_exclusivity,
                                  self.config.demand_overrides)
        except ConfigError as exc:
            out.append(JobRejected(spec.job_id, str(exc), self.cause))
            return
        job = Job(spec, len(self.jobs), now, demands)
        self.jobs[spec.job_id] = job
        job.history.append((now, "", JobState.QUEUED, "submitted"))
        job.new_stage(StageKind.EXTRACT, 0, 0, now)
        self.fair.job_added(spec.user)
        out.append(JobStateChanged(spec.job_id, "", JobState.QUEUED.value, "submitted",
                                   self.cause))
        hosting.enqueue(self, job, out)

    def _on_job_cancelled(self, ev: JobCancelled, now: float, out: list[Command]) -> None:
        job = self.jobs.get(ev.job_id)
        if job is None or job.terminal:
            logger.info("JobCancelled for unknown or finished job %s (cause %s)",
                        ev.job_id, ev.cause)
            return
        stage = job.stage
        if stage.state is StageState.RUNNING:
            lease = self.leases[stage.lease_id]
            self._kill_lease(lease, LeaseState.REVOKED, now, "job cancelled", out, requeue=False)
        else:
            stage.transition(StageState.REVOKED, now, "job cancelled")
        self._end_job(job, JobState.CANCELLED, now, "cancelled", out)

    def _end_job(self, job: Job, new: JobState, now: float, reason: str,
                 out: list[Command]) -> None:
        old = job.transition(new, now, reason)
        out.append(JobStateChanged(job.job_id, old, new.value, reason, self.cause))
        job.stage = None
        job.finished_at = now
        self.fair.job_ended(job.spec.user)
        if job.host_id is None:
            self.queue.remove(job.job_id)
            self.waiting.jobs.pop(job.job_id, None)
        else:
            host = self.hosts[job.host_id]
            del host.jobs[job.job_id]
            host.ready.pop(job.job_id, None)
            job.host_id = None
            self.placed_jobs -= 1
            self._host_changed(host)

    def _place(self, job: Job, host: Host, out: list[Command]) -> None:
        previous = job.last_host_id
        job.host_id = job.last_host_id = host.host_id
        host.jobs[job.job_id] = None
        host.ready[job.job_id] = None
        self.placed_jobs += 1
        if previous is not None and previous != host.host_id:
            out.append(MoveJob(job.job_id, previous, host.host_id, self.cause))
            self._restart_round(job)
        self._host_changed(host)

    @staticmethod
    def _restart_round(job: Job) -> None:
        again = stage_after_move(job)
        if again is not None:
            stage = job.stage
            stage.transition(StageState.REVOKED, stage.pending_since, "job moved host")
            job.new_stage(again, stage.round, 0, stage.pending_since)

    def _unplace(self, job: Job, out: list[Command]) -> None:
        host = self.hosts[job.host_id]
        del host.jobs[job.job_id]
        host.ready.pop(job.job_id, None)
        job.host_id = None
        self.placed_jobs -= 1
        hosting.enqueue(self, job, out)

    # ---------------------------------------------------------------- results

    def _accept(self, ev: StageFinished | StageFailed, out: list[Command]) -> Lease | None:
        lease = self.leases.get(ev.lease_id)
        if lease is None:
            reason = "unknown or dead lease"
        elif lease.epoch != ev.epoch:
            reason = f"stale epoch {ev.epoch} (lease has {lease.epoch})"
        elif lease.job_id != ev.job_id or lease.stage_id != ev.stage_id:
            reason = f"lease is for {lease.job_id} {lease.stage_id}"
        else:
            return lease
        logger.info("rejected result for %s %s under %s: %s (cause %s)",
                    ev.job_id, ev.stage_id, ev.lease_id, reason, ev.cause)
        out.append(ResultRejected(ev.lease_id, ev.epoch, ev.job_id, ev.stage_id, reason,
                                  self.cause))
        return None

    def _on_stage_finished(self, ev: StageFinished, now: float, out: list[Command]) -> None:
        lease = self._accept(ev, out)
        if lease is None:
            return
        self._release(lease, LeaseState.RELEASED, now, "stage finished", out)
        job = self.jobs[lease.job_id]
        stage = job.stage
        stage.transition(StageState.FINISHED, now, "finished")
        kind = stage.kind
        cores = len(lease.core_ids)
        duration = lease.running_s(now)
        self.estimates.observe(job, BENCHMARK if job.benchmarking else kind,
                               duration if kind is StageKind.PROFILE else duration * cores)
        following = next_stage_kind(job, kind, ev.result)
        if following is None:
            self._end_job(job, JobState.DONE, now, "compiled", out)
            return
        if following is StageKind.COMPILE and job.state is JobState.RUNNING:
            reason = "search exhausted" if kind is StageKind.SEARCH else "budget or goal reached"
            old = job.transition(JobState.FINISHING, now, reason)
            out.append(JobStateChanged(job.job_id, old, JobState.FINISHING.value, reason,
                                       self.cause))
        job.new_stage(following, job.round, 0, now)
        self._stage_ready(job)

    def _on_stage_failed(self, ev: StageFailed, now: float, out: list[Command]) -> None:
        lease = self._accept(ev, out)
        if lease is None:
            return
        self._release(lease, LeaseState.RELEASED, now, "stage failed", out)
        job = self.jobs[lease.job_id]
        stage = job.stage
        stage.transition(StageState.FAILED, now, ev.error or "failed")
        if stage.attempt >= self.config.max_stage_retries:
            reason = f"{stage.kind} failed {stage.attempt + 1} times: {ev.error}"
            self._end_job(job, JobState.FAILED, now, reason, out)
            return
        job.new_stage(stage.kind, stage.round, stage.attempt + 1, now)
        self._stage_ready(job)

    def _stage_ready(self, job: Job) -> None:
        if job.host_id is not None:
            job_host = job.host_id
            self.hosts[job_host].ready[job.job_id] = None
            self._dirty[job_host] = None

    # ---------------------------------------------------------------- leases

    def _on_lease_expired(self, ev: LeaseExpired, now: float, out: list[Command]) -> None:
        lease = self.leases.get(ev.lease_id)
        if lease is None:
            logger.info("LeaseExpired for dead lease %s (cause %s)", ev.lease_id, ev.cause)
            return
        self._kill_lease(lease, LeaseState.EXPIRED, now, "lease expired", out)

    def _on_tick(self, ev: Tick, now: float, out: list[Command]) -> None:
        """Nothing beyond the expiry check every event gets."""

    def _expire_due(self, now: float, out: list[Command]) -> None:
        heap = self._expiry
        while heap and heap[0][0] < now:  # live through its expiry instant: a result
            # arriving exactly then is accepted
            _, epoch, lease_id = heapq.heappop(heap)
            lease = self.leases.get(lease_id)
            if lease is None or lease.epoch != epoch or lease.expiry is None:
                continue
            if lease.expiry >= now:  # extended by a heartbeat since this entry was pushed
                heapq.heappush(heap, (lease.expiry, epoch, lease_id))
                continue
            self._kill_lease(lease, LeaseState.EXPIRED, now, "lease expired", out)

    def _kill_lease(self, lease: Lease, new: LeaseState, now: float, reason: str,
                    out: list[Command], requeue: bool = True) -> None:
        """Revoke or expire a live lease; its stage is revoked and, if `requeue`, retried."""
        self._release(lease, new, now, reason, out)
        out.append(RevokeLease(lease.lease_id, lease.holder, reason, self.cause,
                               expired=new is LeaseState.EXPIRED))
        job = self.jobs[lease.job_id]
        stage = job.stage
        stage.transition(StageState.REVOKED, now, reason)
        if requeue:
            job.new_stage(stage.kind, stage.round, stage.attempt, now)
            self._stage_ready(job)

    def _release(self, lease: Lease, new: LeaseState, now: float, reason: str,
                 out: list[Command]) -> None:
        if (lease.state, new) not in LEASE_TRANSITIONS:
            check_transition(LEASE_TRANSITIONS, "lease", lease.lease_id, lease.state, new,
                             lease.history)
        lease_id = lease.lease_id
        del self.leases[lease_id]
        host = self.hosts[lease.host_id]
        del host.leases[lease_id]
        host.give_back(lease.held_cores, lease.gpu_ids, lease.memory_mb)
        if host.exclusive_lease == lease_id:
            host.exclusive_lease = None
            self._resumed |= pausing.resume_host(self, host, now, out)
        runner = self.runners.get(lease.holder)
        if runner is not None:
            runner.leases.pop(lease_id, None)
        weight = len(lease.core_ids) + self.config.gpu_core_weight * len(lease.gpu_ids)
        self.fair.charge(self.jobs[lease.job_id].spec.user, weight * lease.running_s(now))
        self._dirty[host.host_id] = None
        logger.debug("lease %s %s: %s", lease_id, new, reason)

    def _grant(self, p: Placement, now: float, out: list[Command]) -> None:
        job = self.jobs[p.job_id]
        stage = job.stage
        host = self.hosts[job.host_id]
        runner = host.runners[p.runner_id]
        if p.exclusive is Exclusivity.HOST and host.leases:
            pausing.pause_host(self, host, job, now, out)
        if self.policy.controls_resources and not (
                host.free_cores.issuperset(p.core_ids) and host.free_gpus.issuperset(p.gpu_ids)):
            raise SchedulerError(f"policy {self.policy.name} placed {p} on busy resources")
        self.epoch += 1
        epoch = self.epoch
        lease_id = f"lease-{epoch}"
        ttl = self.config.lease_ttl_s
        expiry = None if ttl is None else now + ttl
        lease = Lease(lease_id, epoch, p.runner_id, host.host_id, job.job_id, stage.stage_id,
                      p.core_ids, p.gpu_ids, p.memory_mb, p.exclusive, now, expiry,
                      LeaseState.ACTIVE, ((now, "", LeaseState.ACTIVE, "granted"),))
        self.leases[lease_id] = lease
        host.leases[lease_id] = None
        host.take(p.core_ids, p.gpu_ids, p.memory_mb)
        runner.leases[lease_id] = None
        if p.exclusive is Exclusivity.HOST:
            host.exclusive_lease = lease_id
        if expiry is not None:
            heapq.heappush(self._expiry, (expiry, epoch, lease_id))
        stage.transition(StageState.RUNNING, now, "leased")
        stage.lease_id = lease_id
        del host.ready[job.job_id]
        if job.state is JobState.QUEUED:
            old = job.transition(JobState.RUNNING, now, "first stage started")
            out.append(JobStateChanged(job.job_id, old, JobState.RUNNING.value,
                                       "first stage started", self.cause))
        out.append(StartStage(lease, job.job_id, stage.stage_id, stage.kind.value, stage.round,
                              stage.attempt, p.runner_id, self.cause))
        self.leases_granted += 1

    # ---------------------------------------------------------------- scheduling

    def _host_changed(self, host: Host) -> None:
        """Re-offer the host for placement (if it has room) and mark it for planning."""
        count = len(host.jobs)
        if host.runners and count < self.policy.max_jobs_on_host(self, host):
            for kind in host.target_kinds:
                heap = self.room.setdefault(kind, [])
                heapq.heappush(heap, (count, host.seq, host.host_id))
                if len(heap) > 4 * len(self.hosts) + 16:  # drop stale entries now and then
                    self.room[kind] = hosting.hosts_with_room(self, kind)
        self._dirty[host.host_id] = None

    def _admit(self, now: float, out: list[Command]) -> None:
        cap = self.policy.max_placed_jobs(self)
        for kind in self.queue.kinds():
            full: list[Job] = []  # jobs whose hosts have no room now
            while cap is None or self.placed_jobs < cap:
                host = hosting.host_with_room(self, kind)
                if host is None:
                    break
                job = self.queue.pop_best(kind, self.jobs, self.fair,
                                          self.config.fair_share_weight, now)
                if job is None:
                    break
                if hosting.host_can_host(host, job):
                    heapq.heappop(self.room[kind])  # its count changes; _place re-offers it
                else:
                    host = hosting.least_loaded_host(self, job)
                    if host is None:
                        full.append(job)
                        continue
                self._place(job, host, out)
            for job in full:
                hosting.enqueue(self, job, out)

    def _schedule(self, now: float, out: list[Command]) -> None:
        if len(self.queue):
            self._admit(now, out)
        dirty = self._dirty
        while dirty:
            host_id = next(iter(dirty))
            del dirty[host_id]
            host = self.hosts[host_id]
            if host.ready and host.runners:
                for placement in self.policy.plan_host(self, host, now):
                    self._grant(placement, now, out)
