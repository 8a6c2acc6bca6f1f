"""Fault injection over loopback: a real daemon subprocess, real runners, real (tiny) TVM jobs.

Each test injects one fault (kill -9 of a runner mid-build / mid-profile, kill -9 of the
daemon, a runner gone silent, an unwritable or full work dir, a hung stage) and checks what
must survive it: every job finishes with exactly its trial budget of records (none lost, none
counted twice), or ends failed with a one-line error naming the problem while the daemon keeps
serving. Nothing sleeps to synchronise: every wait polls observable state (job, timeline, log).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from client.api import Client
from proto import tunesched_pb2 as pb
from proto import tunesched_pb2_grpc as pb_grpc
from scheduler.core import TERMINAL_JOB_STATES
from scheduler.testing import TUNESCHED, RunnerProcess, sleep_agent, wait_for
from simpletvm.executor import StageExecutor, StageProcess, StageRequest
from simpletvm.fake_executor import SleepExecutor
from simpletvm.jobdir import JobDir
from simpletvm.spec import JobSpec

from .conftest import (
    assert_exact_records,
    connected_runners,
    health,
    start_daemon,
)

TARGET = {"kind": "llvm", "num-cores": len(os.sched_getaffinity(0))}
FAKE_TARGET = {"kind": "llvm", "num-cores": 2}
FAST = {"extract": 0.05, "search": 0.1, "build": 0.1, "profile": 0.1, "learn": 0.05,
        "compile": 0.1}
# profiles must not wait for a quiet machine: other tests may share this one
ANY_LOAD = ["--max-foreign-load", "1"]


# ---------------------------------------------------------------------------- helpers
def submit(address: str, trials: int, batch: int = 8, name: str = "mm",
           model: str = "zoo:matmul", target: dict = TARGET) -> str:
    with Client(address) as client:
        return client.submit(JobSpec(model=model, target=target, trials=trials, name=name,
                                     batch_size=batch)).job_id


def job_info(address: str, job: str) -> pb.JobInfo:
    with Client(address, timeout=10) as client:
        return client.get(job)


def timeline(address: str) -> list[dict[str, Any]]:
    with Client(address, timeout=10) as client:
        return client.timeline()


def wait_terminal(address: str, job: str, timeout: float) -> pb.JobInfo:
    def ended() -> pb.JobInfo | None:
        info = job_info(address, job)
        return info if info.state in TERMINAL_JOB_STATES else None

    return wait_for(ended, timeout, f"job {job} to end", interval=0.5)


def live_lease(address: str, stage: str) -> dict[str, Any] | None:
    return next((x for x in timeline(address)
                 if x["stage"] == stage and x["outcome"] == "live"), None)


def committed_leases(state: Path) -> list[dict[str, Any]]:
    """The lease records in the daemon's SQLite file, read-only (no checkpoint, no recovery)."""
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT record FROM leases")]


def log_has(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace")


def file_size_limit(fsize_bytes: int) -> Any:
    """A preexec for RunnerProcess: writes past `fsize_bytes` fail with EFBIG (RLIMIT_FSIZE), as
    on a full disk (Python ignores SIGXFSZ)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))

    return limit


@contextlib.contextmanager
def fake_runner(address: str, work: Path, executor: Any) -> Iterator[Any]:
    """An in-process runner agent on host "box" whose stages `executor` runs, registered
    with the daemon at `address` for the duration of the block."""
    agent = sleep_agent(address, "box", work, "fake-1", cores=2)
    agent.executor = executor
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: connected_runners(address) == 1, 15, "the runner to register")
        yield agent
    finally:
        stop.set()
        agent.stop()
        thread.join(timeout=10)


# ---------------------------------------------------------------------------- raw runner
class RawRunner:
    """The test plays a runner on the raw RunnerChannel stream: it sends exactly what it is
    told to (no heartbeats unless asked) and queues what the scheduler sends."""

    def __init__(self, address: str, runner_id: str, host_id: str, cores: int = 2) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.RunnerChannelStub(self.channel)
        self.outbox: queue.Queue = queue.Queue()
        self.inbox: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        self.outbox.put(pb.RunnerMessage(register=pb.Register(
            runner_id=runner_id, host_id=host_id, cores=list(range(cores)), memory_mb=4096,
            target_kinds=["llvm"])))
        self.stream = self.stub.Connect(self._requests())
        threading.Thread(target=self._read, daemon=True).start()
        assert self.expect("registered").registered.runner_id == runner_id

    def _requests(self) -> Iterator[pb.RunnerMessage]:
        while (msg := self.outbox.get()) is not None:
            yield msg

    def _read(self) -> None:
        try:
            for msg in self.stream:
                self.inbox.put(msg)
        except grpc.RpcError:
            pass
        finally:
            self.ended.set()

    def expect(self, kind: str, timeout: float = 20) -> pb.SchedulerMessage:
        """The next message of `kind` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind} message within {timeout:.0f} s") from None
            if msg.WhichOneof("msg") == kind:
                return msg

    def send(self, msg: pb.RunnerMessage) -> None:
        self.outbox.put(msg)

    def heartbeat(self) -> None:
        self.send(pb.RunnerMessage(heartbeat=pb.Heartbeat(foreign_load=0.0)))

    def close(self) -> None:
        self.outbox.put(None)
        self.stream.cancel()
        self.channel.close()


