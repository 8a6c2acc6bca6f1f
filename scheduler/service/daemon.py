"""The daemon: the pure core behind one lock, its state in SQLite, its commands sent to runners.

Every stimulus (a runner message, a client request, the clock) becomes a core event handled
under the lock (`_handle`): the event, and the job and lease records it changed
(`projection`), commit in one SQLite transaction before any command leaves for a runner
(`links`). This module is the shell around those parts: lock, core, store, clock, lifecycle,
and the calls the servicers make.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from typing import Any

from scheduler.core import (
    Command,
    HeartbeatReceived,
    HeartbeatsReceived,
    JobCancelled,
    JobSubmitted,
    RunnerLost,
    RunnerRegistered,
    SchedulerState,
    StageFailed,
    StageFinished,
    Tick,
    event_from_dict,
    event_to_dict,
)
from scheduler.service.blobs import BlobStore
from scheduler.service.config import DaemonConfig
from scheduler.service.errors import FailedPrecondition, InvalidRequest, NotFound
from scheduler.service.gate import PauseGate
from scheduler.service.links import Links, RunnerLink
from scheduler.service.metrics import DaemonMetrics
from scheduler.service.projection import Projection
from scheduler.service.records import JobRecord, LeaseRecord
from scheduler.service.recordstore import RecordStore, StateRecords, parse_state
from scheduler.service.store import Store
from scheduler.service.validation import check_register
from scheduler.service.watchers import Watchers
from simpletvm import bundle, tuningdb
from simpletvm.errors import JobDirError
from simpletvm.spec import JobSpec
from simpletvm.targets import on_host

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the scheduler is shutting down: retry after it restarts"
SLOW_EVENT_S = 0.25  # an event held the lock this long: logged with where the time went


class Daemon:
    """The scheduler's state and everything that changes it."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.store = Store(config.state_path)
        self.blobs = BlobStore(config.state_path.parent / (config.state_path.stem + "-blobs"))
        self.core = SchedulerState(config.core)
        self.records = RecordStore(self.store, self.blobs, keep=config.records_keep)
        self.projection = Projection()
        self.gate = PauseGate()
        self.links = Links(self.projection, self.gate, config.stage_timeout)
        self.watchers = Watchers()
        self.metrics = DaemonMetrics(self)
        self._events_since_snapshot = 0
        self._stop = threading.Event()
        self.stopping = threading.Event()
        self._clock_thread: threading.Thread | None = None
        self._restored_runners: dict[str, float] = {}
        # heartbeats not yet told to the core: runner -> (foreign load, GPU utilisation)
        self._beats: dict[str, tuple[float, tuple[float, ...]]] = {}
        self._recover()

    # ------------------------------------------------------------------ life cycle
    def _recover(self) -> None:
        """Rebuild the core from the latest snapshot plus the events logged after it."""
        snap = self.store.latest_snapshot()
        seq = 0
        if snap is not None:
            seq, data = snap
            self.core = SchedulerState.restore(data)
        replayed = 0
        for _, now, event in self.store.events_after(seq):
            self.core.handle(event_from_dict(event), now)
            replayed += 1
        self.projection.jobs = {r["spec"]["job_id"]: JobRecord.from_dict(r)
                                for r in self.store.jobs()}
        self.projection.leases = {r["lease_id"]: LeaseRecord.from_dict(r)
                                  for r in self.store.leases()}
        now = self.config.clock()
        # runners known to the core must reconnect within the timeout, or they are lost
        self._restored_runners = {rid: now for rid in self.core.runners}
        if snap is not None or replayed:
            log.info("recovered %d jobs (%d events replayed after snapshot %d)",
                     len(self.projection.jobs), replayed, seq)

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
            self.links.close_all()
            self._snapshot(self.config.clock())
            self.store.close()

    def _clock_loop(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            try:
                self.tick()
            except Exception:  # the clock must keep running whatever one tick hit
                log.exception("clock tick failed")

    def tick(self) -> None:
        """Expire leases, drop runners that stopped talking, release overdue profiles."""
        if self.stopping.is_set():
            return
        with self.lock:
            self._flush_heartbeats()  # leases extended before the Tick may expire them
            now = self.config.clock()
            timeout = self.config.runner_timeout_s
            lost = [link.runner_id for link in self.links.silent(now, timeout)]
            lost += [rid for rid, since in self._restored_runners.items()
                     if self.links.get(rid) is None and now - since > timeout]
            for runner_id in lost:
                log.warning("runner %s missed its heartbeats: declaring it lost", runner_id)
                self._restored_runners.pop(runner_id, None)
                link = self.links.get(runner_id)
                if link is not None:
                    link.close()
                self._handle(RunnerLost(runner_id, cause="heartbeat-timeout"))
            for profile, silent in self.gate.overdue(now):
                log.warning("no Paused from the runners of %s within %.0f s: starting profile "
                            "lease %s anyway", sorted(silent), self.gate.timeout_s, profile)
            self._handle(Tick(cause="clock"))

    # ------------------------------------------------------------------ the core
    def _handle(self, event: Any, new_job: str = "") -> list[Command]:
        """Feed one event to the core; persist it and its effects (and `new_job`'s record, in
        the same transaction); dispatch the commands."""
        with self.lock:
            entered = time.perf_counter()
            now = self.config.clock()
            commands = self.core.handle(event, now)
            self.metrics.core_changed(self.core, now)
            if isinstance(event, Tick) and not commands:
                return commands  # nothing happened: keep the log free of idle ticks
            began = time.perf_counter()
            with self.store.transaction() as tx:
                seq = tx.log_event(now, event_to_dict(event))
                changes = self.projection.apply(self.core, event, commands, now)
                if new_job:
                    changes.jobs.add(new_job)
                for job_id in changes.jobs:
                    record = self.projection.jobs[job_id]
                    tx.put_job(job_id, record.request_id, record.to_dict())
                for lease_id in changes.leases:
                    tx.put_lease(lease_id, self.projection.leases[lease_id].to_dict())
                self._events_since_snapshot += 1
                if self._events_since_snapshot >= max(self.config.snapshot_every,
                                                       2 * len(self.core.jobs)):
                    tx.snapshot(seq, now, self.core.snapshot())
                    self._events_since_snapshot = 0
            committed = time.perf_counter()
            self.metrics.observe(self, commands, sorted(changes.leases), now, committed - began)
            self.links.dispatch(commands, now)
            for job_id in changes.jobs:
                self.watchers.notify(self.projection.jobs[job_id], now)
            if (done := time.perf_counter()) - entered > SLOW_EVENT_S:
                log.warning("%s took %.0f ms under the lock: core %.0f, SQLite %.0f, dispatch "
                            "%.0f", type(event).__name__, 1e3 * (done - entered),
                            1e3 * (began - entered), 1e3 * (committed - began),
                            1e3 * (done - committed))
            return commands

    def _snapshot(self, now: float) -> None:
        seq = self.store.last_seq()
        if seq:
            with self.store.transaction() as tx:
                tx.snapshot(seq, now, self.core.snapshot())

    # ------------------------------------------------------------------ client API
    def submit(self, spec: JobSpec, model: bytes, request_id: str = "") -> JobRecord:
        """Register a validated job (idempotent on request_id, per user) for the core."""
        staged = self.blobs.stage(model) if model else None  # the fsync, outside the lock
        try:
            with self.lock:
                if request_id:
                    request_id = f"{spec.user}/{request_id}"  # scoped per user
                    existing = self.store.job_by_request(request_id)
                    if existing is not None:
                        return self.projection.jobs[existing["spec"]["job_id"]]
                spec = spec.with_(job_id=f"job-{uuid.uuid4().hex[:10]}")
                record = JobRecord(spec, request_id=request_id,
                                   submitted_at=self.config.clock())
                if staged is not None:
                    self.blobs.commit(staged, spec.job_id, "model.onnx")
                    record.uploaded_model = True
                self.projection.jobs[spec.job_id] = record
                self._handle(JobSubmitted(spec, cause=request_id or spec.job_id), spec.job_id)
                return record
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)  # committed: gone already; a duplicate: dropped

    def get(self, job_id: str) -> JobRecord:
        record = self.projection.jobs.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id!r}: list jobs with `tunesched jobs`")
        return record

    def list_jobs(self, state: str = "") -> list[JobRecord]:
        with self.lock:
            records = sorted(self.projection.jobs.values(), key=lambda r: r.submitted_at)
            return [r for r in records if not state or r.state == state]

    def cancel(self, job_id: str) -> JobRecord:
        with self.lock:
            record = self.get(job_id)
            if record.terminal:
                raise FailedPrecondition(f"job {job_id} is already {record.state}")
            self._handle(JobCancelled(job_id, cause="client-cancel"))
            return record

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

    def timeline(self) -> list[LeaseRecord]:
        with self.lock:
            return sorted(self.projection.leases.values(), key=lambda r: r.granted_at)

    def subscribe(self, job_id: str) -> queue.Queue:
        with self.lock:
            return self.watchers.subscribe(self.get(job_id), self.config.clock())

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        with self.lock:
            self.watchers.unsubscribe(job_id, q)

    # ------------------------------------------------------------------ runner API
    def runner_connected(self, register: dict[str, Any]) -> RunnerLink:
        check_register(register)
        with self.lock:
            link = self.links.connect(register, self.config.clock())
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
            if not self.links.current(link):
                return
            link.last_seen = self.config.clock()
            link.foreign_load = foreign_load
            if self._crosses_threshold(link.runner_id, foreign_load):  # may start or hold a
                self._beats.pop(link.runner_id, None)  # profile: at once
                self._handle(HeartbeatReceived(link.runner_id, foreign_load, gpu_util))
            else:  # only extends leases: with the others at the next tick, one logged event
                self._beats[link.runner_id] = (foreign_load, gpu_util)
            for lease_id in live_leases:  # nothing runs unscheduled: not one revoked while
                lease = self.core.leases.get(lease_id)  # its stage started, nor one from
                if lease is None or lease.holder != link.runner_id:  # before a restart
                    self.links.revoke_stray(link, lease_id)

    def _crosses_threshold(self, runner_id: str, foreign_load: float) -> bool:
        """Whether this load puts the runner's host on the other side of the foreign load
        threshold from where the core has it."""
        runner = self.core.runners.get(runner_id)
        if runner is None:
            return False
        threshold = self.core.config.foreign_load_threshold
        return (foreign_load > threshold) != (self.core.hosts[runner.host_id].foreign_load
                                               > threshold)

    def _flush_heartbeats(self) -> None:
        """Tell the core the heartbeats heard since the last tick, as one logged event
        (replay must see lease extensions to expire the same leases): at 1,000 runners a
        heartbeat each 2 s is 500 SQLite transactions a second, one a tick this way."""
        if not self._beats:
            return
        beats = {r: b for r, b in self._beats.items() if r in self.core.runners}
        self._beats = {}
        if not beats:
            return
        self._handle(HeartbeatsReceived(tuple(beats), tuple(b[0] for b in beats.values()),
                                        tuple(b[1] for b in beats.values()), cause="tick"))

    def runner_paused(self, link: RunnerLink, lease_id: str) -> None:
        """The runner confirms the stage under `lease_id` is stopped (or not running there)."""
        with self.lock:
            link.last_seen = self.config.clock()
            self.gate.stopped(lease_id)

    def runner_result(self, link: RunnerLink, result: dict[str, Any]) -> None:
        if self.stopping.is_set():
            return
        with self.lock:
            link.last_seen = self.config.clock()
            self.gate.stopped(result["lease_id"])  # it ended: nothing left to stop
            if self._fenced_in(result):
                self.projection.child_reported(result)
                if result["ok"] and isinstance(result["result"], dict):
                    self.metrics.stage_result(result["stage"], result["result"])
            if result["ok"]:
                event: Any = StageFinished(result["lease_id"], result["epoch"], result["job_id"],
                                           result["stage_id"], result["result"],
                                           cause=link.session)
            else:
                event = StageFailed(result["lease_id"], result["epoch"], result["job_id"],
                                    result["stage_id"], result["error"], cause=link.session)
            self._handle(event)

    def _fenced_in(self, result: dict[str, Any]) -> bool:
        """Whether `result` comes under its live lease and epoch (what the core will accept)."""
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

    def _live_job(self, job_id: str, lease_id: str, epoch: int) -> JobRecord:
        with self.lock:
            record = self.get(job_id)
            lease = self.core.leases.get(lease_id)
            if lease is None or lease.epoch != epoch:
                raise FailedPrecondition(f"lease {lease_id} epoch {epoch} is not live: "
                                         "bundle rejected")
            return record

    def job_bundle(self, job_id: str) -> tuple[bytes, int]:
        """The job's latest state bundle with its model bundle (simpletvm.bundle) and its
        version; an initial one before extract."""
        with self.lock:
            record = self.get(job_id)
            data = self.blobs.get(job_id, "state.tar.gz")
            model_files = self.blobs.get(job_id, "model.tar.gz")
            version = record.state_version
        if data is not None and version >= 0:  # merged outside the lock
            return bundle.merge(model_files, data) if model_files else data, version
        # built outside the lock; the model blob never changes
        model = self.blobs.get(job_id, "model.onnx") if record.uploaded_model else None
        return bundle.initial(record.spec, model), -1

    def store_bundle(self, job_id: str, lease_id: str, epoch: int, kind: str, version: int,
                     data: bytes) -> None:
        if self.stopping.is_set():
            raise FailedPrecondition(SHUTTING_DOWN)
        if kind not in bundle.KINDS:
            raise InvalidRequest(f"unknown bundle kind {kind!r}: use one of "
                                 f"{', '.join(bundle.KINDS)}")
        self._live_job(job_id, lease_id, epoch)
        try:  # a bad bundle must not replace the job's last good one
            bundle.verify(data)
        except JobDirError as exc:
            raise InvalidRequest(str(exc)) from exc
        found = _records_in(job_id, data) if kind == "state" else None
        staged = self.blobs.stage(data)  # the fsyncs, outside the lock
        model = self.blobs.stage(found.cost_model) if found and found.cost_model else None
        try:
            with self.lock:
                if self.stopping.is_set():  # the store may be closed: the blob and the
                    raise FailedPrecondition(SHUTTING_DOWN)  # version naming it go together
                record = self._live_job(job_id, lease_id, epoch)
                self.blobs.commit(staged, job_id, f"{kind}.tar.gz")
                if kind == "state":
                    record.state_version = version
                with self.store.transaction() as tx:  # records go with the state they came in
                    tx.put_job(job_id, record.request_id, record.to_dict())
                    if found is not None:
                        scope, key = self._filing(record.spec, lease_id, found.target)
                        self.records.ingest(tx, job_id, scope, key, found, model)
        finally:
            for path in (staged, model):  # committed: gone already; refused: dropped
                if path is not None:
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ tuning memory
    def _filing(self, spec: JobSpec, lease_id: str,
                resolved: dict[str, Any] | None = None) -> tuple[str, str]:
        """(scope, target key) of a job's records: its target, timed on the device of the
        runner holding `lease_id` (call under the lock, with the lease live). An llvm target
        submitted without num-cores runs on every core of the runner that took it: the target
        as that runner resolved it (`resolved`, from the job's state), else on the cores of
        the lease's runner, which resolves it the same way."""
        link = self.links.get(self.core.leases[lease_id].holder)
        register = link.register if link is not None else {}
        device = tuningdb.device_model(spec.target["kind"], register.get("cpu_model", ""),
                                       register.get("gpu_models", []))
        cores = len(register.get("cores", [])) or 1
        if resolved and isinstance(resolved.get("num-cores"), int) and resolved["num-cores"] > 0:
            cores = resolved["num-cores"]
        target = on_host(spec.target, cores)
        return (self.config.records_scope_of(spec.user), tuningdb.target_key(target, device))

    def known_records(self, job_id: str, lease_id: str, epoch: int,
                      workloads: list[str]) -> dict[str, bytes]:
        """What a job's first search can start from (its lease's device decides the key):
        known.json, and the target key's cost model if it has one."""
        with self.lock:
            record = self._live_job(job_id, lease_id, epoch)
            scope, key = self._filing(record.spec, lease_id)
        files = {tuningdb.KNOWN_FILE: json.dumps(
            self.records.known(scope, key, workloads)).encode()}
        model = self.records.cost_model(scope, key)
        if model is not None:
            files[tuningdb.KNOWN_COST_MODEL] = model
        return files

    def import_records(self, user: str, target: dict[str, Any], device: str,
                       files: dict[str, bytes]) -> tuple[int, int, str]:
        """Records from a JSON database made elsewhere, filed under `target` timed on
        `device` (marked imported); (workloads, records, target key). All or nothing."""
        try:
            db = tuningdb.parse_database(
                files.get(tuningdb.WORKLOAD_FILE, b"").decode(errors="replace"),
                files.get(tuningdb.RECORD_FILE, b"").decode(errors="replace"), "import")
        except JobDirError as exc:
            raise InvalidRequest(str(exc)) from exc
        if not db.records:
            raise InvalidRequest("nothing to import: send a database_workload.json and a "
                                 "database_tuning_record.json with records")
        for records in db.records.values():
            for record in records:
                if record.target.get("kind") != target["kind"]:
                    raise InvalidRequest(
                        f"a record is for a {record.target.get('kind')} target, not the "
                        f"{target['kind']} target named for the import: import each target's "
                        "records on their own")
        key = tuningdb.target_key(target, device)
        with self.lock, self.store.transaction() as tx:
            count = self.records.add_imported(tx, self.config.records_scope_of(user), key, db)
        return len(db.records), count, key


def _records_in(job_id: str, data: bytes) -> StateRecords | None:
    """The records in a state bundle; None (logged) when they cannot be read: the job's state
    still commits, only the tuning memory misses them."""
    try:
        return parse_state(data)
    except (JobDirError, ValueError, KeyError, TypeError) as exc:
        log.warning("job %s: records of its state bundle not kept: %s", job_id, exc)
        return None
