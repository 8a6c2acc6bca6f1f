"""Transition tables, demands, config, public API and (de)serialisation."""

from __future__ import annotations

import json

import pytest
from sched_helpers import feed, llvm_runner, make_state, start_cmd, starts, submit

import scheduler.core as core
from scheduler.core import (
    DEFAULT_DEMANDS,
    ConfigError,
    Exclusivity,
    HeartbeatReceived,
    HeartbeatsReceived,
    InvalidTransition,
    InvariantViolation,
    JobCancelled,
    JobRejected,
    JobStateChanged,
    JobSubmitted,
    LeaseExpired,
    MoveJob,
    ResultRejected,
    RevokeLease,
    RunnerLost,
    RunnerRegistered,
    SchedulerConfig,
    SnapshotError,
    StageFailed,
    StageFinished,
    StageKind,
    StageState,
    TargetKind,
    Tick,
    UnknownPolicy,
    available_policies,
    command_from_dict,
    command_to_dict,
    event_from_dict,
    event_to_dict,
    get_policy,
)
from scheduler.core.demands import StageDemand, resolve_demands
from scheduler.core.jobs import JOB_TRANSITIONS, STAGE_TRANSITIONS, Stage
from scheduler.core.leases import LEASE_TRANSITIONS, LeaseState
from scheduler.sim import mock_spec


@pytest.mark.parametrize("table", [JOB_TRANSITIONS, STAGE_TRANSITIONS, LEASE_TRANSITIONS])
def test_every_edge_has_a_comment(table) -> None:
    assert table and all(isinstance(c, str) and c for c in table.values())


def test_final_states_have_no_way_out() -> None:
    for table, final in ((JOB_TRANSITIONS, {"done", "failed", "cancelled"}),
                         (STAGE_TRANSITIONS, {"finished", "failed", "revoked"}),
                         (LEASE_TRANSITIONS, {"released", "revoked", "expired"})):
        assert not [edge for edge in table if edge[0] in final]


def test_invalid_transition_carries_history() -> None:
    stage = Stage("j/1", "j", StageKind.SEARCH, 1, 0, 0.0)
    stage.transition(StageState.RUNNING, 1.0, "leased")
    stage.transition(StageState.FINISHED, 2.0, "finished")
    with pytest.raises(InvalidTransition) as info:
        stage.transition(StageState.RUNNING, 3.0, "again")
    err = info.value
    assert (err.entity, err.entity_id, err.old, err.new) == ("stage", "j/1", "finished",
                                                              "running")
    assert [h[2] for h in err.history] == ["running", "finished"]
    assert "history" in str(err)


def test_lease_transition_is_checked() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    lease = starts(feed(s, submit("j1"), 0.0))[0].lease
    gone = lease.transition(LeaseState.RELEASED, 1.0, "done")
    assert gone.state is LeaseState.RELEASED and len(gone.history) == 2
    with pytest.raises(InvalidTransition):
        gone.transition(LeaseState.EXPIRED, 2.0, "late")


def test_default_demands_follow_the_design_table() -> None:
    llvm = resolve_demands("llvm", cpu_profile_exclusivity="host")
    assert (llvm[StageKind.EXTRACT].max_cores, llvm[StageKind.LEARN].max_cores) == (1, 1)
    assert llvm[StageKind.SEARCH].max_cores > 1 and llvm[StageKind.BUILD].max_cores > 1
    assert llvm[StageKind.PROFILE].exclusive is Exclusivity.HOST
    assert llvm[StageKind.COMPILE].gpus == 0 and llvm[StageKind.COMPILE].max_cores == 1
    cuda = resolve_demands("cuda", cpu_profile_exclusivity="host")
    assert (cuda[StageKind.PROFILE].gpus, cuda[StageKind.PROFILE].max_cores) == (1, 1)
    assert cuda[StageKind.PROFILE].exclusive is Exclusivity.GPU
    assert all(d.gpus == 0 for k, d in cuda.items() if k is not StageKind.PROFILE)
    assert len(DEFAULT_DEMANDS) == len(StageKind) * len(TargetKind)


def test_demand_overrides_and_cores_exclusivity() -> None:
    d = resolve_demands("llvm", cpu_profile_exclusivity="cores",
                        config_overrides={"llvm": {"search": {"max_cores": 16}}},
                        job_overrides={"search": {"min_cores": 2},
                                       "profile": {"min_cores": 2, "max_cores": 2}})
    assert (d[StageKind.SEARCH].min_cores, d[StageKind.SEARCH].max_cores) == (2, 16)
    assert d[StageKind.PROFILE] == StageDemand(2, 2, memory_mb=1024,
                                               exclusive=Exclusivity.CORES)
    for bad in ({"search": {"min_cores": 9}}, {"nope": {}}, {"search": {"bogus": 1}},
                {"profile": {"exclusive": "planet"}}):
        with pytest.raises(ConfigError):
            resolve_demands("llvm", cpu_profile_exclusivity="host", job_overrides=bad)
    with pytest.raises(ConfigError):
        resolve_demands("llvm", cpu_profile_exclusivity="rack")


