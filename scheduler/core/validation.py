"""validate_state: the invariants the core keeps after every event.

- every active lease is held by a live runner of its host, within what that runner offers,
  and belongs to its job's current, running stage; every running stage holds a live lease;
- per host, use counts and free sets match the active leases; under a resource-controlling
  policy no core or GPU is leased twice, memory is not overcommitted, and a host-exclusive
  lease is alone on its host;
- job states agree with their stages, hosts and the admission queue.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .demands import Exclusivity, StageKind
from .errors import InvariantViolation
from .jobs import JobState, StageState

if TYPE_CHECKING:
    from .state import SchedulerState

__all__ = ["validate_state"]


def validate_state(state: SchedulerState) -> None:
    """Raise InvariantViolation listing every broken invariant."""
    problems: list[str] = []
    _check_leases(state, problems)
    _check_hosts(state, problems)
    _check_jobs(state, problems)
    if problems:
        raise InvariantViolation(problems)


def _check_leases(state: SchedulerState, problems: list[str]) -> None:
    for lease_id, lease in state.leases.items():
        where = f"lease {lease_id}"
        if not lease.live or lease.lease_id != lease_id:
            problems.append(f"{where} is in the active index but {lease.state}")
        if lease.epoch > state.epoch:
            problems.append(f"{where} epoch {lease.epoch} > scheduler epoch {state.epoch}")
        if lease.expiry is not None and lease.expiry < state.now:
            problems.append(f"{where} outlived its expiry {lease.expiry}")
        runner = state.runners.get(lease.holder)
        if runner is None or runner.host_id != lease.host_id or lease_id not in runner.leases:
            problems.append(f"{where} holder {lease.holder} is not a live runner of "
                            f"{lease.host_id} holding it")
        elif not (runner.core_set.issuperset(lease.core_ids)
                  and runner.gpu_set.issuperset(lease.gpu_ids)):
            problems.append(f"{where} exceeds what runner {runner.runner_id} offers")
        host = state.hosts.get(lease.host_id)
        if host is None or lease_id not in host.leases:
            problems.append(f"{where} is not indexed on host {lease.host_id}")
        job = state.jobs.get(lease.job_id)
        stage = job.stage if job else None
        if (stage is None or stage.stage_id != lease.stage_id
                or stage.state is not StageState.RUNNING or stage.lease_id != lease_id):
            problems.append(f"{where} does not belong to a running stage {lease.stage_id}")


def _check_hosts(state: SchedulerState, problems: list[str]) -> None:
    controls = state.policy.controls_resources
    for host in state.hosts.values():
        where = f"host {host.host_id}"
        mine = [state.leases[i] for i in host.leases if i in state.leases]
        if len(mine) != len(host.leases):
            problems.append(f"{where} indexes dead leases")
        cores = Counter(c for lease in mine for c in lease.held_cores)
        gpus = Counter(g for lease in mine for g in lease.gpu_ids)
        if dict(cores) != host.core_use or dict(gpus) != host.gpu_use:
            problems.append(f"{where} use counts do not match its leases")
        if host.free_cores != set(host.cores) - set(cores):
            problems.append(f"{where} free cores do not match its leases")
        if host.free_gpus != set(host.gpus) - set(gpus):
            problems.append(f"{where} free GPUs do not match its leases")
        if host.used_memory_mb != sum(lease.memory_mb for lease in mine):
            problems.append(f"{where} used memory does not match its leases")
        exclusive = [lease for lease in mine if lease.exclusive is Exclusivity.HOST]
        if host.exclusive_lease != (exclusive[0].lease_id if exclusive else None):
            problems.append(f"{where} exclusive_lease is {host.exclusive_lease}")
        if controls:
            twice = [c for c, n in cores.items() if n > 1] + [g for g, n in gpus.items() if n > 1]
            if twice:
                problems.append(f"{where} has cores/GPUs leased twice: {twice}")
            running = [lease for lease in mine if not lease.paused]
            if exclusive and len(running) > 1:
                problems.append(f"{where} host-exclusive lease {exclusive[0].lease_id} "
                                f"is not alone")
        if not exclusive and any(lease.paused for lease in mine):
            problems.append(f"{where} has paused leases but no host-exclusive lease")
            if host.used_memory_mb > host.memory_mb:
                problems.append(f"{where} memory overcommitted")
        on_host = {j.job_id for j in state.jobs.values() if j.host_id == host.host_id}
        if set(host.jobs) != on_host:
            problems.append(f"{where} job index differs from jobs placed there")
        ready = {j for j in on_host if state.jobs[j].stage.state is StageState.PENDING}
        if set(host.ready) != ready:
            problems.append(f"{where} ready set differs from its pending stages")


def _check_jobs(state: SchedulerState, problems: list[str]) -> None:
    placed = 0
    active: Counter[str] = Counter()
    for job in state.jobs.values():
        where = f"job {job.job_id} ({job.state})"
        if job.terminal:
            if (job.stage is not None or job.host_id is not None or job.job_id in state.queue
                    or job.job_id in state.waiting.jobs):
                problems.append(f"{where} is final but still has a stage, host or queue entry")
            continue
        active[job.spec.user] += 1
        stage = job.stage
        if stage is None or stage.state not in (StageState.PENDING, StageState.RUNNING):
            problems.append(f"{where} has no pending or running stage")
            continue
        if stage.state is StageState.RUNNING and stage.lease_id not in state.leases:
            problems.append(f"{where} stage {stage.stage_id} runs without a live lease")
        finishing = (StageKind.COMPILE, StageKind.PROFILE)  # compile, then final benchmark
        if (job.state is JobState.FINISHING and stage.kind not in finishing) or (
                stage.kind is StageKind.COMPILE and job.state is not JobState.FINISHING):
            problems.append(f"{where} runs stage kind {stage.kind}")
        if job.state is JobState.QUEUED and (stage.kind is not StageKind.EXTRACT
                                             or stage.state is not StageState.PENDING):
            problems.append(f"{where} is queued with a {stage.state} {stage.kind} stage")
        waiting = job.job_id in state.waiting.jobs  # no runner can host it
        if job.host_id is None:
            if stage.state is not StageState.PENDING or (job.job_id in state.queue) == waiting:
                problems.append(f"{where} has no host but is not waiting in the queue or, "
                                "apart, for a runner that can host it (not both)")
        else:
            placed += 1
            if job.job_id in state.queue or waiting:
                problems.append(f"{where} is placed and waiting at once")
    if placed != state.placed_jobs:
        problems.append(f"placed_jobs is {state.placed_jobs}, counted {placed}")
    cap = state.policy.max_placed_jobs(state)
    if cap is not None and placed > cap:
        problems.append(f"{placed} jobs placed, policy allows {cap}")
    if dict(active) != state.fair.active:
        problems.append("fair-share active job counts differ from live jobs")
