"""The runner agent: registers its host's resources, heartbeats, runs leased stages.

One gRPC stream to the scheduler carries Register/Heartbeat/StageResult up and
StartStage/RevokeLease/PauseLease/ResumeLease/Shutdown down. Each stage runs in a child process
pinned to its lease (forked from a warm server: see simpletvm.executor); a paused one is
stopped, workers and all, until resumed. Job directories live under the work dir;
a job this runner has not seen, or has an old copy of, is fetched from the scheduler first, and
after extract, learn and compile the job's state (or results) goes back up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from proto import tunesched_pb2 as pb
from proto import tunesched_pb2_grpc as pb_grpc
from proto.transport import chunks, metadata, open_channel
from runner.hostinfo import HostInfo, LoadMeter
from runner.metrics import RunnerMetrics
from simpletvm import bundle, warmstart
from simpletvm.errors import JobDirError
from simpletvm.executor import Executor, StageExecutor, StageHandle, StageOutcome, StageRequest
from simpletvm.jobdir import JobDir
from simpletvm.targets import on_host

log = logging.getLogger(__name__)


@dataclass
class RunnerConfig:
    """Settings of one runner process (built by the CLI from flags)."""

    scheduler: str
    host: HostInfo
    work_dir: Path
    runner_id: str = field(default_factory=lambda: f"runner-{uuid.uuid4().hex[:8]}")
    reconnect_max_s: float = 10.0
    heartbeat_interval_s: float = 2.0
    token: str = field(default="", repr=False)  # never printed
    tls_ca: bytes | None = None


def _forget_version(job: JobDir) -> None:
    """Drop what tells `_prepare` which state a job directory holds: the next stage fetches."""
    for path in (job.spec_path, job.progress_path):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _resolve_target(job: JobDir, cores: int) -> None:
    """An llvm target submitted without num-cores ("cpu") runs on every core this runner
    offers: job.json says so before any stage reads it. Once written it travels with the
    job's state, so the job keeps the count it was tuned for if it moves."""
    spec = job.spec()
    target = on_host(spec.target, cores)
    if target != spec.target:
        job.write_spec(spec.with_(target=target))
        log.info("job %s: target %s on this host's %d cores", spec.job_id, target, cores)


def stage_request(start: pb.StartStage, job_dir: str) -> StageRequest:
    """The stage process a StartStage asks for: its lease's cores and exactly its GPUs (none
    for a lease without one: the process then sees no GPU at all)."""
    lease = start.lease
    return StageRequest(start.stage, job_dir, start.round, list(lease.cores), list(lease.gpus),
                        start.timeout_s or None)