def test_per_job_cpu_profile_exclusivity_cores() -> None:
    s = make_state()
    feed(s, llvm_runner(cores=8), 0.0)
    st = starts(feed(s, submit("j1", trials=32, cpu_profile_exclusivity="cores"), 0.0))[0]
    for now in (1.0, 2.0, 3.0):
        st = starts(feed(s, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j1",
                                               st.stage_id, {}), now))[0]
    assert st == start_cmd(4, "r1", "h1", "j1", 4, "profile", 0, (0, 1, 2, 3), 1024, 3.0,
                           exclusive=Exclusivity.CORES)
    assert s.hosts["h1"].exclusive_lease is None


@pytest.mark.parametrize("kwargs", [
    {"lease_ttl_s": 0}, {"max_stage_retries": -1}, {"foreign_load_threshold": 1.5},
    {"cpu_profile_exclusivity": "rack"}, {"jobs_per_host": 0}, {"aging_per_s": -1},
    {"estimate_alpha": 0},
])
def test_config_validation(kwargs) -> None:
    with pytest.raises(ConfigError):
        SchedulerConfig(**kwargs)


def test_config_round_trip() -> None:
    config = SchedulerConfig(policy="predictive", policy_options={"order": "srpt"},
                             demand_overrides={"cuda": {"build": {"max_cores": 4}}})
    assert SchedulerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError):
        SchedulerConfig.from_dict({"colour": "red"})


def test_policy_registry() -> None:
    assert available_policies() == ["interleaved", "predictive", "sequential", "shared"]
    assert get_policy("predictive", order="srpt").options["order"] == "srpt"
    with pytest.raises(UnknownPolicy):
        get_policy("random")
    with pytest.raises(ConfigError):
        get_policy("predictive", order="fifo")
    with pytest.raises(ConfigError, match="widen must be true or false"):
        get_policy("predictive", widen="yes")
    s = core.SchedulerState(SchedulerConfig(policy="sequential"))
    assert s.policy.name == "sequential"
    assert core.SchedulerState(policy=get_policy("shared")).policy.name == "shared"


def test_public_api() -> None:
    assert len(set(core.__all__)) == len(core.__all__)
    for name in core.__all__:
        assert getattr(core, name) is not None
    public = {n for n in dir(core) if not n.startswith("_")} - set(core.__all__)
    assert public <= {"commands", "config", "demands", "errors", "estimates", "events",
                      "fairshare", "hosting", "jobs", "leases", "pausing", "policies",
                      "resources", "snapshot", "state", "transitions", "validation"}


def test_exception_tree() -> None:
    assert issubclass(UnknownPolicy, ConfigError)
    for exc in (ConfigError, InvalidTransition, InvariantViolation, SnapshotError):
        assert issubclass(exc, core.SchedulerError)


EVENTS = [
    RunnerRegistered("r1", "h1", (0, 1), (0,), 1024, ("llvm", "cuda"), cause="c1"),
    RunnerLost("r1"), HeartbeatReceived("r1", 0.3, (0.5,)),
    HeartbeatsReceived(("r1", "r2"), (0.3, 0.0), ((0.5,), ()), cause="tick"),
    JobSubmitted(mock_spec("j", "cuda", user="u", priority=2, trials=64, batch_size=16,
                           latency_goal_us=5.0, demand_overrides={"search": {"max_cores": 2}},
                           cpu_profile_exclusivity="cores")),
    JobCancelled("j"), StageFinished("lease-1", 1, "j", "j/1", {"trials": 3}),
    StageFailed("lease-1", 1, "j", "j/1", "oops"), LeaseExpired("lease-1"), Tick("t"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip(event) -> None:
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_command_round_trip() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    commands = [*feed(s, submit("j1"), 0.0), RevokeLease("lease-1", "r1", "x"),
                MoveJob("j1", "h1", "h2"), ResultRejected("l", 1, "j", "s", "r"),
                JobRejected("j", "dup"), JobStateChanged("j", "a", "b", "c")]
    for command in commands:
        data = json.loads(json.dumps(command_to_dict(command)))
        assert command_from_dict(data) == command
    with pytest.raises(ConfigError):
        command_from_dict({"type": "Nope"})
    with pytest.raises(ConfigError):
        event_from_dict({"type": "Nope"})


def test_handle_rejects_non_events_and_clock_never_runs_backwards() -> None:
    s = make_state()
    with pytest.raises(TypeError):
        s.handle("hello", 0.0)  # type: ignore[arg-type]
    feed(s, llvm_runner(), 5.0)
    st = starts(feed(s, submit("j1"), 3.0))[0]
    assert st.lease.start == 5.0 and s.now == 5.0


def test_validate_state_reports_corruption() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    feed(s, submit("j1"), 0.0)
    s.hosts["h1"].free_cores.add(0)  # core 0 is leased to the extract
    with pytest.raises(InvariantViolation) as info:
        s.validate_state()
    assert any("free cores" in p for p in info.value.problems)


def test_unknown_runner_events_are_ignored() -> None:
    s = make_state()
    assert feed(s, RunnerLost("ghost"), 0.0) == []
    assert feed(s, HeartbeatReceived("ghost", 0.9), 0.0) == []


def test_simpletvm_result_keys_are_understood() -> None:
    """The real stages report `done`, `measured`, `trials_total`, `estimated_latency_us`."""
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    st = starts(feed(s, submit("j1", trials=1000), 0.0))[0]
    results = [{}, {"candidates": 32, "done": False}, {}, {"measured": 30, "errors": 2},
               {"trials": 32, "trials_total": 64, "estimated_latency_us": 70.0, "done": False}]
    for now, result in enumerate(results, start=1):
        st = starts(feed(s, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j1",
                                               st.stage_id, result), float(now)))[0]
    job = s.jobs["j1"]
    assert (job.trials_done, job.best_latency_us, job.round, st.kind) == (64, 70.0, 1, "search")
    out = feed(s, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j1", st.stage_id,
                                     {"done": True}), 9.0)
    assert out[0] == JobStateChanged("j1", "running", "finishing", "search exhausted")


