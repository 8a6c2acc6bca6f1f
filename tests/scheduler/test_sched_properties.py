"""Property tests: random event sequences keep every invariant, and every job ends."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    HeartbeatReceived,
    JobCancelled,
    JobStateChanged,
    JobSubmitted,
    LeaseExpired,
    ResultRejected,
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
from scheduler.sim import mock_spec

RUNNERS = [
    RunnerRegistered("r1", "h1", (0, 1, 2, 3), (), 16384, ("llvm",)),
    RunnerRegistered("r2a", "h2", (0, 1, 2, 3), (), 32768, ("llvm",)),
    RunnerRegistered("r2b", "h2", (4, 5, 6, 7), (), 32768, ("llvm",)),
    RunnerRegistered("g1", "gh1", (0, 1, 2, 3), (0, 1), 65536, ("cuda",)),
    RunnerRegistered("g2", "gh2", (0, 1, 2, 3), (0,), 65536, ("cuda", "llvm")),
]
POLICIES = ["interleaved", "predictive", "sequential", "shared"]


@dataclass
class Harness:
    """Plays the runners: remembers what it was told to run and answers for it."""

    state: SchedulerState
    now: float = 0.0
    running: dict[str, StartStage] = field(default_factory=dict)
    dead: dict[str, StartStage] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)

    def send(self, event, dt: float = 0.25) -> list:
        self.now += dt
        commands = self.state.handle(event, self.now)
        self.state.validate_state()
        for c in commands:
            if isinstance(c, StartStage):
                assert c.lease.lease_id not in self.running
                self.running[c.lease.lease_id] = c
            elif isinstance(c, RevokeLease):
                if c.lease_id in self.running:  # else: answered by the event that expired it
                    self.dead[c.lease_id] = self.running.pop(c.lease_id)
            elif isinstance(c, JobStateChanged) and c.new in ("done", "failed", "cancelled"):
                assert c.job_id not in self.ended
                self.ended.add(c.job_id)
        # every running stage holds a live lease, and the runners agree on which are live
        assert set(self.running) == set(self.state.leases)
        for lease_id, start in self.running.items():
            job = self.state.jobs[start.job_id]
            assert job.stage.stage_id == start.stage_id and job.stage.lease_id == lease_id
        return commands

    def answer(self, lease_id: str, ok: bool, result: dict | None = None) -> list:
        start = self.running.pop(lease_id)
        self.dead[lease_id] = start
        lease = start.lease
        if ok:
            if result is None:
                result = {"trials": 32, "best_latency_us": 80.0} if start.kind == "profile" else {}
            event = StageFinished(lease.lease_id, lease.epoch, start.job_id, start.stage_id,
                                  result)
        else:
            event = StageFailed(lease.lease_id, lease.epoch, start.job_id, start.stage_id, "x")
        commands = self.send(event)
        # rejected only when the lease ran out of time before its result came (no heartbeat)
        expired = RevokeLease(lease_id, start.runner_id, "lease expired", expired=True)
        assert not any(isinstance(c, ResultRejected) for c in commands) or expired in commands
        return commands

    def stale(self, index: int, epoch_shift: int) -> None:
        """A result under a dead lease (or a live one with a wrong epoch) changes nothing."""
        pool = list(self.dead.values()) if epoch_shift == 0 else list(self.running.values())
        if not pool:
            return
        start = pool[index % len(pool)]
        lease = start.lease
        before = self.state.snapshot()
        event = StageFinished(lease.lease_id, lease.epoch + epoch_shift, start.job_id,
                              start.stage_id, {"trials": 32})
        commands = self.send(event, dt=0.0)
        assert [type(c) for c in commands] == [ResultRejected]
        after = self.state.snapshot()
        assert {**after, "events_handled": 0} == {**before, "events_handled": 0}


submit_op = st.tuples(st.just("submit"), st.sampled_from(["llvm", "cuda"]),
                      st.sampled_from([0, 32, 64]), st.integers(0, 2), st.integers(0, 2),
                      st.sampled_from(["host", "cores", None]), st.sampled_from([None, 90.0]))
finish_op = st.tuples(st.just("finish"), st.integers(0, 50),
                      st.sampled_from(["plain", "plain", "exhausted"]))
op = st.one_of(
    st.tuples(st.just("register"), st.integers(0, len(RUNNERS) - 1)),
    st.tuples(st.just("lose"), st.integers(0, len(RUNNERS) - 1)),
    submit_op, finish_op, finish_op, finish_op, finish_op,
    st.tuples(st.just("fail"), st.integers(0, 50)),
    st.tuples(st.just("stale"), st.integers(0, 50), st.sampled_from([0, -1, 3])),
    st.tuples(st.just("heartbeat"), st.integers(0, len(RUNNERS) - 1),
              st.sampled_from([0.0, 0.1, 0.6])),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 20.0, 45.0])),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("expire"), st.integers(0, 50)),
)
# every example starts with all runners registered and a few jobs submitted
scenario = st.tuples(st.lists(submit_op, min_size=2, max_size=8),
                     st.lists(op, min_size=20, max_size=120)).map(
    lambda t: [("register", i) for i in range(len(RUNNERS))] + t[0] + t[1])


def apply(h: Harness, item: tuple) -> None:
    kind = item[0]
    if kind == "register":
        h.send(RUNNERS[item[1]])
    elif kind == "lose":
        h.send(RunnerLost(RUNNERS[item[1]].runner_id))
    elif kind == "submit":
        _, target, trials, priority, user, excl, goal = item
        job_id = f"j{len(h.jobs)}"
        h.jobs.append(job_id)
        h.send(JobSubmitted(mock_spec(job_id, target, user=f"u{user}", priority=priority,
                                      trials=trials, batch_size=32, latency_goal_us=goal,
                                      cpu_profile_exclusivity=excl)))
    elif kind in ("finish", "fail", "expire") and h.running:
        lease_id = sorted(h.running)[item[1] % len(h.running)]
        if kind == "expire":
            h.send(LeaseExpired(lease_id))
        elif kind == "fail":
            h.answer(lease_id, ok=False)
        else:
            start = h.running[lease_id]
            result = {"exhausted": True} if item[2] == "exhausted" and start.kind == "search" \
                else None
            h.answer(lease_id, ok=True, result=result)
    elif kind == "stale":
        h.stale(item[1], item[2])
    elif kind == "heartbeat":
        if RUNNERS[item[1]].runner_id in h.state.runners:
            h.send(HeartbeatReceived(RUNNERS[item[1]].runner_id, item[2]))
    elif kind == "tick":
        h.send(Tick(), dt=item[1])
    elif kind == "cancel" and h.jobs:
        h.send(JobCancelled(h.jobs[item[1] % len(h.jobs)]))


def drain(h: Harness, limit: int = 3000) -> None:
    """Bring every runner back, clear foreign load, answer stages until nothing runs."""
    for runner in RUNNERS:
        if runner.runner_id not in h.state.runners:
            h.send(runner)
        h.send(HeartbeatReceived(runner.runner_id, 0.0))
    for step in range(limit):
        if not h.running:
            break
        if step % 20 == 0:
            for runner in RUNNERS:
                h.send(HeartbeatReceived(runner.runner_id, 0.0), dt=0.0)
        h.answer(min(h.running, key=lambda lid: h.running[lid].lease.epoch), ok=True)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=scenario)
def test_random_sequences_keep_invariants_and_every_job_ends(policy: str, ops: list) -> None:
    config = SchedulerConfig(policy=policy, lease_ttl_s=30.0, max_stage_retries=2)
    h = Harness(SchedulerState(config))
    for item in ops:
        apply(h, item)
    drain(h)
    unfinished = [j for j in h.jobs if not h.state.jobs[j].terminal]
    assert not unfinished, unfinished
    assert h.ended == set(h.jobs)
    assert not h.state.leases
    for host in h.state.hosts.values():
        assert host.free_cores == set(host.cores) and not host.jobs


def test_aging_prevents_starvation_of_a_low_priority_job() -> None:
    """One slot, a steady stream of priority-5 jobs: the priority-0 job still gets in."""
    config = SchedulerConfig(jobs_per_host=1, lease_ttl_s=None, aging_per_s=1 / 300)
    h = Harness(SchedulerState(config))
    h.send(RUNNERS[0])
    h.send(JobSubmitted(mock_spec("low", priority=0, trials=0)))
    h.send(JobSubmitted(mock_spec("first", priority=5, trials=0)))
    started_low_at = None
    for i in range(2000):
        h.send(JobSubmitted(mock_spec(f"hi{i}", priority=5, trials=0)), dt=0.0)
        for lease_id in list(h.running):
            if h.running[lease_id].job_id == "low" and started_low_at is None:
                started_low_at = h.now
            h.answer(lease_id, ok=True)
        if started_low_at is not None:
            break
        h.now += 5.0
    # it waits at most until 5 priority levels of aging (1500 s) are made up
    assert started_low_at is not None and started_low_at <= 1600


def test_fair_share_admits_the_user_who_used_less() -> None:
    config = SchedulerConfig(jobs_per_host=1, lease_ttl_s=None)
    h = Harness(SchedulerState(config))
    h.send(RUNNERS[0])
    h.send(JobSubmitted(mock_spec("a0", user="alice", trials=32)))
    for job in ("a1", "a2", "b1"):
        h.send(JobSubmitted(mock_spec(job, user="bob" if job == "b1" else "alice", trials=32)),
               dt=0.0)
    while not h.state.jobs["a0"].terminal:  # alice has used everything so far
        h.answer(next(iter(h.running)), ok=True)
    assert [s.job_id for s in h.running.values()] == ["b1"]
