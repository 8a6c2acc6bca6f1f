"""Exact commands for hand-written event sequences, per policy."""

from __future__ import annotations

import pytest
from sched_helpers import (
    PROFILE_RESULT,
    cuda_runner,
    failed,
    feed,
    finished,
    llvm_runner,
    make_state,
    start_cmd,
    starts,
    submit,
)

from scheduler.core import (
    Command,
    HeartbeatReceived,
    HeartbeatsReceived,
    JobCancelled,
    JobRejected,
    JobStateChanged,
    JobSubmitted,
    JobWaiting,
    LeaseExpired,
    MoveJob,
    PauseLease,
    ResultRejected,
    ResumeLease,
    RevokeLease,
    RunnerLost,
    SchedulerState,
    StageFinished,
    StartStage,
    Tick,
)
from scheduler.core.demands import Exclusivity
from scheduler.sim import mock_spec
from simpletvm.spec import SpecError

HOST = Exclusivity.HOST
ALL8 = tuple(range(8))
ALL4 = (0, 1, 2, 3)


def changed(job: str, old: str, new: str, reason: str) -> JobStateChanged:
    return JobStateChanged(job, old, new, reason)


def submitted_and_started(job: str) -> list[JobStateChanged]:
    return [changed(job, "", "queued", "submitted"),
            changed(job, "queued", "running", "first stage started")]


def test_one_job_lifecycle_interleaved() -> None:
    s = make_state()
    assert feed(s, llvm_runner(), 0.0) == []
    out = feed(s, submit("j1", trials=32), 0.0)
    extract = start_cmd(1, "r1", "h1", "j1", 1, "extract", 0, (0,), 1024, 0.0)
    assert out == [*submitted_and_started("j1"), extract]
    # search: the only job on the host takes up to search's max_cores (8)
    out = feed(s, finished(extract), 1.0)
    search = start_cmd(2, "r1", "h1", "j1", 2, "search", 0, ALL8, 2048, 1.0)
    assert out == [search]
    out = feed(s, finished(search), 2.0)
    build = start_cmd(3, "r1", "h1", "j1", 3, "build", 0, ALL8, 2048, 2.0)
    assert out == [build]
    # profile of an llvm job owns the whole host by default
    out = feed(s, finished(build), 3.0)
    profile = start_cmd(4, "r1", "h1", "j1", 4, "profile", 0, ALL8, 1024, 3.0, exclusive=HOST)
    assert out == [profile]
    out = feed(s, finished(profile, PROFILE_RESULT), 4.0)
    learn = start_cmd(5, "r1", "h1", "j1", 5, "learn", 0, (0,), 1024, 4.0)
    assert out == [learn]
    # 32 of 32 trials: finishing, compile (single-threaded) on one core
    out = feed(s, finished(learn), 5.0)
    compile_ = start_cmd(6, "r1", "h1", "j1", 6, "compile", 0, (0,), 4096, 5.0)
    assert out == [changed("j1", "running", "finishing", "budget or goal reached"), compile_]
    # the final benchmark is a profile: it owns the host like any other
    out = feed(s, finished(compile_, {"compile_s": 1.0}), 6.0)
    final = start_cmd(7, "r1", "h1", "j1", 7, "profile", 0, ALL8, 1024, 6.0, exclusive=HOST)
    assert out == [final]
    out = feed(s, finished(final, {"final": True, "trials": 0, "tuned_us": 90.0}), 7.0)
    assert out == [changed("j1", "finishing", "done", "compiled")]
    job = s.jobs["j1"]
    assert (job.trials_done, job.best_latency_us, job.finished_at) == (32, 100.0, 7.0)
    assert s.leases == {} and s.hosts["h1"].free_cores == set(ALL8)