def late_result(start: pb.StartStage, epoch: int, lease_id: str = "") -> pb.RunnerMessage:
    """A successful extract result for `start`, sent under `lease_id` (default its own)."""
    now = time.time()
    return pb.RunnerMessage(result=pb.StageResult(
        lease_id=lease_id or start.lease.lease_id, epoch=epoch, job_id=start.job_id,
        stage_id=start.stage_id, stage=start.stage, ok=True,
        result_json=json.dumps({"tasks": 1, "flops": 1.0, "task_names": ["late"]}),
        started=now - 1, finished=now, pid=4242, cores=list(start.lease.cores)))


# ---------------------------------------------------------------------------- 4. silent runner
def test_silent_runner_loses_its_lease_and_its_late_result_is_rejected(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    daemon = start_daemon(tmp_path / "state" / "s.db", log,
                    extra=["--runner-timeout", "2", "--lease-ttl", "2"])
    address = daemon.address
    raw = late = None
    try:
        raw = RawRunner(address, "raw", "h1")
        job = submit(address, 8, name="silent", target=FAKE_TARGET)
        old = raw.expect("start").start
        assert old.stage == "extract" and old.job_id == job and old.timeout_s > 0
        # no heartbeat from now on: the lease must be taken back and the runner dropped
        wait_for(lambda: raw.ended.is_set(), 20, "the daemon to drop the silent runner")
        first = next(x for x in timeline(address) if x["lease_id"] == old.lease.lease_id)
        assert first["outcome"] in ("expired", "revoked"), first
        assert first["reason"] in ("lease expired", "runner lost"), first
        assert log_has(log, "runner raw missed its heartbeats: declaring it lost")
        assert job_info(address, job).trials_done == 0

        # the runner comes back and is granted the stage again, under a new epoch
        late = RawRunner(address, "raw", "h1")
        late.heartbeat()
        new = late.expect("start").start
        assert (new.job_id, new.stage, new.round) == (job, "extract", 0)
        assert new.lease.epoch > old.lease.epoch and new.stage_id != old.stage_id
        # ...then sends its result from before: under the old lease, and the old epoch on
        # the new lease id. Both must be rejected, and change nothing.
        late.send(late_result(old, old.lease.epoch))
        late.send(late_result(new, old.lease.epoch))
        for lease_id in (old.lease.lease_id, new.lease.lease_id):
            wait_for(lambda lid=lease_id: log_has(log, f"rejected result for lease {lid} "
                                                       f"epoch {old.lease.epoch}"),
                     10, f"the late result for {lease_id} to be rejected")
        late.heartbeat()
        leases = {x["lease_id"]: x for x in timeline(address)}
        assert leases[old.lease.lease_id]["outcome"] == first["outcome"]
        assert leases[new.lease.lease_id]["outcome"] == "live"
        assert leases[old.lease.lease_id]["child_pid"] == 0  # the late report was not taken
        info = job_info(address, job)
        assert (info.state, info.stage, info.trials_done) == ("running", "extract", 0)
        # a late state upload under the old lease is refused too
        header = pb.UploadHeader(job_id=job, lease_id=old.lease.lease_id,
                                 epoch=old.lease.epoch, kind="state", state_version=1)
        with pytest.raises(grpc.RpcError) as refused:
            late.stub.UploadBundle(iter([pb.UploadBundleRequest(header=header)]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not live" in refused.value.details()
        # under the live lease, a good state bundle is taken; a corrupt (here: truncated) one is
        # refused with one line, and the job keeps the good one
        def fetch() -> bytes:
            return b"".join(c.data for c in late.stub.FetchBundle(
                pb.FetchBundleRequest(job_id=job), timeout=10))

        def upload(data: bytes) -> None:
            header = pb.UploadHeader(job_id=job, lease_id=new.lease.lease_id,
                                     epoch=new.lease.epoch, kind="state", state_version=1)
            late.stub.UploadBundle(iter([pb.UploadBundleRequest(header=header),
                                         pb.UploadBundleRequest(chunk=pb.FileChunk(data=data))]),
                                   timeout=10)

        good = fetch()
        upload(good)
        assert fetch() == good  # stored verbatim, no longer built afresh
        with pytest.raises(grpc.RpcError) as corrupt:
            upload(good[:len(good) // 2])
        assert corrupt.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "job bundle is corrupt" in corrupt.value.details()
        assert "\n" not in corrupt.value.details()
        assert fetch() == good
        assert health(address) == "SERVING"
    finally:
        for r in (raw, late):
            if r is not None:
                r.close()
        daemon.stop()


# ---------------------------------------------------------------------------- 6. hung stage
class HangingSearch:
    """Fake stages (SleepExecutor), except that the first search of every job, and every
    search of the job named "stuck", run a real child process that hangs: the product's
    StageProcess must kill it at the timeout_s the daemon sent with the lease."""

    def __init__(self) -> None:
        self.sleep = SleepExecutor(FAST)
        self.ctx = multiprocessing.get_context("spawn")
        self.hung: list[StageProcess] = []
        self.searches: dict[str, int] = {}

    def warm(self) -> None:
        self.sleep.warm()

    def start(self, request: StageRequest) -> Any:
        if request.stage != "search":
            return self.sleep.start(request)
        name = JobDir(request.job_dir).spec().name
        attempt = self.searches[name] = self.searches.get(name, -1) + 1
        if name != "stuck" and attempt > 0:
            return self.sleep.start(request)
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        os.unlink(path)
        process = self.ctx.Process(target=time.sleep, args=(3600,), daemon=True)
        process.start()
        stage = StageProcess(process, request, path)
        self.hung.append(stage)
        return stage


def test_a_hung_stage_is_killed_at_its_timeout_and_retried(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    daemon = start_daemon(tmp_path / "state" / "s.db", log, extra=["--stage-timeout", "search=1.5"])
    address = daemon.address
    executor = HangingSearch()
    try:
        with fake_runner(address, tmp_path / "work", executor):
            stuck = submit(address, 8, batch=4, name="stuck", target=FAKE_TARGET)
            once = submit(address, 8, batch=4, name="once", target=FAKE_TARGET)
            failed = wait_terminal(address, stuck, 60)
            done = wait_terminal(address, once, 60)

            # every search of "stuck" hung: killed at 1.5 s each time, then the job failed
            assert failed.state == "failed"
            assert failed.error == "search failed 3 times: stage exceeded its timeout of 1.5 s"
            assert "\n" not in failed.error
            # the first search of "once" hung and was killed; the retry finished the job
            assert done.state == "done" and done.trials_done == 8, done.error
            leases = timeline(address)
            searches = {j: [x for x in leases if x["job_id"] == j and x["stage"] == "search"]
                        for j in (stuck, once)}
            assert [x["outcome"] for x in searches[stuck]] == ["failed"] * 3
            assert [x["outcome"] for x in searches[once]][:2] == ["failed", "finished"]
            hung = searches[stuck] + searches[once][:1]
            assert len(executor.hung) == len(hung) == 4
            assert {x["child_pid"] for x in hung} == {s.pid for s in executor.hung}
            for x in hung:  # killed at the timeout, not before, not much after
                assert 1.5 <= x["child_finished"] - x["child_started"] < 5, x
                assert x["ended_at"] - x["granted_at"] < 6, x
            for stage in executor.hung:  # the child process is really gone (killed and reaped)
                assert not psutil.pid_exists(stage.pid), stage.pid
            assert health(address) == "SERVING"
    finally:
        for stage in executor.hung:
            stage.kill()
        daemon.stop()


def test_bad_stage_timeout_flag_is_one_line_error(tmp_path: Path) -> None:
    for flag, words in (("search", "STAGE=SECONDS"), ("bogus=3", "must be one of"),
                        ("build=-1", "positive"), ("build=soon", "STAGE=SECONDS")):
        out = subprocess.run([*TUNESCHED, "scheduler", "--listen", "127.0.0.1:0", "--state",
                              str(tmp_path / "s.db"), "--stage-timeout", flag],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out  # a usage error, as click's are
        assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr


# ---------------------------------------------------------------------------- 7. stray stages
class GatedExtract:
    """Fake stages, except that the first extract's start blocks until `release` is set (a
    slow job fetch or process spawn), so that its lease can be revoked meanwhile."""

    def __init__(self) -> None:
        self.sleep = SleepExecutor(FAST)
        self.entered, self.release = threading.Event(), threading.Event()
        self.gated: list[Any] = []

    def warm(self) -> None:
        self.sleep.warm()

    def start(self, request: StageRequest) -> Any:
        stage = self.sleep.start(request)
        if request.stage == "extract" and not self.gated:
            self.gated.append(stage)
            self.entered.set()
            self.release.wait(30)
        return stage


class GatedRealExtract(GatedExtract):
    """The real StageExecutor: the first extract's process is forked (a real stage child on
    the warm fork server), then the start blocks until `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.sleep = StageExecutor()


@pytest.mark.tvm
def test_a_real_stage_process_revoked_while_it_starts_never_runs(tmp_path: Path) -> None:
    """The child exists while the lease is revoked; it must not have run the stage (it used to
    start at once and extract the model) and is killed before it does."""
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")
    address = daemon.address
    executor = GatedRealExtract()
    try:
        with fake_runner(address, tmp_path / "work", executor):
            job = submit(address, 8, batch=4, name="gone", target=FAKE_TARGET)
            assert executor.entered.wait(60), "the extract never started"
            stage = executor.gated[0]
            lease = live_lease(address, "extract")
            with Client(address) as client:
                client.cancel(job)
            wait_for(lambda: job_info(address, job).state == "cancelled", 20, "the cancel")
            # forked, and held before its first step (pinning itself to the lease's cores)
            assert stage.process.is_alive()
            assert os.sched_getaffinity(stage.pid) != set(lease["cores"])
            executor.release.set()
            wait_for(stage.done, 20, "the revoked extract's process to be killed")
            assert stage.process.exitcode == -signal.SIGKILL
            assert not Path(stage.outcome_path).exists()  # it never ran to an outcome
            assert not (tmp_path / "work" / "jobs" / job / "tasks").exists()  # nor extracted
            assert [x["outcome"] for x in timeline(address)
                    if x["lease_id"] == lease["lease_id"]] == ["revoked"]
    finally:
        executor.release.set()
        daemon.stop()


def test_a_stage_revoked_while_it_starts_never_runs(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")
    address = daemon.address
    executor = GatedExtract()
    revoked: queue.Queue = queue.Queue()
    try:
        with fake_runner(address, tmp_path / "work", executor) as agent:
            revoke = agent._revoke

            def recording_revoke(lease_id: str, reason: str) -> None:
                revoke(lease_id, reason)
                revoked.put(lease_id)

            agent._revoke = recording_revoke
            job = submit(address, 8, batch=4, name="gone", target=FAKE_TARGET)
            assert executor.entered.wait(30), "the extract never started"
            lease = live_lease(address, "extract")
            with Client(address) as client:
                client.cancel(job)
            assert revoked.get(timeout=20) == lease["lease_id"]
            executor.release.set()
            # the stage process it got is killed, never waited on: the extract wrote nothing
            stage = executor.gated[0]
            wait_for(stage.done, 20, "the revoked extract to be killed")
            assert stage.outcome is None
            assert not (tmp_path / "work" / "jobs" / job / "tasks" / "index.json").exists()
            wait_for(lambda: not agent.running, 20, "the runner to forget the revoked lease")
            # and the runner goes on serving
            again = wait_terminal(address, submit(address, 8, batch=4, target=FAKE_TARGET), 60)
            assert again.state == "done" and again.trials_done == 8, again.error
    finally:
        executor.release.set()
        daemon.stop()


def test_a_stage_under_a_lease_the_scheduler_does_not_hold_is_revoked(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    daemon = start_daemon(tmp_path / "state" / "s.db", log)
    raw = None
    try:
        raw = RawRunner(daemon.address, "raw", "h1")
        job = submit(daemon.address, 8, name="real", target=FAKE_TARGET)
        start = raw.expect("start").start
        # the runner says it runs the lease it was given and one the scheduler never gave it
        raw.send(pb.RunnerMessage(heartbeat=pb.Heartbeat(
            foreign_load=0.0, live_leases=[start.lease.lease_id, "lease-stray"])))
        assert raw.expect("revoke").revoke.lease_id == "lease-stray"
        assert log_has(log, "runner raw runs a stage under lease lease-stray, which it does "
                            "not hold: revoking it")
        # the lease it holds was left alone: its result is taken
        raw.send(late_result(start, start.lease.epoch))
        wait_for(lambda: job_info(daemon.address, job).stage == "search", 20,
                 "the extract's result to be taken")
        first = next(x for x in timeline(daemon.address)
                     if x["lease_id"] == start.lease.lease_id)
        assert first["outcome"] == "finished", first
    finally:
        if raw is not None:
            raw.close()
        daemon.stop()


# ---------------------------------------------------------------------------- 1, 2. runner kill -9
def wait_for_stage_child(address: str, stage: str, runners: dict[str, RunnerProcess]) -> dict:
    """The live `stage` lease, once its stage process runs on its runner."""
    def running() -> dict | None:
        lease = live_lease(address, stage)
        if lease and runners[lease["runner_id"]].stage_processes():
            return lease
        return None

    return wait_for(running, 240, f"a {stage} stage to run", interval=0.1)


@pytest.mark.tvm
@pytest.mark.slow
def test_kill9_runner_during_build_reruns_the_build_on_the_other_runner(tmp_path: Path) -> None:
    state = tmp_path / "state" / "s.db"
    daemon = start_daemon(state, tmp_path / "daemon.log", extra=ANY_LOAD)
    address = daemon.address
    runners = {f"r{i}": RunnerProcess(address, f"r{i}", "box", tmp_path / "work",
                               tmp_path / f"r{i}.log") for i in (1, 2)}
    try:
        wait_for(lambda: connected_runners(address) == 2, 60, "two runners to register")
        job = submit(address, 16, batch=8)
        killed = wait_for_stage_child(address, "build", runners)
        runners[killed["runner_id"]].kill_group()
        assert wait_terminal(address, job, 240).state == "done"

        leases = timeline(address)
        dead = next(x for x in leases if x["lease_id"] == killed["lease_id"])
        assert dead["outcome"] == "revoked" and dead["reason"] == "runner lost", dead
        again = [x for x in leases if x["stage"] == "build" and x["round"] == killed["round"]
                 and x["granted_at"] > dead["granted_at"]]
        assert again and again[0]["outcome"] == "finished"
        assert again[0]["runner_id"] != killed["runner_id"]  # the surviving runner re-ran it
        assert_exact_records(address, state, job, 16, tmp_path / "result")
    finally:
        for r in runners.values():
            r.stop()
        daemon.stop()


@pytest.mark.tvm
@pytest.mark.slow
def test_kill9_runner_during_profile_reruns_the_profile_after_it_reconnects(
        tmp_path: Path) -> None:
    state = tmp_path / "state" / "s.db"
    daemon = start_daemon(state, tmp_path / "daemon.log", extra=ANY_LOAD)
    address = daemon.address
    work = tmp_path / "work"
    runner = RunnerProcess(address, "r1", "h1", work, tmp_path / "r1.log")
    try:
        wait_for(lambda: connected_runners(address) == 1, 60, "the runner to register")
        job = submit(address, 16, batch=8)
        killed = wait_for_stage_child(address, "profile", {"r1": runner})
        runner.kill_group()
        wait_for(lambda: connected_runners(address) == 0, 20, "the runner to be lost")
        assert job_info(address, job).state == "running"  # waits for a runner, not failed
        runner.stop()
        runner = RunnerProcess(address, "r1", "h1", work, tmp_path / "r1-again.log")  # restarted
        assert wait_terminal(address, job, 240).state == "done"

        leases = timeline(address)
        dead = next(x for x in leases if x["lease_id"] == killed["lease_id"])
        assert dead["outcome"] == "revoked", dead
        again = [x for x in leases if x["stage"] == "profile" and x["round"] == killed["round"]
                 and x["granted_at"] > dead["granted_at"]]
        assert again and again[0]["outcome"] == "finished"
        assert {x["host_id"] for x in leases} == {"h1"}
        assert_exact_records(address, state, job, 16, tmp_path / "result")
    finally:
        runner.stop()
        daemon.stop()


# ---------------------------------------------------------------------------- 3. daemon kill -9
@pytest.mark.tvm
@pytest.mark.slow
def test_kill9_daemon_mid_job_then_restart_finishes_every_job_exactly(tmp_path: Path) -> None:
    state = tmp_path / "state" / "s.db"
    daemon = start_daemon(state, tmp_path / "daemon1.log", extra=ANY_LOAD)
    address = daemon.address
    runners = [RunnerProcess(address, f"r{i}", "box", tmp_path / "work", tmp_path / f"r{i}.log")
               for i in (1, 2)]
    try:
        wait_for(lambda: connected_runners(address) == 2, 60, "two runners to register")
        jobs = {submit(address, 16, batch=8, name="a"): 16,
                submit(address, 24, batch=8, name="b"): 24}

        def committed_and_busy() -> bool:  # a round committed, and a stage in flight
            return (any(job_info(address, j).trials_done > 0 for j in jobs)
                    and any(x["outcome"] == "live" for x in timeline(address)))

        wait_for(committed_and_busy, 240, "a committed round with a stage in flight")
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        live_then = [x["lease_id"] for x in committed_leases(state) if x["outcome"] == "live"]
        assert live_then, "no stage was in flight when the daemon died"
        daemon = start_daemon(state, tmp_path / "daemon2.log", listen=address, extra=ANY_LOAD)
        with Client(address) as client:
            assert {j.job_id for j in client.jobs()} == set(jobs)
        for job in jobs:
            assert wait_terminal(address, job, 240).state == "done", job_info(address, job)

        leases = {x["lease_id"]: x for x in timeline(address)}
        # the stages in flight then were revoked (their runners re-registered) and re-run
        assert all(leases[lid]["outcome"] == "revoked" for lid in live_then), live_then
        for job, trials in jobs.items():
            assert_exact_records(address, state, job, trials, tmp_path / f"result-{job}")
    finally:
        for r in runners:
            r.stop()
        daemon.stop()


# ---------------------------------------------------------------------------- 5. bad work dir
def not_a_directory(work: Path) -> None:
    """The work dir's jobs/ is a regular file: nothing can be created under it (even by root)."""
    work.mkdir(parents=True)
    (work / "jobs").write_text("not a directory\n")


WORK_DIR_FAULTS = {  # fault -> (break the work dir, RLIMIT_FSIZE or 0, what the error says)
    "not-a-directory": (not_a_directory, 0, "Not a directory"),
    "disk-full": (Path.mkdir, 32 * 1024, "File too large"),  # the 64 KiB model does not fit
}


@pytest.mark.tvm
@pytest.mark.slow
@pytest.mark.parametrize("fault", list(WORK_DIR_FAULTS))
def test_unwritable_or_full_work_dir_fails_the_job_with_one_clear_line(
        tmp_path: Path, fault: str) -> None:
    breaks, fsize, says = WORK_DIR_FAULTS[fault]
    work = tmp_path / "bad-work"
    breaks(work)
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log", extra=ANY_LOAD)
    address = daemon.address
    bad = RunnerProcess(address, "bad", "h-bad", work, tmp_path / "bad.log",
                        preexec=file_size_limit(fsize) if fsize else None)
    good = None
    try:
        wait_for(lambda: connected_runners(address) == 1, 60, "the runner to register")
        job = submit(address, 8, name="doomed")
        info = wait_terminal(address, job, 120)
        assert info.state == "failed"
        error = info.error
        assert "\n" not in error and len(error) < 400, error
        assert error.startswith("extract failed 3 times: JobDirError: cannot write job files "
                                f"under {work / 'jobs' / job}: {says}"), error
        assert bad.proc.poll() is None  # the runner survived its failures...
        assert [r.connected for r in Client(address).runners()] == [True]
        # ...and the daemon keeps serving: health, lists, a job on a healthy runner
        assert health(address) == "SERVING"
        with Client(address) as client:
            assert [(j.job_id, j.state) for j in client.jobs()] == [(job, "failed")]
        bad.stop()
        wait_for(lambda: connected_runners(address) == 0, 20, "the bad runner to leave")
        good = RunnerProcess(address, "good", "h-good", tmp_path / "work", tmp_path / "good.log")
        second = submit(address, 8, name="fine")
        done = wait_terminal(address, second, 180)
        assert done.state == "done" and done.trials_done == 8, done.error
    finally:
        bad.stop()
        if good is not None:
            good.stop()
        daemon.stop()


# ---------------------------------------------------------------------------- 8. foreign load
def _foreign_loads(address: str) -> list[float]:
    with Client(address, timeout=10) as client:
        return [r.foreign_load for r in client.runners()]


@pytest.mark.tvm
@pytest.mark.slow
def test_two_runners_on_one_host_are_not_foreign_load_but_a_cpu_hog_is(tmp_path: Path) -> None:
    """The README's setup, two runners on one host, with real stages and the default
    --max-foreign-load: neither runner counts the other's stages as foreign, so no profile is
    held back; a CPU hog no runner started holds the next profile until it ends."""
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")  # default 0.25
    address = daemon.address
    runners = [RunnerProcess(address, f"r{i}", "box", tmp_path / "work", tmp_path / f"r{i}.log",
                             cores=str(i)) for i in (0, 1)]
    one_core = {"kind": "llvm", "num-cores": 1}
    hog = None
    try:
        wait_for(lambda: connected_runners(address) == 2, 60, "two runners to register")
        jobs = [submit(address, 8, batch=4, name=f"j{i}", target=one_core) for i in (0, 1)]
        seen: list[float] = []

        def both_done() -> bool:
            seen.extend(_foreign_loads(address))
            return all(job_info(address, j).state in TERMINAL_JOB_STATES for j in jobs)

        wait_for(both_done, 400, "both jobs to end", interval=0.5)
        assert [job_info(address, j).state for j in jobs] == ["done", "done"]
        assert max(seen) <= 0.25, seen  # never enough to hold a profile back

        # a hog on one of the host's two cores; then a job: its profile is held until the
        # hog ends (its other stages are not: only profiles wait for a quiet host)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        wait_for(lambda: max(_foreign_loads(address)) > 0.25, 30, "the hog to be seen")
        third = submit(address, 8, batch=4, name="j2", target=one_core)

        def built() -> bool:
            leases = [x for x in timeline(address) if x["job_id"] == third]
            return any(x["stage"] == "build" and x["outcome"] == "finished" for x in leases)

        wait_for(built, 240, "the third job's first build to finish")
        wait_for(lambda: max(_foreign_loads(address)) > 0.25, 30, "the hog to be seen again")
        assert live_lease(address, "profile") is None  # ready, but held back by the hog
        hog.kill()
        hog.wait()
        stopped = time.time()
        assert wait_terminal(address, third, 300).state == "done"
        profiles = [x for x in timeline(address) if x["job_id"] == third
                    and x["stage"] == "profile"]
        assert profiles and profiles[0]["granted_at"] >= stopped
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
        for runner in runners:
            runner.stop()
        daemon.stop()
