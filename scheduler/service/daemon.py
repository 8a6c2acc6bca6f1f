"""The daemon: the pure core behind one lock, its state in SQLite, its commands sent to runners.

Every stimulus (a runner message, a client request, the clock) becomes a core event handled
under the lock; the event, and the job and lease records it changed, commit in one SQLite
transaction before any command leaves for a runner.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.core import (
    Command,
    HeartbeatReceived,
    JobCancelled,
    JobRejected,
    JobStateChanged,
    JobSubmitted,
    MoveJob,
    PauseLease,
    ResultRejected,
    ResumeLease,
    RevokeLease,
    RunnerLost,
    RunnerRegistered,
    SchedulerConfig,
    SchedulerState,
    StageFailed,
    StageFinished,
    StartStage,
    Tick,
)
from scheduler.core import JobSpec as CoreJobSpec
from scheduler.core.events import event_to_dict
from scheduler.service.auth import Auth
from scheduler.service.blobs import BlobStore
from scheduler.service.errors import FailedPrecondition, InvalidRequest, NotFound
from scheduler.service.gate import PauseGate
from scheduler.service.records import MAX_MODEL_BYTES, JobRecord
from scheduler.service.store import Store

# imported with the daemon, not in the first upload's handler, where importing simpletvm (numpy)
# would hold the GIL for a second while every other RPC waits
from simpletvm.bundle import KINDS as BUNDLE_KINDS
from simpletvm.bundle import verify as verify_bundle
from simpletvm.errors import JobDirError

log = logging.getLogger(__name__)

STAGE_TIMEOUTS_S = {"extract": 900.0, "search": 3600.0, "build": 3600.0, "profile": 3600.0,
                    "learn": 900.0, "compile": 3600.0}


def parse_stage_timeouts(values: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The default per-stage timeouts with `STAGE=SECONDS` overrides; ValueError, one line."""
    timeouts = dict(STAGE_TIMEOUTS_S)
    for value in values:
        stage, _, seconds = value.partition("=")
        if stage not in STAGE_TIMEOUTS_S:
            raise ValueError(f"bad --stage-timeout {value!r}: the stage must be one of "
                             f"{', '.join(STAGE_TIMEOUTS_S)}")
        try:
            timeouts[stage] = float(seconds)
        except ValueError:
            raise ValueError(f"bad --stage-timeout {value!r}: use STAGE=SECONDS, "
                             "e.g. build=600") from None
        if not 0 < timeouts[stage] < float("inf"):
            raise ValueError(f"bad --stage-timeout {value!r}: SECONDS must be positive")
    return timeouts


@dataclass
class DaemonConfig:
    """Settings of one daemon process (built by the CLI from flags)."""

    state_path: Path
    policy: str = "interleaved"
    lease_ttl_s: float = 30.0
    heartbeat_interval_s: float = 2.0
    runner_timeout_s: float = 15.0
    tick_s: float = 0.5
    snapshot_every: int = 500
    max_stage_retries: int = 2
    cpu_profile_exclusivity: str = "host"
    jobs_per_host: int | None = None  # None: the policy's default (see Policy.max_jobs_on_host)
    foreign_load_threshold: float = 0.25  # no profile on a host busier than this with others
    pause_for_profile: bool = True  # pause a host's CPU stages for its host-exclusive profile
    stage_timeouts_s: dict[str, float] = field(default_factory=lambda: dict(STAGE_TIMEOUTS_S))
    max_model_bytes: int = MAX_MODEL_BYTES  # an uploaded model over this: RESOURCE_EXHAUSTED
    auth: Auth = field(default_factory=Auth)
    clock: Callable[[], float] = time.time


@dataclass
class RunnerLink:
    """A runner's live connection: its outbox of SchedulerMessages and when we last heard of it."""

    runner_id: str
    host_id: str
    register: dict[str, Any]
    outbox: queue.Queue = field(default_factory=queue.Queue)
    last_seen: float = 0.0
    connected: bool = True
    foreign_load: float = 0.0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