def test_two_jobs_share_a_host_and_profiles_run_alone() -> None:
    s = make_state()
    feed(s, llvm_runner(cores=4), 0.0)
    out = feed(s, submit("j1", trials=32), 0.0)
    e1 = start_cmd(1, "r1", "h1", "j1", 1, "extract", 0, (0,), 1024, 0.0)
    assert out == [*submitted_and_started("j1"), e1]
    out = feed(s, submit("j2", trials=32), 0.0)
    e2 = start_cmd(2, "r1", "h1", "j2", 1, "extract", 0, (1,), 1024, 0.0)
    assert out == [*submitted_and_started("j2"), e2]
    # two jobs on 4 cores: a search starts with at least 2 (an equal share), here 3 are free
    out = feed(s, finished(e1), 1.0)
    s1 = start_cmd(3, "r1", "h1", "j1", 2, "search", 0, (0, 2, 3), 2048, 1.0)
    assert out == [s1]
    # only core 1 is free: j2's search waits rather than start on a sliver
    assert feed(s, finished(e2), 2.0) == []
    # j2 waited longer than j1's new build: it goes first and takes all 4 cores
    out = feed(s, finished(s1), 3.0)
    s2 = start_cmd(4, "r1", "h1", "j2", 2, "search", 0, ALL4, 2048, 3.0)
    assert out == [s2]
    out = feed(s, finished(s2), 4.0)
    b1 = start_cmd(5, "r1", "h1", "j1", 3, "build", 0, ALL4, 2048, 4.0)
    assert out == [b1]
    # j1's profile is ready and the host is idle: it takes the host, j2's build waits
    out = feed(s, finished(b1), 5.0)
    p1 = start_cmd(6, "r1", "h1", "j1", 4, "profile", 0, ALL4, 1024, 5.0, exclusive=HOST)
    assert out == [p1]
    out = feed(s, finished(p1, PROFILE_RESULT), 6.0)
    b2 = start_cmd(7, "r1", "h1", "j2", 3, "build", 0, ALL4, 2048, 6.0)
    assert out == [b2]
    out = feed(s, finished(b2), 7.0)
    p2 = start_cmd(8, "r1", "h1", "j2", 4, "profile", 0, ALL4, 1024, 7.0, exclusive=HOST)
    assert out == [p2]
    out = feed(s, finished(p2, PROFILE_RESULT), 8.0)
    l1 = start_cmd(9, "r1", "h1", "j1", 5, "learn", 0, (0,), 1024, 8.0)
    l2 = start_cmd(10, "r1", "h1", "j2", 5, "learn", 0, (1,), 1024, 8.0)
    assert out == [l1, l2]


def test_waiting_host_profile_drains_the_host() -> None:
    s = make_state(jobs_per_host=3)
    feed(s, llvm_runner(cores=4), 0.0)
    e1 = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    s1 = starts(feed(s, finished(e1), 0.5))[0]
    b1 = starts(feed(s, finished(s1), 1.0))[0]
    p1 = starts(feed(s, finished(b1), 2.0))[0]
    l1 = starts(feed(s, finished(p1, PROFILE_RESULT), 3.0))[0]
    assert (l1.kind, l1.lease.core_ids) == ("learn", (0,))
    # j2 arrives while j1 learns; its extract runs beside the learn
    e2 = starts(feed(s, submit("j2", trials=64), 3.0))[0]
    assert e2.lease.core_ids == (1,)
    out = feed(s, finished(e2), 3.1)  # j2's search: cores 1-3 (share floor 4 // 2 = 2)
    s2 = starts(out)[0]
    assert (s2.kind, s2.lease.core_ids) == ("search", (1, 2, 3))
    out = feed(s, finished(l1), 3.2)  # j1: finishing; compile (one core) beside j2's search
    c1 = starts(out)[0]
    assert out == [changed("j1", "running", "finishing", "budget or goal reached"), c1]
    assert (c1.kind, c1.lease.core_ids) == ("compile", (0,))
    out = feed(s, StageFinished(c1.lease.lease_id, c1.lease.epoch, "j1", c1.stage_id), 3.5)
    [f1] = starts(out)  # j1's final benchmark owns the host: j2's search is paused under it
    assert (f1.kind, f1.lease.core_ids, f1.lease.exclusive) == ("profile", ALL4, HOST)
    assert [c.lease_id for c in out if isinstance(c, PauseLease)] == [s2.lease.lease_id]
    out = feed(s, finished(f1, {"final": True, "trials": 0}), 4.0)
    assert changed("j1", "finishing", "done", "compiled") in out
    assert [c.lease_id for c in out if isinstance(c, ResumeLease)] == [s2.lease.lease_id]
    b2 = starts(feed(s, finished(s2), 4.5))[0]
    assert (b2.kind, b2.lease.core_ids) == ("build", ALL4)
    # j3 arrives while j2 builds; j2's profile becomes ready -> j3's extract is held back
    out = feed(s, submit("j3", trials=32), 5.5)
    assert starts(out) == []  # no free core
    out = feed(s, finished(b2), 6.0)
    p2 = start_cmd(11, "r1", "h1", "j2", 4, "profile", 0, ALL4, 1024, 6.0, exclusive=HOST)
    assert out == [p2]  # the profile goes first and alone; j3 still waits
    out = feed(s, finished(p2, PROFILE_RESULT), 7.0)
    assert [(c.job_id, c.kind) for c in starts(out)] == [("j3", "extract"), ("j2", "learn")]


def test_host_profile_waits_for_running_lease_and_blocks_newcomers() -> None:
    s = make_state(jobs_per_host=3, pause_for_profile=False)
    feed(s, llvm_runner(cores=4), 0.0)
    e1 = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    e2 = starts(feed(s, submit("j2", trials=32), 0.0))[0]
    s1 = starts(feed(s, finished(e1), 1.0))[0]  # cores 0, 2, 3
    assert s1.lease.core_ids == (0, 2, 3)
    b1 = starts(feed(s, finished(s1), 2.0))[0]  # j2's extract still holds core 1
    assert b1.lease.core_ids == (0, 2, 3)
    # j1's build ends; its profile needs the host but j2's extract runs: drain
    assert feed(s, finished(b1), 3.0) == []
    assert feed(s, submit("j3", trials=32), 3.5) == [changed("j3", "", "queued", "submitted")]
    # j2's extract ends: the host is empty, j1's profile takes it; nobody else starts
    out = feed(s, finished(e2), 4.0)
    assert out == [start_cmd(5, "r1", "h1", "j1", 4, "profile", 0, ALL4, 1024, 4.0,
                             exclusive=HOST)]


