"""snapshot()/restore(): a restored state answers every later event exactly as the original."""

from __future__ import annotations

import json

import pytest
from sched_helpers import feed, llvm_runner, make_state, submit

from scheduler.core import SchedulerState, SnapshotError, command_to_dict, get_policy
from scheduler.sim import Simulator, mixed_scenario

POLICIES = ["interleaved", "predictive", "sequential", "shared"]


def _trace(policy: str) -> list:
    sim = Simulator(mixed_scenario(), policy, record=True)
    sim.run()
    return sim.trace


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("cut", [0.25, 0.5, 0.8])
def test_restored_state_behaves_identically(policy: str, cut: float) -> None:
    trace = _trace(policy)
    split = int(len(trace) * cut)
    original = SchedulerState(mixed_scenario().config, policy)
    for now, event in trace[:split]:
        original.handle(event, now)
    data = json.loads(json.dumps(original.snapshot()))  # must survive JSON
    restored = SchedulerState.restore(data)
    restored.validate_state()
    assert restored.snapshot() == original.snapshot()
    for now, event in trace[split:]:
        expected = original.handle(event, now)
        got = restored.handle(event, now)
        assert [command_to_dict(c) for c in got] == [command_to_dict(c) for c in expected]
    assert restored.snapshot() == original.snapshot()
    assert all(job.terminal for job in restored.jobs.values())


def test_restore_with_an_explicit_policy_object() -> None:
    s = make_state("predictive")
    feed(s, llvm_runner(), 0.0)
    feed(s, submit("j1"), 0.0)
    restored = SchedulerState.restore(s.snapshot(), get_policy("predictive", order="srpt"))
    assert restored.policy.options["order"] == "srpt"


def test_restore_rejects_bad_snapshots() -> None:
    with pytest.raises(SnapshotError):
        SchedulerState.restore({"version": 99})
    data = make_state().snapshot()
    del data["jobs"]
    with pytest.raises(SnapshotError):
        SchedulerState.restore(data)