class Agent:
    """One runner: `run(stop)` connects, serves leases, reconnects with backoff until `stop`."""

    def __init__(self, config: RunnerConfig, executor: Executor | None = None,
                 meter: Any = None, metrics: RunnerMetrics | None = None) -> None:
        self.config = config
        self.executor = executor or StageExecutor(gpu=bool(config.host.gpus))
        # lease -> its stage process; None while the stage starts (job fetch, process spawn):
        # a revoke or a lost connection meanwhile removes the entry, and the stage never runs
        self.running: dict[str, StageHandle | None] = {}
        self.paused: set[str] = set()  # leases to keep stopped (their stage may not run yet)
        self.lock = threading.Lock()
        self.meter = meter or LoadMeter()  # what foreign load the heartbeats report
        self.registered = threading.Event()
        self._outbox: queue.Queue | None = None
        self._stop = threading.Event()
        self.fatal = ""  # set when the scheduler refuses this runner for good
        self.metrics = metrics or RunnerMetrics()  # served by `tunesched runner --metrics`
        self.metrics.leases.set_function(lambda: len(self.running))

    # ------------------------------------------------------------------ connection
    def run(self, stop: threading.Event | None = None) -> None:
        self._stop = stop or self._stop
        self.executor.warm()  # before registering: no lease waits for it
        self.metrics.fork_server_seen()
        delay = 0.2
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.INVALID_ARGUMENT):
                    self.fatal = f"scheduler refused this runner: {exc.details()}"
                    log.error("%s", self.fatal)
                    self._stop.set()
                    break
                log.warning("scheduler %s unreachable (%s); retrying in %.1f s",
                            self.config.scheduler, exc.code().name, delay)
            finally:
                self.registered.clear()
                self._kill_all("connection to the scheduler lost")
            if time.monotonic() - started > 30:
                delay = 0.2  # the last session lived a while: reconnect quickly
            self._stop.wait(delay)
            delay = min(delay * 2, self.config.reconnect_max_s)
        self.meter.close()  # other runners on the host stop counting this one as ours

    def stop(self) -> None:
        self._stop.set()
        if self._outbox is not None:
            self._outbox.put(None)

    def _session(self) -> None:
        outbox: queue.Queue = queue.Queue()
        self._outbox = outbox
        host = self.config.host
        outbox.put(pb.RunnerMessage(register=pb.Register(
            runner_id=self.config.runner_id, host_id=host.host_id, cores=host.cores,
            gpus=host.gpus, memory_mb=host.memory_mb, target_kinds=host.target_kinds,
            token=self.config.token, cpu_model=host.cpu_model, gpu_models=host.gpu_models)))

        def requests():
            while True:
                msg = outbox.get()
                if msg is None:
                    return
                yield msg

        self.metadata = metadata(self.config.token)
        with open_channel(self.config.scheduler, self.config.tls_ca) as channel:
            self.stub = pb_grpc.RunnerChannelStub(channel)
            stream = self.stub.Connect(requests(), metadata=self.metadata)
            beat: threading.Thread | None = None
            try:
                for msg in stream:
                    kind = msg.WhichOneof("msg")
                    if kind == "registered":
                        interval = msg.registered.heartbeat_interval_s or 2.0
                        self.registered.set()  # before the thread: it loops while set
                        beat = threading.Thread(target=self._heartbeats,
                                                args=(outbox, interval), daemon=True)
                        beat.start()
                        log.info("registered as %s on host %s", self.config.runner_id,
                                 host.host_id)
                    elif kind == "start":
                        threading.Thread(target=self._serve_stage, args=(msg.start, outbox),
                                         name=f"stage-{msg.start.stage}", daemon=True).start()
                    elif kind == "revoke":
                        self._revoke(msg.revoke.lease_id, msg.revoke.reason)
                    elif kind == "pause" and self._pause(msg.pause.lease_id, True):
                        outbox.put(pb.RunnerMessage(paused=pb.Paused(
                            lease_id=msg.pause.lease_id, epoch=msg.pause.epoch)))
                    elif kind == "resume":
                        self._pause(msg.resume.lease_id, False)
                    elif kind == "shutdown":
                        log.warning("scheduler asked to shut down: %s", msg.shutdown.reason)
                        self._stop.set()
                        break
                    if self._stop.is_set():
                        break
            finally:
                outbox.put(None)
                if beat is not None:
                    beat.join(timeout=1)

    def _heartbeats(self, outbox: queue.Queue, interval: float) -> None:
        while self.registered.is_set() and not self._stop.wait(interval):
            with self.lock:
                live = list(self.running)
            load = self.meter.foreign_load()
            self.metrics.foreign_load.set(load)
            outbox.put(pb.RunnerMessage(heartbeat=pb.Heartbeat(
                foreign_load=load, live_leases=live)))

    # ------------------------------------------------------------------ stages
    def job_dir(self, job_id: str) -> JobDir:
        return JobDir(self.config.work_dir / "jobs" / job_id)

    def _serve_stage(self, start: pb.StartStage, outbox: queue.Queue) -> None:
        lease = start.lease
        started = time.time()
        with self.lock:
            self.running[lease.lease_id] = None
        process: StageHandle | None = None
        try:
            job = self._prepare(start)
            if start.stage == "search":
                self._fetch_known(job, start)
            request = stage_request(start, str(job.root))
            process = self.executor.start(request)
            self.metrics.fork_server_seen()
            with self.lock:
                revoked = lease.lease_id not in self.running
                if not revoked:
                    self.running[lease.lease_id] = process
                    if lease.lease_id in self.paused:  # paused while we fetched the job
                        process.pause()
            if revoked:  # while it started: it must not run beside the stage that replaces it
                log.warning("lease %s was revoked while its stage started: killing pid %d",
                            lease.lease_id, process.pid)
                process.kill()
                self.metrics.stage_ended(start.stage, "revoked", 0.0)
                return
            outcome = process.wait()
            with self.lock:
                revoked = self.running.pop(lease.lease_id, None) is None
                self.paused.discard(lease.lease_id)
            self.metrics.stage_ended(start.stage, "revoked" if revoked else outcome.status,
                                     outcome.cpu_s)
            if revoked:
                return  # the scheduler took the lease back: it does not want this result
            if outcome.ok and start.stage == "extract":  # the model: once, before its state
                self._upload(job, start, "model")
            if outcome.ok and start.stage in ("extract", "learn"):
                self._upload(job, start, "state")
            elif outcome.ok and outcome.result.get("final"):  # the final benchmark: report
                self._upload(job, start, "result")
        except grpc.RpcError as exc:
            # the scheduler went away (or is restarting): not the stage's fault. Send nothing;
            # the lease is revoked when this runner re-registers, and the stage runs again.
            log.warning("stage %s of %s: scheduler unreachable for job state (%s); dropping "
                        "the result", start.stage, start.job_id, exc.code().name)
            with self.lock:
                self.running.pop(lease.lease_id, None)
            return
        except Exception as exc:  # prepare failures (bad bundle, disk) are stage failures
            log.exception("stage %s of %s failed before or after running", start.stage,
                          start.job_id)
            outcome = StageOutcome(start.stage, "error", error=f"{type(exc).__name__}: {exc}",
                                   started=started, finished=time.time())
            if process is None:  # one that ran is counted already
                self.metrics.stage_ended(start.stage, "error", 0.0)
            with self.lock:
                self.running.pop(lease.lease_id, None)
                self.paused.discard(lease.lease_id)
        outbox.put(pb.RunnerMessage(result=pb.StageResult(
            lease_id=lease.lease_id, epoch=lease.epoch, job_id=start.job_id,
            stage_id=start.stage_id, stage=start.stage, ok=outcome.ok,
            result_json=json.dumps(outcome.result), error=outcome.error[:2000],
            traceback=outcome.traceback[-8000:], started=outcome.started,
            finished=outcome.finished, pid=outcome.pid, cores=outcome.cores,
            paused_at=outcome.paused_at, resumed_at=outcome.resumed_at)))

    def _prepare(self, start: pb.StartStage) -> JobDir:
        """The job directory, fetched from the scheduler when missing or behind."""
        job = self.job_dir(start.job_id)
        local = -2
        if job.spec_path.exists():
            local = job.progress().rounds if job.progress_path.exists() else -1
        if local < start.state_version or not job.spec_path.exists():
            data = b"".join(c.data for c in self.stub.FetchBundle(
                pb.FetchBundleRequest(job_id=start.job_id), metadata=self.metadata))
            try:
                bundle.unpack(data, job.root)
            except JobDirError:
                _forget_version(job)  # a half-written copy must not pass for a good one
                raise
            log.info("fetched job %s state v%d (%d bytes)", start.job_id, start.state_version,
                     len(data))
        _resolve_target(job, len(self.config.host.cores))
        return job

    def _fetch_known(self, job: JobDir, start: pb.StartStage) -> None:
        """Before a job's first search: what the scheduler knows of its workloads on this
        host's device, for the search to take in (simpletvm.warmstart). Once per job."""
        if not warmstart.wanted(job):
            return
        files: dict[str, bytearray] = {}
        for chunk in self.stub.FetchRecords(pb.FetchRecordsRequest(
                job_id=start.job_id, lease_id=start.lease.lease_id, epoch=start.lease.epoch,
                workloads=[info.shash for info in job.tasks()]), metadata=self.metadata):
            files.setdefault(chunk.path, bytearray()).extend(chunk.data)
        warmstart.receive(job, {name: bytes(data) for name, data in files.items()})

    def _upload(self, job: JobDir, start: pb.StartStage, kind: str) -> None:
        data = bundle.pack(job, kind)
        version = job.progress().rounds if kind == "state" else start.state_version
        header = pb.UploadHeader(job_id=start.job_id, lease_id=start.lease.lease_id,
                                 epoch=start.lease.epoch, kind=kind, state_version=version)

        def parts():
            yield pb.UploadBundleRequest(header=header)
            for piece in chunks(data):
                yield pb.UploadBundleRequest(chunk=pb.FileChunk(data=piece))

        self.stub.UploadBundle(parts(), metadata=self.metadata)

    def _pause(self, lease_id: str, pause: bool) -> bool:
        """Stop (or continue) the stage under `lease_id`; one not started yet starts stopped.
        True when the pause is confirmed: every process of the stage was seen stopped."""
        left: list[str] = []
        with self.lock:
            if pause:
                self.paused.add(lease_id)
            else:
                self.paused.discard(lease_id)
            process = self.running.get(lease_id)
            if process is not None and pause:
                left = process.pause()
            elif process is not None:
                process.resume()
        if left:
            log.warning("lease %s: not confirming the pause: %d processes of its stage did not "
                        "stop: %s", lease_id, len(left), ", ".join(left))
        else:
            log.info("lease %s %s", lease_id, "paused" if pause else "resumed")
        return not left

    def _revoke(self, lease_id: str, reason: str) -> None:
        with self.lock:
            self.paused.discard(lease_id)
            process = self.running.pop(lease_id, None)
        if process is not None:
            log.warning("lease %s revoked (%s): killing pid %d", lease_id, reason, process.pid)
            process.kill()

    def _kill_all(self, reason: str) -> None:
        with self.lock:
            leases = list(self.running)
        for lease_id in leases:
            self._revoke(lease_id, reason)
