"""snapshot/restore: the whole state as plain, JSON-able data and back.

Only primary data is stored (config, policy, hosts, runners, jobs with their current stage,
active leases, fair-share usage, estimates, counters, the jobs no runner can host); every index
is rebuilt, and in the same order, so a restored state answers every later event exactly as the
original would.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import SchedulerConfig
from .demands import Exclusivity, job_demands
from .errors import SnapshotError
from .estimates import Estimates
from .fairshare import FairShare
from .jobs import Job, StageState
from .leases import Lease
from .policies import Policy, get_policy
from .resources import Host, Runner

if TYPE_CHECKING:
    from .state import SchedulerState

__all__ = ["SNAPSHOT_VERSION", "restore", "snapshot"]

SNAPSHOT_VERSION = 1


def snapshot(state: SchedulerState) -> dict[str, Any]:
    """The state as plain data."""
    return {
        "version": SNAPSHOT_VERSION,
        "config": state.config.to_dict(),
        "policy": state.policy.name,
        "policy_options": dict(state.policy.options),
        "now": state.now,
        "epoch": state.epoch,
        "events_handled": state.events_handled,
        "leases_granted": state.leases_granted,
        "hosts": [h.to_dict() for h in state.hosts.values()],
        "runners": [r.to_dict() for r in state.runners.values()],
        "jobs": [j.to_dict() for j in state.jobs.values()],
        "leases": [lease.to_dict() for lease in state.leases.values()],
        "fair": state.fair.to_dict(),
        "estimates": state.estimates.to_dict(),
        "waiting": dict(state.waiting.jobs),
    }


def restore(cls: type[SchedulerState], data: Mapping[str, Any],
            policy: Policy | None = None) -> SchedulerState:
    """Rebuild a state of class `cls` from `snapshot()` output."""
    if data.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot version {data.get('version')!r}, "
                            f"expected {SNAPSHOT_VERSION}")
    try:
        return _restore(cls, data, policy)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc!r}") from exc


def _restore(cls: type[SchedulerState], data: Mapping[str, Any],
             policy: Policy | None) -> SchedulerState:
    config = SchedulerConfig.from_dict(data["config"])
    state = cls(config, policy or get_policy(data["policy"], **data["policy_options"]))
    state.now = data["now"]
    state.epoch = data["epoch"]
    state.events_handled = data["events_handled"]
    state.leases_granted = data["leases_granted"]
    state.fair = FairShare.from_dict(data["fair"])
    state.estimates = Estimates.from_dict(data["estimates"])
    state.waiting.jobs = dict(data.get("waiting", {}))
    for h in data["hosts"]:
        host = state.hosts[h["host_id"]] = Host(h["host_id"], h["seq"])
        host.foreign_load = h["foreign_load"]
        host.gpu_util = tuple(h["gpu_util"])
    for r in data["runners"]:
        runner = state.runners[r["runner_id"]] = Runner.from_dict(r)
        state.hosts[runner.host_id].runners[runner.runner_id] = runner
    for host in state.hosts.values():
        host.recompute_offer()
    for j in data["jobs"]:
        _restore_job(state, j)
    for h in data["hosts"]:
        host = state.hosts[h["host_id"]]
        host.jobs = dict.fromkeys(h["jobs"])
        host.ready = dict.fromkeys(h["ready"])
    for item in data["leases"]:
        _restore_lease(state, Lease.from_dict(item))
    for host in state.hosts.values():
        state._host_changed(host)
    state._dirty.clear()
    return state


def _restore_job(state: SchedulerState, data: Mapping[str, Any]) -> None:
    job = Job.from_dict(data, lambda spec: job_demands(
        spec, state.config.cpu_profile_exclusivity, state.config.demand_overrides))
    state.jobs[job.job_id] = job
    if job.terminal:
        return
    state.fair.job_added(job.spec.user)
    if job.host_id is not None:
        state.placed_jobs += 1
    elif job.stage.state is StageState.PENDING and job.job_id not in state.waiting.jobs:
        state.queue.push(job)


def _restore_lease(state: SchedulerState, lease: Lease) -> None:
    state.leases[lease.lease_id] = lease
    host = state.hosts[lease.host_id]
    host.leases[lease.lease_id] = None
    host.take(lease.held_cores, lease.gpu_ids, lease.memory_mb)
    state.runners[lease.holder].leases[lease.lease_id] = None
    if lease.exclusive is Exclusivity.HOST:
        host.exclusive_lease = lease.lease_id
    if lease.expiry is not None:
        heapq.heappush(state._expiry, (lease.expiry, lease.epoch, lease.lease_id))
