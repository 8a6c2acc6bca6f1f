"""The daemon's read model without gRPC or SQLite: the real core decides, the projection keeps
the job and lease records that clients read."""

from __future__ import annotations

from scheduler.core import (
    JobCancelled,
    JobSubmitted,
    RunnerLost,
    RunnerRegistered,
    SchedulerConfig,
    SchedulerState,
    StageFailed,
    StageFinished,
    StartStage,
    Tick,
)
from scheduler.service.projection import Projection
from scheduler.service.records import JobRecord
from simpletvm.spec import JobSpec


class Loop:
    """The daemon's `_handle` without its store and runners: the core, then the projection."""

    def __init__(self) -> None:
        self.core = SchedulerState(SchedulerConfig(lease_ttl_s=10.0))
        self.projection = Projection()
        self.now = 0.0

    def handle(self, event: object, dt: float = 1.0) -> StartStage | None:
        """Handle `event`; the stage it started, if any."""
        self.now += dt
        commands = self.core.handle(event, self.now)
        self.changes = self.projection.apply(self.core, event, commands, self.now)
        return next((c for c in commands if isinstance(c, StartStage)), None)

    def submit(self, job_id: str, **fields: object) -> StartStage | None:
        spec = JobSpec(job_id=job_id, model="zoo:mlp", target={"kind": "llvm", "num-cores": 2},
                       trials=8, batch_size=8, **fields)
        self.projection.jobs[job_id] = JobRecord(spec, submitted_at=self.now)
        return self.handle(JobSubmitted(spec))

    def finish(self, start: StartStage, result: dict | None = None,
               epoch_shift: int = 0) -> StartStage | None:
        lease = start.lease
        return self.handle(StageFinished(lease.lease_id, lease.epoch + epoch_shift,
                                         start.job_id, start.stage_id, result or {}))


RESULTS = {"profile": {"trials": 8, "best_latency_us": 90.0},
           "learn": {"trials_total": 8, "estimated_latency_us": 85.0, "done": True},
           "compile": {"compile_s": 1.0}}
FINAL = {"final": True, "trials": 0, "tuned_us": 80.0, "untuned_us": 300.0}  # the benchmark


def test_a_job_record_follows_its_stages_to_done() -> None:
    loop = Loop()
    loop.handle(RunnerRegistered("r1", "box", (0, 1), (), 8192, ("llvm",)))
    start = loop.submit("j1")
    record = loop.projection.jobs["j1"]
    assert (record.state, record.stage, record.host_id) == ("running", "extract", "box")
    assert record.eta_s > 0  # the core's estimate from its priors, before any stage ran
    kinds = []
    while start is not None:
        kinds.append(start.kind)
        lease = loop.projection.leases[start.lease.lease_id]
        assert (lease.stage, lease.outcome, lease.cores) == (start.kind, "live",
                                                            list(start.lease.core_ids))
        start = loop.finish(start, FINAL if "compile" in kinds else RESULTS.get(start.kind))
        assert lease.outcome == "finished" and lease.ended_at == loop.now
    assert kinds == ["extract", "search", "build", "profile", "learn", "compile", "profile"]
    assert (record.state, record.stage, record.trials_done, record.eta_s) == ("done", "", 8, 0)
    assert (record.best_latency_us, record.tuned_us, record.untuned_us) == (85.0, 80.0, 300.0)
    assert record.finished_at == loop.now and loop.changes.jobs == {"j1"}
    assert loop.projection.leases[lease.lease_id].exclusivity == "host"  # the final benchmark
    profile = next(x for x in loop.projection.leases.values() if x.stage == "profile")
    assert profile.exclusivity == "host" and profile.exclusive


def test_a_late_result_changes_no_record() -> None:
    loop = Loop()
    loop.handle(RunnerRegistered("r1", "box", (0, 1), (), 8192, ("llvm",)))
    extract = loop.submit("j1")
    assert loop.finish(extract, epoch_shift=5) is None  # a stale epoch: rejected
    lease = loop.projection.leases[extract.lease.lease_id]
    assert lease.outcome == "live" and loop.changes.leases == set()
    assert loop.projection.jobs["j1"].stage == "extract"


def test_revoked_and_expired_leases_are_told_apart_by_the_core_not_by_a_reason() -> None:
    loop = Loop()
    loop.handle(RunnerRegistered("r1", "box", (0, 1), (), 8192, ("llvm",)))
    first = loop.submit("j1")
    retry = loop.handle(Tick(), dt=11.0)  # no heartbeat within the lease TTL
    expired = loop.projection.leases[first.lease.lease_id]
    assert (expired.outcome, expired.reason) == ("expired", "lease expired")
    assert retry is not None and retry.kind == "extract"
    loop.handle(RunnerLost("r1"))
    revoked = loop.projection.leases[retry.lease.lease_id]
    assert (revoked.outcome, revoked.reason) == ("revoked", "runner lost")


def test_failures_and_cancel_reach_the_job_record() -> None:
    loop = Loop()
    loop.handle(RunnerRegistered("r1", "box", (0, 1), (), 8192, ("llvm",)))
    extract = loop.submit("j1")
    lease = extract.lease
    again = loop.handle(StageFailed(lease.lease_id, lease.epoch, "j1", extract.stage_id,
                                    "OSError: disk full"))
    record = loop.projection.jobs["j1"]
    assert record.error == "OSError: disk full" and record.state == "running"
    assert loop.projection.leases[lease.lease_id].outcome == "failed"
    loop.handle(JobCancelled("j1"))
    assert (record.state, record.stage) == ("cancelled", "")
    assert loop.projection.leases[again.lease.lease_id].outcome == "revoked"


def test_pauses_and_runner_reports_are_stamped_on_the_lease() -> None:
    loop = Loop()
    loop.handle(RunnerRegistered("r1", "box", (0, 1, 2, 3), (), 8192, ("llvm",)))
    one_core = {"search": {"max_cores": 1}, "build": {"max_cores": 1}}
    search = loop.finish(loop.submit("slow", demand_overrides=one_core))  # "slow" searches
    quick = loop.submit("quick", demand_overrides=one_core)
    build = loop.finish(loop.finish(quick))  # extract -> search -> build
    profile = loop.finish(build)  # a host-exclusive profile pauses the slow search
    assert profile.kind == "profile"
    paused = loop.projection.leases[search.lease.lease_id]
    assert paused.paused_at == [loop.now] and paused.resumed_at == []
    loop.finish(profile, RESULTS["profile"])
    assert paused.resumed_at == [loop.now]
    loop.projection.child_reported({
        "lease_id": search.lease.lease_id, "started": 1.5, "finished": 9.5, "pid": 42,
        "cores": [0, 1], "paused_at": [4.0], "resumed_at": [6.0]})
    assert (paused.child_started, paused.child_pid, paused.paused_at) == (1.5, 42, [4.0])