def _pause_setup() -> tuple[SchedulerState, StartStage, StartStage, list[Command]]:
    """Two jobs on a 4-core host with one-core searches: j1's build ends while j2's search
    runs. Returns (state, j1's profile, j2's search, that command batch)."""
    s = make_state(demand_overrides={"llvm": {"search": {"max_cores": 1}}})
    feed(s, llvm_runner(cores=4), 0.0)
    e1 = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    e2 = starts(feed(s, submit("j2", trials=32), 0.0))[0]
    s1 = starts(feed(s, finished(e1), 1.0))[0]
    s2 = starts(feed(s, finished(e2), 2.0))[0]
    assert (s2.kind, s2.lease.core_ids) == ("search", (1,))
    b1 = starts(feed(s, finished(s1), 3.0))[0]
    assert (b1.kind, b1.lease.core_ids) == ("build", (0, 2, 3))
    out = feed(s, finished(b1), 4.0)
    return s, starts(out)[0], s2, out


def test_host_profile_pauses_running_cpu_stages_and_resumes_them_after() -> None:
    s, start, s2, out = _pause_setup()
    now = s.now
    # the other job's stage is paused first, then the profile takes every core at once
    assert out[0] == PauseLease(s2.lease.lease_id, s2.lease.epoch, "r1",
                                f"host-exclusive profile of {start.job_id}")
    assert out[-1] is start
    assert (start.kind, start.lease.core_ids, start.lease.exclusive) == ("profile", ALL4, HOST)
    assert s.leases[s2.lease.lease_id].paused
    ran = s.leases[s2.lease.lease_id].running_s(now)
    # nothing else starts on the host while the profile runs
    assert feed(s, submit("j3", trials=32), now + 0.5) == [
        changed("j3", "", "queued", "submitted")]
    out = feed(s, finished(start, PROFILE_RESULT), now + 2.0)
    assert out[0] == ResumeLease(s2.lease.lease_id, s2.lease.epoch, "r1")
    assert not s.leases[s2.lease.lease_id].paused
    # the paused 2 s are not counted as run time
    assert s.leases[s2.lease.lease_id].running_s(now + 3.0) == pytest.approx(ran + 1.0)


def test_a_result_that_crosses_the_pause_is_accepted_and_waits_for_the_host() -> None:
    s, profile, s2, _ = _pause_setup()
    now = s.now
    # the paused stage's result was already on its way: its lease is live, so it counts; the
    # job's next stage waits until the profile ends
    assert starts(feed(s, finished(s2), now + 0.1)) == []
    out = feed(s, finished(profile, PROFILE_RESULT), now + 1.0)
    assert not any(isinstance(c, (PauseLease, ResumeLease)) for c in out)
    assert ("j2", "build") in {(c.job_id, c.kind) for c in starts(out)}


def test_back_to_back_profiles_keep_the_stage_paused_without_a_resume() -> None:
    one_core = {"max_cores": 1}
    s = make_state(jobs_per_host=3,
                   demand_overrides={"llvm": {"search": one_core, "build": one_core}})
    feed(s, llvm_runner(cores=4), 0.0)
    e = {j: starts(feed(s, submit(j, trials=32), 0.0))[0] for j in ("j1", "j2", "j3")}
    srch = {j: starts(feed(s, finished(e[j]), 1.0 + i))[0] for i, j in enumerate(e)}
    (b1,) = starts(feed(s, finished(srch["j1"]), 4.0))
    (b2,) = starts(feed(s, finished(srch["j2"]), 4.5))
    out = feed(s, finished(b1), 5.0)  # j1's profile pauses j3's search and j2's build
    p1 = starts(out)[0]
    assert [c.lease_id for c in out if isinstance(c, PauseLease)] == [
        srch["j3"].lease.lease_id, b2.lease.lease_id]
    assert feed(s, finished(b2), 5.1) == []  # j2's build result crossed the pause
    # j1's profile ends with j2's ready: j2's profile takes the host, j3 stays stopped
    out = feed(s, finished(p1, PROFILE_RESULT), 6.0)
    assert [(c.job_id, c.kind) for c in out] == [("j2", "profile")]
    assert s.leases[srch["j3"].lease.lease_id].paused


def test_revoking_a_paused_lease_frees_nothing_twice() -> None:
    s, _, s2, out = _pause_setup()
    out = feed(s, JobCancelled("j2"), 3.5)
    assert RevokeLease(s2.lease.lease_id, "r1", "job cancelled") in out
    assert s2.lease.lease_id not in s.leases  # validate_state in feed() checks the counts