def profile_demand(target: dict[str, Any]) -> dict[str, dict[str, int]]:
    """An llvm profile needs exactly the target's num-cores (core-exclusive mode leaves the rest
    of the host to other stages; host-exclusive mode holds the host either way)."""
    cores = target.get("num-cores") if target.get("kind") == "llvm" else None
    if isinstance(cores, int) and cores > 0:
        return {"profile": {"min_cores": cores, "max_cores": cores}}
    return {}


SHUTTING_DOWN = "the scheduler is shutting down: retry after it restarts"


class Daemon:
    """The scheduler's state and everything that changes it."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.store = Store(config.state_path)
        self.blobs = BlobStore(config.state_path.parent / (config.state_path.stem + "-blobs"))
        self.core = SchedulerState(SchedulerConfig(
            policy=config.policy, lease_ttl_s=config.lease_ttl_s,
            max_stage_retries=config.max_stage_retries,
            cpu_profile_exclusivity=config.cpu_profile_exclusivity,
            foreign_load_threshold=config.foreign_load_threshold,
            pause_for_profile=config.pause_for_profile,
            jobs_per_host=config.jobs_per_host))
        self.jobs: dict[str, JobRecord] = {}
        self.leases: dict[str, dict[str, Any]] = {}
        self.links: dict[str, RunnerLink] = {}
        self.gate = PauseGate()
        self.watchers: dict[str, list[queue.Queue]] = {}
        self._events_since_snapshot = 0
        self._stop = threading.Event()
        self.stopping = threading.Event()
        self._clock_thread: threading.Thread | None = None
        self._restored_runners: dict[str, float] = {}
        self._recover()

    # ------------------------------------------------------------------ life cycle
    def _recover(self) -> None:
        """Rebuild the core from the latest snapshot plus the events logged after it."""
        snap = self.store.latest_snapshot()
        seq = 0
        if snap is not None:
            seq, data = snap
            self.core = SchedulerState.restore(data)
        from scheduler.core.events import event_from_dict

        replayed = 0
        for _, now, event in self.store.events_after(seq):
            self.core.handle(event_from_dict(event), now)
            replayed += 1
        self.jobs = {r["job_id"]: JobRecord.from_dict(r) for r in self.store.jobs()}
        self.leases = {r["lease_id"]: r for r in self.store.leases()}
        now = self.config.clock()
        # runners known to the core must reconnect within the timeout, or they are lost
        self._restored_runners = {rid: now for rid in self.core.runners}
        if snap is not None or replayed:
            log.info("recovered %d jobs (%d events replayed after snapshot %d)",
                     len(self.jobs), replayed, seq)

    def start(self) -> None:
        self._clock_thread = threading.Thread(target=self._clock_loop, name="clock", daemon=True)
        self._clock_thread.start()

    def begin_stop(self) -> None:
        """From now on runner messages are ignored: what arrives while the server drains would
        otherwise be handled against a state about to be frozen (their leases are revoked
        when the runners re-register with the next daemon)."""
        self.stopping.set()

    def stop(self) -> None:
        """Stop the clock, tell runners, write a snapshot, close the store."""
        self.stopping.set()
        self._stop.set()
        if self._clock_thread:
            self._clock_thread.join(timeout=5)
        with self.lock:
            for link in self.links.values():
                link.outbox.put(None)
            self._snapshot(self.config.clock())
            self.store.close()

    def _clock_loop(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            try:
                self.tick()
            except Exception:  # the clock must keep running whatever one tick hit
                log.exception("clock tick failed")

    def tick(self) -> None:
        """Expire leases, drop runners that stopped talking."""
        if self.stopping.is_set():
            return
        with self.lock:
            now = self.config.clock()
            lost = [link.runner_id for link in self.links.values()
                    if link.connected and now - link.last_seen > self.config.runner_timeout_s]
            lost += [rid for rid, since in self._restored_runners.items()
                     if rid not in self.links and now - since > self.config.runner_timeout_s]
            for runner_id in lost:
                log.warning("runner %s missed its heartbeats: declaring it lost", runner_id)
                self._restored_runners.pop(runner_id, None)
                link = self.links.get(runner_id)
                if link:
                    link.connected = False
                    link.outbox.put(None)
                self._handle(RunnerLost(runner_id, cause="heartbeat-timeout"))
            for profile, silent in self.gate.overdue(now):
                log.warning("no Paused from the runners of %s within %.0f s: starting profile "
                            "lease %s anyway", sorted(silent), self.gate.timeout_s, profile)
            self._handle(Tick(cause="clock"))

    # ------------------------------------------------------------------ the core
    def _handle(self, event: Any) -> list[Command]:
        """Feed one event to the core; persist it and its effects; dispatch the commands."""
        with self.lock:
            now = self.config.clock()
            commands = self.core.handle(event, now)
            if isinstance(event, Tick) and not commands:
                return commands  # nothing happened: keep the log free of idle ticks
            with self.store.transaction() as tx:
                seq = tx.log_event(now, event_to_dict(event))
                changed_jobs, changed_leases = self._apply(event, commands, now)
                for job_id in changed_jobs:
                    tx.put_job(self.jobs[job_id].to_dict())
                for lease_id in changed_leases:
                    tx.put_lease(self.leases[lease_id])
                self._events_since_snapshot += 1
                if self._events_since_snapshot >= self.config.snapshot_every:
                    tx.snapshot(seq, now, self.core.snapshot())
                    self._events_since_snapshot = 0
            self._dispatch(commands)
            for job_id in changed_jobs:
                self._notify(job_id, now)
            return commands

    def _snapshot(self, now: float) -> None:
        seq = self.store.last_seq()
        if seq:
            with self.store.transaction() as tx:
                tx.snapshot(seq, now, self.core.snapshot())

    def _apply(self, event: Any, commands: list[Command],
               now: float) -> tuple[set[str], set[str]]:
        """Update job records and the lease timeline from an event and its commands."""
        jobs: set[str] = set()
        leases: set[str] = set()
        rejected = any(isinstance(c, ResultRejected) for c in commands)
        if isinstance(event, (StageFinished, StageFailed)) and not rejected:
            self._record_result(event, now, jobs, leases)
        for cmd in commands:
            if isinstance(cmd, StartStage):
                self._record_start(cmd, jobs, leases)
            elif isinstance(cmd, RevokeLease):
                rec = self.leases.get(cmd.lease_id)
                if rec is not None and not rec["ended_at"]:
                    rec.update(ended_at=now, outcome="expired" if "expired" in cmd.reason
                               else "revoked", reason=cmd.reason)
                    leases.add(cmd.lease_id)
            elif isinstance(cmd, (PauseLease, ResumeLease)):
                rec = self.leases.get(cmd.lease_id)
                if rec is not None:
                    key = "paused_at" if isinstance(cmd, PauseLease) else "resumed_at"
                    rec[key] = [*rec.get(key, []), now]
                    leases.add(cmd.lease_id)
            elif isinstance(cmd, JobStateChanged):
                record = self.jobs.get(cmd.job_id)
                if record is not None:
                    record.state = cmd.new
                    if record.terminal:
                        record.finished_at = now
                        record.stage = ""
                        if cmd.new == "failed":  # "<stage> failed N times: <last error>"
                            record.error = cmd.reason or record.error
                    jobs.add(cmd.job_id)
            elif isinstance(cmd, JobRejected):
                record = self.jobs.get(cmd.job_id)
                if record is not None:
                    record.state, record.error, record.finished_at = "failed", cmd.reason, now
                    jobs.add(cmd.job_id)
            elif isinstance(cmd, MoveJob):
                log.warning("job %s moves from host %s to %s", cmd.job_id, cmd.from_host,
                            cmd.to_host)
            elif isinstance(cmd, ResultRejected):
                log.warning("rejected result for lease %s epoch %d: %s", cmd.lease_id,
                            cmd.epoch, cmd.reason)
        for job_id in list(jobs) + [c.job_id for c in commands if isinstance(c, StartStage)]:
            core_job = self.core.jobs.get(job_id)
            record = self.jobs.get(job_id)
            if core_job is not None and record is not None:
                record.trials_done = core_job.trials_done
                record.round = core_job.round
                jobs.add(job_id)
        return jobs, leases

    def _record_start(self, cmd: StartStage, jobs: set[str], leases: set[str]) -> None:
        lease = cmd.lease
        self.leases[lease.lease_id] = {
            "lease_id": lease.lease_id, "epoch": lease.epoch, "job_id": cmd.job_id,
            "stage": cmd.kind, "round": cmd.round, "host_id": lease.host_id,
            "runner_id": cmd.runner_id, "cores": list(lease.core_ids),
            "gpus": list(lease.gpu_ids), "exclusive": str(lease.exclusive) != "none",
            "exclusivity": str(lease.exclusive), "granted_at": lease.start, "ended_at": 0.0,
            "outcome": "live", "reason": "", "child_started": 0.0, "child_finished": 0.0,
            "child_pid": 0, "child_cores": [], "paused_at": [], "resumed_at": []}
        leases.add(lease.lease_id)
        record = self.jobs.get(cmd.job_id)
        if record is not None:
            record.stage, record.host_id = cmd.kind, lease.host_id
            jobs.add(cmd.job_id)

    def _record_result(self, event: Any, now: float, jobs: set[str], leases: set[str]) -> None:
        rec = self.leases.get(event.lease_id)
        record = self.jobs.get(event.job_id)
        finished = isinstance(event, StageFinished)
        if rec is not None:
            rec.update(ended_at=now, outcome="finished" if finished else "failed")
            leases.add(event.lease_id)
        if record is None:
            return
        jobs.add(record.job_id)
        if rec is not None:
            kind = rec["stage"]
            took = now - rec["granted_at"]
            old = record.stage_times.get(kind)
            record.stage_times[kind] = took if old is None else 0.7 * old + 0.3 * took
        if not finished:
            record.error = event.error
            return
        result = dict(event.result)
        if result.get("estimated_latency_us") is not None:
            record.best_latency_us = float(result["estimated_latency_us"])
        if "trials_total" in result:
            record.trials_done = int(result["trials_total"])
        if "tuned_us" in result:
            record.tuned_us, record.untuned_us = result["tuned_us"], result.get("untuned_us")
        record.error = ""

    def _dispatch(self, commands: list[Command]) -> None:
        from scheduler.service import convert

        paused: set[str] = set()  # paused in this batch, on a connected runner: to confirm
        for cmd in commands:
            if isinstance(cmd, StartStage):
                record = self.jobs[cmd.job_id]
                timeout = self.config.stage_timeouts_s.get(cmd.kind, 3600.0)
                message = convert.start_message(cmd, record.state_version, timeout)
                if paused and str(cmd.lease.exclusive) == "host":
                    self.gate.hold(cmd.lease.lease_id, paused, self.config.clock(),
                                   lambda r=cmd.runner_id, m=message, c=cmd: self._send(r, m, c))
                    paused = set()
                else:
                    self._send(cmd.runner_id, message, cmd)
            elif isinstance(cmd, RevokeLease):
                self.gate.stopped(cmd.lease_id)  # a paused stage that is killed is stopped
                self.gate.drop(cmd.lease_id)  # a held profile that is revoked never starts
                rec = self.leases.get(cmd.lease_id, {})
                self._send(cmd.runner_id,
                           convert.revoke_message(cmd, int(rec.get("epoch", 0))), None)
            elif isinstance(cmd, PauseLease):
                if self._send(cmd.runner_id, convert.pause_message(cmd), None):
                    paused.add(cmd.lease_id)
            elif isinstance(cmd, ResumeLease):
                self._send(cmd.runner_id, convert.resume_message(cmd), None)

    def _send(self, runner_id: str, message: Any, start: StartStage | None) -> bool:
        """Queue `message` for the runner; False if it is not connected (a start then waits
        for its lease to expire; a runner that is gone has nothing to pause or revoke)."""
        link = self.links.get(runner_id)
        if link is not None and link.connected:
            link.outbox.put(message)
            return True
        if start is not None:
            log.warning("runner %s is not connected; lease %s will expire", runner_id,
                        start.lease.lease_id)
        return False

    def runner_paused(self, link: RunnerLink, lease_id: str) -> None:
        """The runner confirms the stage under `lease_id` is stopped (or not running there)."""
        with self.lock:
            link.last_seen = self.config.clock()
            self.gate.stopped(lease_id)

    # ------------------------------------------------------------------ watchers
    def _notify(self, job_id: str, now: float) -> None:
        record = self.jobs.get(job_id)
        for q in self.watchers.get(job_id, []):
            q.put((now, JobRecord.from_dict(record.to_dict()), ""))

    def subscribe(self, job_id: str) -> queue.Queue:
        with self.lock:
            record = self.get(job_id)
            q: queue.Queue = queue.Queue()
            q.put((self.config.clock(), JobRecord.from_dict(record.to_dict()), "watching"))
            self.watchers.setdefault(job_id, []).append(q)
            return q

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        with self.lock:
            subs = self.watchers.get(job_id, [])
            if q in subs:
                subs.remove(q)

    # ------------------------------------------------------------------ client API
    def submit(self, record: JobRecord, model: bytes) -> JobRecord:
        """Register a validated job (idempotent on request_id) and hand it to the core."""
        staged = self.blobs.stage(model) if model else None  # the fsync, outside the lock
        try:
            with self.lock:
                if record.request_id:
                    record.request_id = f"{record.user}/{record.request_id}"  # scoped per user
                    existing = self.store.job_by_request(record.request_id)
                    if existing is not None:
                        return self.jobs[existing["job_id"]]
                record.job_id = record.job_id or f"job-{uuid.uuid4().hex[:10]}"
                record.submitted_at = self.config.clock()
                if staged is not None:
                    self.blobs.commit(staged, record.job_id, "model.onnx")
                    record.uploaded_model = True
                self.jobs[record.job_id] = record
                with self.store.transaction() as tx:
                    tx.put_job(record.to_dict())
                kind = "cuda" if record.target.get("kind") == "cuda" else "llvm"
                spec = CoreJobSpec(record.job_id, user=record.user, priority=record.priority,
                                   target_kind=kind, trials=record.trials,
                                   batch_size=record.batch_size,
                                   latency_goal_us=record.latency_goal_us,
                                   demand_overrides=profile_demand(record.target))
                self._handle(JobSubmitted(spec, cause=record.request_id or record.job_id))
                return self.jobs[record.job_id]
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)  # committed: gone already; a duplicate: dropped

    def get(self, job_id: str) -> JobRecord:
        record = self.jobs.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id!r}: list jobs with `tunesched jobs`")
        return record

    def list_jobs(self, state: str = "") -> list[JobRecord]:
        with self.lock:
            records = sorted(self.jobs.values(), key=lambda r: r.submitted_at)
            return [r for r in records if not state or r.state == state]

    def cancel(self, job_id: str) -> JobRecord:
        with self.lock:
            record = self.get(job_id)
            if record.terminal:
                raise FailedPrecondition(f"job {job_id} is already {record.state}")
            self._handle(JobCancelled(job_id, cause="client-cancel"))
            return self.jobs[job_id]

    def result_bundle(self, job_id: str) -> bytes:
        record = self.get(job_id)
        data = self.blobs.get(job_id, "result.tar.gz")
        if record.state != "done" or data is None:
            raise FailedPrecondition(f"job {job_id} is {record.state}: results exist once it is "
                                     "done (watch it with `tunesched watch`)")
        return data

    def runner_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for runner_id, runner in self.core.runners.items():
                link = self.links.get(runner_id)
                rows.append({
                    "runner_id": runner_id, "host_id": runner.host_id,
                    "cores": list(runner.cores), "gpus": list(runner.gpus),
                    "memory_mb": runner.memory_mb, "target_kinds": list(runner.target_kinds),
                    "connected": bool(link and link.connected),
                    "foreign_load": link.foreign_load if link else 0.0,
                    "last_heartbeat": link.last_seen if link else 0.0,
                    "leases": sorted(runner.leases)})
            return rows

    def timeline(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted(self.leases.values(), key=lambda r: r["granted_at"])

    # ------------------------------------------------------------------ runner API
    def runner_connected(self, register: dict[str, Any]) -> RunnerLink:
        if not register.get("runner_id") or not register.get("host_id"):
            raise InvalidRequest("register needs a runner_id and a host_id")
        if not register.get("cores"):
            raise InvalidRequest("register needs at least one core")
        for kind in ("cores", "gpus"):
            ids = list(register.get(kind, ()))
            if len(set(ids)) != len(ids) or not all(0 <= i < 65536 for i in ids):
                raise InvalidRequest(f"register {kind} must be distinct ids from 0 to 65535")
        if register.get("memory_mb", 0) < 0:
            raise InvalidRequest("register memory_mb must not be negative")
        with self.lock:
            old = self.links.get(register["runner_id"])
            if old is not None:
                old.connected = False
                old.outbox.put(None)
            link = RunnerLink(register["runner_id"], register["host_id"], register,
                              last_seen=self.config.clock())
            self.links[link.runner_id] = link
            self._restored_runners.pop(link.runner_id, None)
            self._handle(RunnerRegistered(
                link.runner_id, link.host_id, tuple(register["cores"]),
                tuple(register.get("gpus", ())), int(register.get("memory_mb", 0)),
                tuple(register.get("target_kinds", ("llvm",))), cause=link.session))
            return link

    def runner_heartbeat(self, link: RunnerLink, foreign_load: float,
                         gpu_util: tuple[float, ...], live_leases: tuple[str, ...] = ()) -> None:
        if self.stopping.is_set():
            return
        with self.lock:
            if self.links.get(link.runner_id) is not link or not link.connected:
                return
            link.last_seen = self.config.clock()
            link.foreign_load = foreign_load
            # logged like any event: replay must see lease extensions to expire the same leases
            self._handle(HeartbeatReceived(link.runner_id, foreign_load, gpu_util))
            self._revoke_strays(link, live_leases)

    def _revoke_strays(self, link: RunnerLink, live_leases: tuple[str, ...]) -> None:
        """Stop what a runner runs under a lease the scheduler does not give it (one revoked
        while its stage started, one from before a restart): nothing runs unscheduled."""
        from scheduler.service import convert

        for lease_id in live_leases:
            lease = self.core.leases.get(lease_id)
            if lease is not None and lease.holder == link.runner_id:
                continue
            reason = "the scheduler holds no such lease for this runner"
            log.warning("runner %s runs a stage under lease %s, which it does not hold: "
                        "revoking it", link.runner_id, lease_id)
            self._send(link.runner_id, convert.revoke_message(
                RevokeLease(lease_id, link.runner_id, reason), 0), None)

    def runner_result(self, link: RunnerLink, result: dict[str, Any]) -> None:
        if self.stopping.is_set():
            return
        with self.lock:
            link.last_seen = self.config.clock()
            self.gate.stopped(result["lease_id"])  # it ended: nothing left to stop
            rec = self.leases.get(result["lease_id"])
            if rec is not None and result.get("started") and self._fenced_in(result):
                rec.update(child_started=result["started"], child_finished=result["finished"],
                           child_pid=result.get("pid", 0), child_cores=result.get("cores", []))
                # what the runner did beats what we asked: a stage that ended before its
                # PauseLease arrived was never paused
                rec.update(paused_at=result.get("paused_at", []),
                           resumed_at=result.get("resumed_at", []))
            if result["ok"]:
                event: Any = StageFinished(result["lease_id"], result["epoch"], result["job_id"],
                                           result["stage_id"], result["result"],
                                           cause=link.session)
            else:
                event = StageFailed(result["lease_id"], result["epoch"], result["job_id"],
                                    result["stage_id"], result["error"], cause=link.session)
            self._handle(event)

    def _fenced_in(self, result: dict[str, Any]) -> bool:
        """Whether `result` comes under its live lease and epoch (what the core will accept):
        a late result of a revoked lease must not rewrite the timeline."""
        lease = self.core.leases.get(result["lease_id"])
        return (lease is not None and lease.epoch == result["epoch"]
                and (lease.job_id, lease.stage_id) == (result["job_id"], result["stage_id"]))

    def runner_disconnected(self, link: RunnerLink) -> None:
        if self.stopping.is_set():
            return  # the runner will re-register with the next daemon
        with self.lock:
            if self.links.get(link.runner_id) is not link:
                return  # replaced by a newer connection of the same runner
            link.connected = False
            self._handle(RunnerLost(link.runner_id, cause="stream-closed"))

    def lease_is_live(self, lease_id: str, epoch: int) -> bool:
        with self.lock:
            lease = self.core.leases.get(lease_id)
            return lease is not None and lease.epoch == epoch

    def _live_job(self, job_id: str, lease_id: str, epoch: int) -> JobRecord:
        with self.lock:
            record = self.get(job_id)
            if not self.lease_is_live(lease_id, epoch):
                raise FailedPrecondition(f"lease {lease_id} epoch {epoch} is not live: "
                                         "bundle rejected")
            return record

    def job_bundle(self, job_id: str) -> tuple[bytes, int]:
        """The job's latest state bundle and its version; an initial one before extract."""
        from scheduler.service.convert import initial_bundle

        with self.lock:
            record = self.get(job_id)
            data = self.blobs.get(job_id, "state.tar.gz")
            if data is not None and record.state_version >= 0:
                return data, record.state_version
            record = JobRecord.from_dict(record.to_dict())
        # built outside the lock (a zoo model is generated here); the model blob never changes
        model = self.blobs.get(job_id, "model.onnx") if record.uploaded_model else None
        return initial_bundle(record, model), -1

    def store_bundle(self, job_id: str, lease_id: str, epoch: int, kind: str, version: int,
                     data: bytes) -> None:
        if self.stopping.is_set():
            raise FailedPrecondition(SHUTTING_DOWN)
        if kind not in BUNDLE_KINDS:
            raise InvalidRequest(f"unknown bundle kind {kind!r}: use one of "
                                 f"{', '.join(BUNDLE_KINDS)}")
        self._live_job(job_id, lease_id, epoch)
        try:  # a bad bundle must not replace the job's last good one
            verify_bundle(data)
        except JobDirError as exc:
            raise InvalidRequest(str(exc)) from exc
        staged = self.blobs.stage(data)  # the fsync, outside the lock
        try:
            with self.lock:
                if self.stopping.is_set():  # the store may be closed: the blob and the
                    raise FailedPrecondition(SHUTTING_DOWN)  # version naming it go together
                record = self._live_job(job_id, lease_id, epoch)
                self.blobs.commit(staged, job_id, f"{kind}.tar.gz")
                if kind == "state":
                    record.state_version = version
                with self.store.transaction() as tx:
                    tx.put_job(record.to_dict())
        finally:
            staged.unlink(missing_ok=True)  # committed: gone already; refused: dropped
