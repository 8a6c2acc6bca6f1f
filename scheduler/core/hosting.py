"""Which runners can ever host a job, and why none can.

A runner can host a job when it serves the job's target kind, offers a GPU for a cuda job, and,
for an llvm target that names num-cores, offers at least that many cores: the job's profiles are
timed on exactly those cores, so a smaller runner would time another machine. A job that no
registered runner can host waits out of the admission queue with one line saying why.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .commands import Command, JobWaiting
from .demands import TargetKind

if TYPE_CHECKING:
    from .jobs import Job
    from .resources import Host, Runner
    from .state import SchedulerState

__all__ = [
    "WaitingRoom",
    "cores_needed",
    "enqueue",
    "host_can_host",
    "host_with_room",
    "hosts_with_room",
    "least_loaded_host",
    "runner_came",
    "runner_can_host",
    "runner_went",
    "why_unhostable",
]


def cores_needed(job: Job) -> int:
    """Cores a runner must offer to time `job`: its llvm target's num-cores, else 1."""
    return job.spec.profile_cores or 1


def _serves(runner: Runner, kind: str) -> bool:
    return kind in runner.target_kinds and (bool(runner.gpus) or kind != TargetKind.CUDA)


def runner_can_host(runner: Runner, job: Job) -> bool:
    """True if `runner` can run every stage of `job`."""
    return _serves(runner, job.spec.target_kind) and len(runner.cores) >= cores_needed(job)


def host_can_host(host: Host, job: Job) -> bool:
    """True if some runner on `host` can run every stage of `job`."""
    return any(runner_can_host(r, job) for r in host.runners.values())


def why_unhostable(runners: Iterable[Runner], kind: str, cores: int) -> str:
    """"" if one of `runners` can host a `kind` job needing `cores` cores; else one line
    saying what no runner offers."""
    serving = [r for r in runners if kind in r.target_kinds]
    if not serving:
        return f"no runner serves {kind} targets"
    serving = [r for r in serving if _serves(r, kind)]
    if not serving:
        return f"no {kind} runner offers a GPU"
    most = max(len(r.cores) for r in serving)
    if most < cores:
        return (f"no runner offers {cores} cores (the target's num-cores); the largest {kind} "
                f"runner offers {most}")
    return ""


class WaitingRoom:
    """Jobs out of the admission queue because no registered runner can host them (job id ->
    why), and a cache of `why_unhostable` per (target kind, cores), cleared when runners come
    or go."""

    __slots__ = ("_why", "jobs")

    def __init__(self) -> None:
        self.jobs: dict[str, str] = {}
        self._why: dict[tuple[str, int], str] = {}

    def why(self, runners: Iterable[Runner], job: Job) -> str:
        """Why no runner can host `job` ("" if one can)."""
        key = (job.spec.target_kind, cores_needed(job))
        found = self._why.get(key)
        if found is None:
            found = self._why[key] = why_unhostable(runners, *key)
        return found

    def runners_changed(self) -> None:
        """Forget the cached answers: a runner came or went."""
        self._why.clear()


def enqueue(state: SchedulerState, job: Job, out: list[Command]) -> None:
    """Queue `job` for a host, or keep it waiting while no runner can host it (JobWaiting says
    why, and says "" once it can be placed)."""
    room = state.waiting
    why = room.why(state.runners.values(), job)
    was = room.jobs.get(job.job_id, "")
    if why:
        room.jobs[job.job_id] = why
    else:
        room.jobs.pop(job.job_id, None)
        state.queue.push(job)
    if why != was:
        out.append(JobWaiting(job.job_id, why, state.cause))


def runner_came(state: SchedulerState, out: list[Command]) -> None:
    """A runner registered: the jobs that waited for one may be hosted now."""
    state.waiting.runners_changed()
    for job_id in list(state.waiting.jobs):
        enqueue(state, state.jobs[job_id], out)


def runner_went(state: SchedulerState, out: list[Command]) -> None:
    """A runner is gone: queued jobs that only it could host wait apart."""
    state.waiting.runners_changed()
    for job_id in state.queue.job_ids():
        job = state.jobs[job_id]
        if state.waiting.why(state.runners.values(), job):
            state.queue.remove(job_id)
            enqueue(state, job, out)


def least_loaded_host(state: SchedulerState, job: Job) -> Host | None:
    """The least loaded host with room that can host `job` (a scan over hosts: only for jobs
    whose cores the least loaded host of their kind does not offer)."""
    kind, best = job.spec.target_kind, None
    for host in state.hosts.values():
        if (kind in host.target_kinds and host_can_host(host, job)
                and len(host.jobs) < state.policy.max_jobs_on_host(state, host)
                and (best is None or (len(host.jobs), host.seq) < (len(best.jobs), best.seq))):
            best = host
    return best


def hosts_with_room(state: SchedulerState, kind: str) -> list[tuple[int, int, str]]:
    """A fresh room heap for `kind`: (jobs placed, seq, host id) of every host with room now."""
    heap = [(len(h.jobs), h.seq, h.host_id) for h in state.hosts.values()
            if h.runners and kind in h.target_kinds
            and len(h.jobs) < state.policy.max_jobs_on_host(state, h)]
    heapq.heapify(heap)
    return heap


def host_with_room(state: SchedulerState, kind: str) -> Host | None:
    """The least loaded host that serves `kind` and has room (the top of the room heap, stale
    entries dropped on the way)."""
    heap = state.room.get(kind)
    while heap:
        count, _, host_id = heap[0]
        host = state.hosts[host_id]
        if (len(host.jobs) == count and kind in host.target_kinds
                and host.can_serve(kind, kind == TargetKind.CUDA)
                and count < state.policy.max_jobs_on_host(state, host)):
            return host
        heapq.heappop(heap)
    return None