def test_pausing_off_or_a_cores_profile_never_pauses() -> None:
    for config in ({"pause_for_profile": False}, {"cpu_profile_exclusivity": "cores"}):
        s = make_state(jobs_per_host=3, **config)
        feed(s, llvm_runner(cores=4), 0.0)
        out = [c for j in ("j1", "j2", "j3") for c in feed(s, submit(j, trials=32), 0.0)]
        for t in range(1, 40):
            runs = [c for c in out if isinstance(c, StartStage)]
            out = [c for r in runs for c in feed(s, finished(
                r, PROFILE_RESULT if r.kind == "profile" else None), float(t))]
            assert not any(isinstance(c, (PauseLease, ResumeLease)) for c in out)


def test_cuda_profile_owns_its_gpu_and_one_core_beside_cpu_stages() -> None:
    s = make_state()
    feed(s, cuda_runner(cores=8, gpus=1), 0.0)
    runs = {}
    for job in ("j1", "j2"):
        runs[job] = starts(feed(s, submit(job, target_kind="cuda", trials=32), 0.0))[0]
    s1 = starts(feed(s, finished(runs["j1"]), 1.0))[0]
    assert s1.lease.core_ids == (0, 2, 3, 4, 5, 6, 7)  # core 1: j2's extract
    b1 = starts(feed(s, finished(s1), 2.0))[0]
    out = feed(s, finished(b1), 3.0)
    p1 = start_cmd(5, "g1", "gh1", "j1", 4, "profile", 0, (0,), 1024, 3.0, gpus=(0,),
                   exclusive=Exclusivity.GPU)
    assert out == [p1]
    # j2's search runs beside the GPU profile on the cores it leaves
    s2 = starts(feed(s, finished(runs["j2"]), 3.5))[0]
    assert (s2.kind, s2.lease.core_ids, s2.lease.gpu_ids) == ("search", (1, 2, 3, 4, 5, 6, 7),
                                                               ())


def test_foreign_load_defers_profiles() -> None:
    s = make_state()
    feed(s, llvm_runner(cores=2), 0.0)
    e = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    b = starts(feed(s, finished(sr), 2.0))[0]
    assert feed(s, HeartbeatReceived("r1", foreign_load=0.5), 2.5) == []
    assert feed(s, finished(b), 3.0) == []  # profile deferred: foreign load 0.5 > 0.25
    assert feed(s, HeartbeatReceived("r1", foreign_load=0.3), 4.0) == []
    out = feed(s, HeartbeatReceived("r1", foreign_load=0.1), 5.0)
    assert out == [start_cmd(4, "r1", "h1", "j1", 4, "profile", 0, (0, 1), 1024, 5.0,
                             exclusive=HOST)]


def test_batched_heartbeats_are_each_runners_heartbeat_in_turn() -> None:
    s = make_state(lease_ttl_s=10.0)
    feed(s, llvm_runner(cores=2), 0.0)
    feed(s, llvm_runner("r2", "h2", cores=2), 0.0)
    e = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    b = starts(feed(s, finished(sr), 2.0))[0]
    loaded = HeartbeatsReceived(("r1", "r2", "ghost"), (0.5, 0.9, 0.0), ((), (0.5,), ()))
    assert feed(s, loaded, 2.5) == []  # an unknown runner is skipped
    assert (s.hosts["h1"].foreign_load, s.hosts["h2"].gpu_util) == (0.5, (0.5,))
    assert s.leases[b.lease.lease_id].expiry == 12.5  # the build's lease, extended
    assert feed(s, finished(b), 3.0) == []  # profile deferred: foreign load 0.5 > 0.25
    still = HeartbeatsReceived(("r1",), (0.3,), ((),))
    assert feed(s, still, 4.0) == []  # above the threshold still: nothing to place
    out = feed(s, HeartbeatsReceived(("r2", "r1"), (0.0, 0.1), ((), ())), 5.0)
    assert out == [start_cmd(4, "r1", "h1", "j1", 4, "profile", 0, (0, 1), 1024, 5.0,
                             expiry=15.0, exclusive=HOST)]
    with pytest.raises(ValueError):  # the log never holds such an event; refuse, don't guess
        HeartbeatsReceived(("r1",), (), ())