def test_indexes_stay_bounded_over_many_jobs() -> None:
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    now = 0.0
    for i in range(300):
        now += 1.0
        st = starts(s.handle(submit(f"j{i}", trials=0), now))[0]  # extract, compile, final
        for _ in ("compile", "final benchmark"):
            st = starts(s.handle(core.StageFinished(st.lease.lease_id, st.lease.epoch,
                                                    st.job_id, st.stage_id, {}), now))[0]
        s.handle(core.StageFinished(st.lease.lease_id, st.lease.epoch, st.job_id, st.stage_id,
                                    {}), now)
    s.validate_state()
    assert all(j.state == "done" for j in s.jobs.values())
    assert len(s.room["llvm"]) <= 4 * len(s.hosts) + 17


def test_a_learn_that_wants_verification_rounds_gets_them_past_the_budget() -> None:
    """simpletvm's learn says `done: False` after the last search round while verification
    rounds remain; the job goes on to search (then build, profile, learn) instead of compile.
    Without a `done` key the trial budget decides, as for the simulator's mock jobs."""
    s = make_state()
    feed(s, llvm_runner(), 0.0)
    st = starts(feed(s, submit("j1", trials=32), 0.0))[0]
    results = [{}, {"candidates": 32, "done": False}, {}, {"measured": 32},
               {"trials_total": 32, "done": False},  # budget spent; a verification round due
               {"candidates": 4, "verify": True, "done": False}, {},
               {"measured": 4, "trials": 0, "verify": True}]
    for now, result in enumerate(results, start=1):
        st = starts(feed(s, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j1",
                                               st.stage_id, result), float(now)))[0]
    job = s.jobs["j1"]
    assert (job.trials_done, job.round, st.kind) == (32, 1, "learn")  # verification not counted
    out = feed(s, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j1", st.stage_id,
                                     {"trials_total": 32, "done": True}), 9.0)
    assert starts(out)[0].kind == "compile"

    s2 = make_state()
    feed(s2, llvm_runner(), 0.0)
    st = starts(feed(s2, submit("j2", trials=32), 0.0))[0]
    for now, result in enumerate([{}, {}, {}, {"trials": 32}, {}], start=1):
        out = feed(s2, core.StageFinished(st.lease.lease_id, st.lease.epoch, "j2", st.stage_id,
                                          result), float(now))
        st = starts(out)[0]
    assert st.kind == "compile"


def test_remaining_counts_the_compile_and_the_final_benchmark() -> None:
    from scheduler.core.demands import job_demands
    from scheduler.core.estimates import BENCHMARK, Estimates
    from scheduler.core.jobs import Job, JobState

    spec = mock_spec("j", trials=64, batch_size=32)
    job = Job(spec, 0, 0.0, job_demands(spec, "host"))
    est = Estimates(0.5)
    est.observe(job, StageKind.COMPILE, 2.0)  # core-seconds: 2 s on its one core
    est.observe(job, BENCHMARK, 3.0)
    for kind, work in (("search", 4.0), ("build", 4.0), ("profile", 5.0), ("learn", 1.0)):
        est.observe(job, StageKind(kind), work)
    assert est.work(job, StageKind.PROFILE) == 5.0  # the benchmark is kept apart
    per_round = 5.0 + 4.0 / 8 + 4.0 / 8 + 1.0
    assert est.remaining(job) == pytest.approx(2 * per_round + 2.0 + 3.0)
    job.state = JobState.FINISHING
    job.new_stage(StageKind.COMPILE, 1, 0, 0.0)
    assert est.remaining(job) == pytest.approx(2.0 + 3.0)
    job.new_stage(StageKind.PROFILE, 1, 0, 0.0)  # the final benchmark
    assert est.remaining(job) == pytest.approx(3.0)
