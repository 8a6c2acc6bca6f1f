"""The policy interface and the helpers every policy plans with.

A policy is a pure function over the scheduler state: the core asks it (1) how many jobs may
be placed on a host and in total, and (2) for a host whose resources or ready stages changed,
which ready stages to start there now and with which cores/GPUs (`plan_host`). The core checks
and applies the placements; policies never mutate the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..demands import Exclusivity, StageDemand
from ..hosting import cores_needed
from ..resources import Host, Runner

if TYPE_CHECKING:
    from ..jobs import Job
    from ..state import SchedulerState

__all__ = ["Placement", "Policy", "Scratch"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Start job `job_id`'s pending stage on `runner_id` with these resources."""

    job_id: str
    runner_id: str
    core_ids: tuple[int, ...]
    gpu_ids: tuple[int, ...]
    memory_mb: int
    exclusive: Exclusivity


class Scratch:
    """A host's free resources during one planning pass; `fit` takes from it tentatively."""

    __slots__ = ("free_cores", "free_gpus", "free_memory", "pausable", "planned",
                 "reserved_cores", "touched")

    def __init__(self, host: Host, pausable: bool = False) -> None:
        self.free_cores = set(host.free_cores)
        self.free_gpus = set(host.free_gpus)
        self.free_memory = host.free_memory_mb
        self.touched = bool(host.leases)  # some lease lives (or was planned) on the host
        self.pausable = pausable  # the host's leases may be paused for a host-exclusive lease
        self.planned = False  # this pass placed something
        self.reserved_cores = 0  # cores held back for a waiting profile

    def fit(self, job: Job, runner: Runner, demand: StageDemand,
            sharing: int = 0) -> Placement | None:
        """Take resources for `job`'s stage from this runner, or return None if they are not
        free. Cores: as many as are free up to max_cores, but at least min_cores and, when
        `sharing` jobs share the host, at least an equal share of the runner's cores (never
        start a long stage on a sliver); both bounds clamped to the runner."""
        offered = len(runner.cores)
        if demand.exclusive is not Exclusivity.NONE and offered < cores_needed(job):
            return None  # a timed stage runs on all the target's cores or not at all
        if demand.exclusive is Exclusivity.HOST:
            if self.planned or (self.touched and not self.pausable):
                return None  # pausable: the core pauses the host's leases (their cores free)
            if not self.pausable and not self.free_cores.issuperset(runner.cores):
                return None
            cores = runner.cores
        else:
            hi = min(demand.max_cores, offered)
            lo = min(demand.min_cores, offered)
            if sharing > 1:
                lo = max(lo, min(hi, offered // sharing))
            avail = self.free_cores & runner.core_set if self.free_cores else set()
            usable = len(avail) - self.reserved_cores
            if usable < lo or usable < 1:
                return None
            cores = tuple(sorted(avail)[: min(hi, usable)])
        gpus: tuple[int, ...] = ()
        if demand.gpus:
            free_gpus = sorted(self.free_gpus & runner.gpu_set)
            if len(free_gpus) < demand.gpus:
                return None
            gpus = tuple(free_gpus[: demand.gpus])
        memory = min(demand.memory_mb, runner.memory_mb)
        if memory > self.free_memory:
            return None
        self.free_cores.difference_update(cores)
        self.free_gpus.difference_update(gpus)
        self.free_memory -= memory
        self.touched = self.planned = True
        return Placement(job.job_id, runner.runner_id, cores, gpus, memory, demand.exclusive)

    def fit_any(self, job: Job, host: Host, demand: StageDemand,
                sharing: int = 0) -> Placement | None:
        """`fit` on the first of the host's runners (serving the job's target) that fits."""
        kind = job.spec.target_kind
        for runner in host.runners.values():
            if kind in runner.target_kinds:
                placement = self.fit(job, runner, demand, sharing)
                if placement is not None:
                    return placement
        return None


class Policy:
    """Base policy: resource-controlling, least-loaded placement, a per-host job cap."""

    name: ClassVar[str] = "base"
    controls_resources: ClassVar[bool] = True  # False: leases may overlap (shared baseline)

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    def max_placed_jobs(self, state: SchedulerState) -> int | None:
        """Cap on jobs holding a host at once across the scheduler (None: no cap)."""
        return None

    def max_jobs_on_host(self, state: SchedulerState, host: Host) -> int:
        """Cap on jobs placed on `host` at once: config.jobs_per_host, else one per 4 cores
        (at least 2) plus one per GPU."""
        if state.config.jobs_per_host is not None:
            return state.config.jobs_per_host
        return max(2, len(host.cores) // 4) + len(host.gpus)

    def plan_host(self, state: SchedulerState, host: Host, now: float) -> list[Placement]:
        """Placements for ready stages on `host` to start now."""
        raise NotImplementedError

    def held_by_foreign_load(self, state: SchedulerState, host: Host) -> int:
        """Ready profile stages on `host` that `plan_host` holds back now because of the
        host's foreign load (0: this policy ignores foreign load)."""
        return 0