def test_results_under_dead_leases_or_stale_epochs_are_rejected() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1"), 0.0))[0]
    lease = e.lease
    stale = StageFinished(lease.lease_id, lease.epoch + 7, "j1", e.stage_id, {})
    assert feed(s, stale, 1.0) == [ResultRejected(lease.lease_id, lease.epoch + 7, "j1",
                                                  e.stage_id, "stale epoch 8 (lease has 1)")]
    wrong = StageFinished(lease.lease_id, lease.epoch, "j1", "j1/99", {})
    assert feed(s, wrong, 1.0) == [ResultRejected(lease.lease_id, 1, "j1", "j1/99",
                                                  "lease is for j1 j1/1")]
    search = starts(feed(s, finished(e), 2.0))[0]
    assert feed(s, finished(e), 3.0) == [ResultRejected(lease.lease_id, 1, "j1", e.stage_id,
                                                        "unknown or dead lease")]
    assert feed(s, failed(e), 3.0)[0].reason == "unknown or dead lease"
    assert s.jobs["j1"].stage.stage_id == search.stage_id


def test_lease_expires_without_heartbeat_and_heartbeat_extends_it() -> None:
    s = make_state(lease_ttl_s=10.0)
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1"), 0.0))[0]
    assert e.lease.expiry == 10.0
    assert feed(s, HeartbeatReceived("r1"), 5.0) == []
    assert feed(s, Tick(), 14.0) == []  # extended to 15
    assert s.leases[e.lease.lease_id].expiry == 15.0
    assert feed(s, Tick(), 15.0) == []  # live through its expiry instant
    out = feed(s, Tick(), 15.5)
    retry = start_cmd(2, "r1", "h1", "j1", 2, "extract", 0, (0,), 1024, 15.5, expiry=25.5)
    assert out == [RevokeLease(e.lease.lease_id, "r1", "lease expired", expired=True), retry]
    # the late result of the expired attempt is rejected; the retry's is accepted
    assert isinstance(feed(s, finished(e), 16.0)[0], ResultRejected)
    assert starts(feed(s, finished(retry), 17.0))[0].kind == "search"


def test_lease_expired_event() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1"), 0.0))[0]
    out = feed(s, LeaseExpired(e.lease.lease_id, cause="watchdog"), 1.0)
    assert out == [RevokeLease("lease-1", "r1", "lease expired", "watchdog", expired=True),
                   start_cmd(2, "r1", "h1", "j1", 2, "extract", 0, (0,), 1024, 1.0,
                             cause="watchdog")]
    assert feed(s, LeaseExpired("lease-1"), 2.0) == []


def test_runner_lost_requeues_and_moves_the_job() -> None:
    s = make_state()
    feed(s, llvm_runner("r1", "h1"), 0.0)
    e = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    # no other host yet: the stage is revoked and the job waits for one
    out = feed(s, RunnerLost("r1", cause="conn-closed"), 2.0)
    assert out == [RevokeLease(sr.lease.lease_id, "r1", "runner lost", "conn-closed"),
                   JobWaiting("j1", "no runner serves llvm targets", "conn-closed")]
    assert s.jobs["j1"].host_id is None
    out = feed(s, llvm_runner("r2", "h2"), 3.0)
    assert out == [JobWaiting("j1", ""), MoveJob("j1", "h1", "h2"),
                   start_cmd(3, "r2", "h2", "j1", 3, "search", 0, ALL8, 2048, 3.0)]


def test_job_moved_mid_round_restarts_the_round_at_search() -> None:
    s = make_state()
    feed(s, llvm_runner("r1", "h1"), 0.0)
    e = starts(feed(s, submit("j1", trials=64), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    bd = starts(feed(s, finished(sr, {"candidates": 32}), 2.0))[0]
    assert bd.kind == "build"
    feed(s, RunnerLost("r1"), 3.0)
    out = starts(feed(s, llvm_runner("r2", "h2"), 4.0))
    # the round's candidates stayed on h1: the new host searches round 0 again
    assert [(c.kind, c.round, c.runner_id) for c in out] == [("search", 0, "r2")]


def test_job_moved_during_its_final_benchmark_compiles_again() -> None:
    s = make_state()
    feed(s, llvm_runner("r1", "h1"), 0.0)
    st = starts(feed(s, submit("j1", trials=0), 0.0))[0]  # extract, then compile
    st = starts(feed(s, finished(st), 1.0))[0]
    final = starts(feed(s, finished(st), 2.0))[0]
    assert (final.kind, s.jobs["j1"].state) == ("profile", "finishing")
    feed(s, RunnerLost("r1"), 3.0)
    out = starts(feed(s, llvm_runner("r2", "h2"), 4.0))
    # the compiled models stayed on h1: the new host compiles again, then benchmarks
    assert [(c.kind, c.runner_id) for c in out] == [("compile", "r2")]
    out = starts(feed(s, finished(out[0]), 5.0))
    assert [c.kind for c in out] == ["profile"]
    feed(s, finished(out[0], {"final": True, "trials": 0}), 6.0)
    assert (s.jobs["j1"].state, s.jobs["j1"].trials_done) == ("done", 0)
    s.validate_state()


def test_runner_sharing_a_host_offers_a_subset_and_resources_count_once() -> None:
    s = make_state()
    feed(s, llvm_runner("ra", "h1", cores=4), 0.0)  # cores 0-3
    feed(s, __import__("scheduler.core", fromlist=["RunnerRegistered"]).RunnerRegistered(
        "rb", "h1", (2, 3, 4, 5), (), 65536, ("llvm",)), 0.0)
    host = s.hosts["h1"]
    assert host.cores == frozenset(range(6)) and host.memory_mb == 65536
    e = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    assert (sr.runner_id, sr.lease.core_ids) == ("ra", ALL4)  # within what ra offers
    out = feed(s, RunnerLost("ra"), 2.0)
    retry = starts(out)[0]
    assert (retry.runner_id, retry.lease.core_ids) == ("rb", (2, 3, 4, 5))
    assert s.jobs["j1"].host_id == "h1"


def test_cancel_revokes_the_running_lease() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1"), 0.0))[0]
    out = feed(s, JobCancelled("j1", cause="user"), 1.0)
    assert out == [RevokeLease("lease-1", "r1", "job cancelled", "user"),
                   JobStateChanged("j1", "running", "cancelled", "cancelled", "user")]
    assert feed(s, finished(e), 2.0)[0].reason == "unknown or dead lease"
    assert feed(s, JobCancelled("j1"), 3.0) == []
    assert feed(s, JobCancelled("nope"), 3.0) == []


def test_cancel_a_queued_job() -> None:
    s = make_state(jobs_per_host=1)
    feed(s, llvm_runner(cores=2), 0.0)
    feed(s, submit("j0"), 0.0)  # the host's one job slot is taken
    assert feed(s, submit("j1"), 0.0) == [changed("j1", "", "queued", "submitted")]
    assert len(s.queue) == 1
    assert feed(s, JobCancelled("j1"), 1.0) == [changed("j1", "queued", "cancelled",
                                                        "cancelled")]
    assert len(s.queue) == 0


def test_a_job_no_runner_can_host_waits_apart_and_says_why() -> None:
    """num-cores 64 on 2-core runners: never timed on fewer cores than its target names; it
    waits out of the queue (not blocking the jobs behind it) until a runner that big comes."""
    s = make_state(jobs_per_host=4)
    assert feed(s, submit("j0"), 0.0)[-1] == JobWaiting("j0", "no runner serves llvm targets")
    feed(s, llvm_runner("r1", "h1", cores=2), 0.0)  # j0 (no num-cores) is placed
    big = JobSubmitted(mock_spec("big", "llvm", trials=32).with_(
        target={"kind": "llvm", "num-cores": 64}))
    why = "no runner offers 64 cores (the target's num-cores); the largest llvm runner offers 2"
    assert feed(s, big, 1.0) == [changed("big", "", "queued", "submitted"),
                                 JobWaiting("big", why)]
    assert "big" in s.waiting.jobs and "big" not in s.queue
    out = feed(s, submit("j2"), 2.0)  # the jobs behind it are placed
    assert [c.job_id for c in starts(out)] == ["j2"]
    s.validate_state()
    restored = SchedulerState.restore(s.snapshot())
    assert restored.waiting.jobs == {"big": why}
    restored.validate_state()
    # a bigger runner elsewhere: the job goes there, and only there
    out = feed(s, llvm_runner("r9", "h9", cores=64), 3.0)
    assert out[0] == JobWaiting("big", "")
    assert [(c.job_id, c.runner_id, c.kind) for c in starts(out)] == [("big", "r9", "extract")]
    assert s.jobs["big"].host_id == "h9"
    # losing it: the job waits again, and its lease is revoked
    out = feed(s, RunnerLost("r9"), 4.0)
    assert JobWaiting("big", why) in out and any(isinstance(c, RevokeLease) for c in out)
    assert feed(s, JobCancelled("big"), 5.0)[0] == changed("big", "running", "cancelled",
                                                            "cancelled")
    assert "big" not in s.waiting.jobs
    s.validate_state()


def test_a_timed_stage_never_runs_on_a_runner_smaller_than_its_target() -> None:
    s = make_state(jobs_per_host=2)
    feed(s, llvm_runner("small", "h1", cores=2), 0.0)
    feed(s, llvm_runner("large", "h1", cores=8), 0.0)
    spec = mock_spec("j1", "llvm", trials=32).with_(target={"kind": "llvm", "num-cores": 8})
    start = starts(feed(s, JobSubmitted(spec), 0.0))[0]
    for _ in range(3):  # search, build, then the profile
        start = starts(feed(s, finished(start), 1.0))[0]
    assert start.kind == "profile" and start.runner_id == "large"


def test_failed_stage_is_retried_then_fails_the_job() -> None:
    s = make_state(max_stage_retries=1)
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1"), 0.0))[0]
    out = feed(s, failed(e, "segfault"), 1.0)
    retry = start_cmd(2, "r1", "h1", "j1", 2, "extract", 0, (0,), 1024, 1.0, attempt=1)
    assert out == [retry]
    out = feed(s, failed(retry, "segfault"), 2.0)
    assert out == [changed("j1", "running", "failed", "extract failed 2 times: segfault")]
    assert s.leases == {}


def test_search_exhausted_and_latency_goal_end_tuning() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    e = starts(feed(s, submit("j1", trials=1000), 0.0))[0]
    sr = starts(feed(s, finished(e), 1.0))[0]
    out = feed(s, finished(sr, {"exhausted": True}), 2.0)
    assert out[0] == changed("j1", "running", "finishing", "search exhausted")
    assert starts(out)[0].kind == "compile"

    s = make_state()
    feed(s, llvm_runner(), 0.0)
    st = starts(feed(s, submit("j2", trials=1000, latency_goal_us=50.0), 0.0))[0]
    for result, now in (({}, 1), ({}, 2), ({}, 3), ({"trials": 32, "best_latency_us": 40.0}, 4)):
        st = starts(feed(s, finished(st, result), now))[0]
    out = feed(s, finished(st), 5.0)
    assert out[0] == changed("j2", "running", "finishing", "budget or goal reached")
    assert s.jobs["j2"].trials_done == 32


def test_rejected_submissions() -> None:
    s = make_state()
    feed(s, submit("j1"), 0.0)
    assert feed(s, submit("j1"), 1.0) == [JobRejected("j1", "duplicate job id")]
    assert feed(s, submit(""), 1.0) == [JobRejected("", "a submitted job needs a job id")]
    with pytest.raises(SpecError, match="unknown target kind 'tpu'"):
        submit("j2", target_kind="tpu")  # a spec that breaks a rule never reaches the core
    out = feed(s, submit("j3", demand_overrides={"search": {"cores": 3}}), 1.0)
    assert isinstance(out[0], JobRejected) and "unknown demand fields" in out[0].reason


def test_sequential_runs_one_job_at_a_time() -> None:
    s = make_state("sequential")
    feed(s, llvm_runner("r1", "h1"), 0.0)
    feed(s, llvm_runner("r2", "h2"), 0.0)
    e1 = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    assert feed(s, submit("j2", trials=32), 0.0) == [changed("j2", "", "queued", "submitted")]
    st = e1
    now = 0.0
    while True:
        now += 1.0
        out = feed(s, finished(st, PROFILE_RESULT if st.kind == "profile" else {}), now)
        nxt = starts(out)
        if st.kind == "profile" and s.jobs["j1"].state == "done":  # the final benchmark
            break
        assert [c.job_id for c in nxt] == ["j1"]  # j2 never starts meanwhile
        st = nxt[0]
    assert out == [changed("j1", "finishing", "done", "compiled"),
                   *submitted_and_started("j2")[1:],
                   start_cmd(8, "r1", "h1", "j2", 1, "extract", 0, (0,), 1024, now)]


def test_shared_oversubscribes_and_profiles_are_not_exclusive() -> None:
    s = make_state("shared")
    feed(s, llvm_runner(cores=8), 0.0)
    e = {j: starts(feed(s, submit(j, trials=32), 0.0))[0] for j in ("j1", "j2")}
    assert [e["j1"].lease.core_ids, e["j2"].lease.core_ids] == [(0,), (1,)]
    s1 = starts(feed(s, finished(e["j1"]), 1.0))[0]
    assert s1.lease.core_ids == ALL8  # including core 1, still held by j2's extract
    s2 = starts(feed(s, finished(e["j2"]), 1.0))[0]
    assert s2.lease.core_ids == ALL8
    assert s.hosts["h1"].core_use == dict.fromkeys(ALL8, 2)
    b1 = starts(feed(s, finished(s1), 2.0))[0]
    p1 = starts(feed(s, finished(b1), 3.0))[0]
    assert (p1.kind, p1.lease.exclusive, p1.lease.core_ids) == ("profile", Exclusivity.NONE,
                                                                 ALL4)


@pytest.mark.parametrize("policy", ["interleaved", "predictive"])
def test_backfill_while_a_host_profile_waits(policy: str) -> None:
    """Stages finish exactly at their prior expected times, so estimates stay at the priors
    (llvm: extract 0.2, search 12, build 7.5 core-seconds) except where noted. Widening is
    off: here it would hold j1's search for the other extracts' cores."""
    options = {"widen": False} if policy == "predictive" else {}
    s = make_state(policy, jobs_per_host=4, pause_for_profile=False, policy_options=options)
    feed(s, llvm_runner(cores=4), 0.0)
    e = [starts(feed(s, submit(j, trials=32), 0.0))[0] for j in ("j1", "j2", "j3")]
    assert [x.lease.core_ids for x in e] == [(0,), (1,), (2,)]
    # three jobs share 4 cores: searches start with whatever core (floor 4 // 3 = 1) is free
    s1, s2, s3 = (starts(feed(s, finished(x), 0.2))[0] for x in e)
    assert [x.lease.core_ids for x in (s1, s2, s3)] == [(0, 3), (1,), (2,)]
    b1 = starts(feed(s, finished(s1), 6.2))[0]  # 12 core-s on 2 cores
    assert (b1.kind, b1.lease.core_ids) == ("build", (0, 3))
    # j1's profile needs the whole host: drain while j2's and j3's searches run
    assert feed(s, finished(b1), 9.95) == []  # 7.5 core-s on 2 cores
    # j3's search ends early (9.8 core-s): the search estimate becomes 11.34, so j2's search
    # (1 core, started at 0.2) is expected to end at 11.54. j3's build on the 3 free cores
    # would take 7.5 / 3 = 2.5 s, until 12.5: it would delay the profile, so it waits.
    assert feed(s, finished(s3), 10.0) == []
    # j4's extract (0.2 s expected) would end at 10.4, before 11.54: predictive backfills it
    out = feed(s, submit("j4", trials=32), 10.2)
    if policy == "predictive":
        assert out == [*submitted_and_started("j4"),
                       start_cmd(8, "r1", "h1", "j4", 1, "extract", 0, (0,), 1024, 10.2)]
    else:
        assert out == [changed("j4", "", "queued", "submitted")]
    # when j2's search ends (and j4's extract, if it ran), j1's profile takes the host
    if policy == "predictive":
        assert feed(s, finished(starts(out)[0]), 10.4) == []
    out = feed(s, finished(s2), 11.54)
    assert starts(out)[0].kind == "profile" and len(starts(out)) == 1



def _long_job_ready(widen: bool, queued: bool, learnt: float = 30.6) -> tuple[
        SchedulerState, StartStage, list[Command]]:
    """j1 (4 rounds, its search measured at 40 core-seconds) and j2 (1 round) on 2 cores.
    Returns the state, j2's extract and what the core did when j1's second search became
    ready with one core free."""
    s = make_state("predictive", jobs_per_host=2, policy_options={"widen": widen})
    feed(s, llvm_runner(cores=2), 0.0)
    x1 = starts(feed(s, submit("j1", trials=64, batch_size=16), 0.0))[0]
    s1 = starts(feed(s, finished(x1), 0.2))[0]
    assert s1.lease.core_ids == (0, 1)  # alone: search takes both cores
    b1 = starts(feed(s, finished(s1, {"candidates": 16}), 20.2))[0]  # 40 core-seconds
    assert starts(feed(s, submit("j2", trials=16, batch_size=16), 21.0)) == []  # cores busy
    if queued:  # a third job waits for room on the host
        assert starts(feed(s, submit("j3", trials=16, batch_size=16), 21.0)) == []
    p1 = starts(feed(s, finished(b1), 24.95))[0]  # 7.5 core-seconds on 2 cores
    assert (p1.job_id, p1.kind) == ("j1", "profile")
    learn, x2 = starts(feed(s, finished(p1, {"trials": 16, "best_latency_us": 9.0}), 30.55))
    assert [(c.job_id, c.kind, c.lease.core_ids) for c in (learn, x2)] == [
        ("j1", "learn", (0,)), ("j2", "extract", (1,))]
    return s, x2, feed(s, finished(learn), learnt)


def test_longest_job_waits_for_the_cores_its_search_can_use() -> None:
    """j1's search on the one free core would end at 30.6 + 40 = 70.6; waiting for j2's
    extract (expected to end at 30.75) and then taking both cores ends it at 50.75."""
    s, x2, out = _long_job_ready(widen=True, queued=False)
    assert starts(out) == []
    out = feed(s, finished(x2), 30.75)
    assert [(c.job_id, c.kind, c.lease.core_ids) for c in starts(out)] == [
        ("j1", "search", (0, 1))]  # j2's search waits for a core


def test_a_blocker_a_little_late_is_still_waited_for() -> None:
    """j2's extract (0.2 s expected, from 30.55) has outrun its estimate at 30.8, but not by
    much: it is expected to end within a quarter of its estimate, so j1 still waits."""
    s, x2, out = _long_job_ready(widen=True, queued=False, learnt=30.8)
    assert starts(out) == []
    out = feed(s, finished(x2), 30.85)
    assert [(c.job_id, c.kind, c.lease.core_ids) for c in starts(out)] == [
        ("j1", "search", (0, 1))]


@pytest.mark.parametrize(("widen", "queued", "learnt"), [
    (False, False, 30.6), (True, True, 30.6), (True, False, 31.0)])
def test_widening_off_jobs_queued_or_blocker_overdue_starts_the_search_narrow(
        widen: bool, queued: bool, learnt: float) -> None:
    """Without widening, while jobs wait for room (throughput, not one job's chain, sets the
    makespan), or once j2's extract has run twice its estimate (0.45 s of 0.2 by 31.0: nothing
    says when it will end), the search starts at once on the free core."""
    _, _, out = _long_job_ready(widen, queued, learnt)
    assert [(c.job_id, c.kind, c.lease.core_ids) for c in starts(out)] == [
        ("j1", "search", (0,))]
