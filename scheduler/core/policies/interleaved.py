"""interleaved: load-aware sharing. Profiles run exclusively on what they measure; the other
jobs' CPU stages fill the cores the profiles leave idle.

Per host, ready profiles go first (unless the host's foreign load is above the threshold).
A host-exclusive llvm profile starts at once by pausing the host's CPU stages (the core sends
PauseLease, then ResumeLease when it ends; config.pause_for_profile). A profile that cannot start
holds its device back: a host-exclusive llvm profile (pausing off, or another profile running)
drains the host (no new leases there until it starts), a cuda profile whose GPU is free but
whose core is not reserves that core. Then CPU stages, best score first, each taking as many
free cores as it can use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..demands import Exclusivity, StageDemand, StageKind
from ..resources import Host
from .base import Placement, Policy, Scratch

if TYPE_CHECKING:
    from ..jobs import Job
    from ..state import SchedulerState

__all__ = ["InterleavedPolicy"]


class InterleavedPolicy(Policy):
    """Exclusive profiles first, CPU stages in the gaps, ranked by priority/fair share/aging."""

    name = "interleaved"

    def plan_host(self, state: SchedulerState, host: Host, now: float) -> list[Placement]:
        """Profiles first, then CPU stages; see the module docstring."""
        if host.exclusive_lease is not None or not host.ready:
            return []
        profiles: list[Job] = []
        others: list[Job] = []
        jobs = state.jobs
        for job_id in host.ready:
            job = jobs[job_id]
            (profiles if job.stage.kind is StageKind.PROFILE else others).append(job)
        scratch = Scratch(host, pausable=state.can_pause_host(host))
        out: list[Placement] = []
        if profiles and not self._too_loaded(state, host):
            for job in self.order(state, profiles, now):
                demand = job.demands[StageKind.PROFILE]
                placement = scratch.fit_any(job, host, demand)
                if placement is not None:
                    out.append(placement)
                    if placement.exclusive is Exclusivity.HOST:
                        return out
                elif demand.exclusive is Exclusivity.HOST:
                    return out + self.while_draining(state, host, scratch, others, now)
                elif self._device_free(scratch, host, job, demand):
                    scratch.reserved_cores += demand.min_cores
        return out + self.fill(state, host, scratch, others, now)

    def fill(self, state: SchedulerState, host: Host, scratch: Scratch, others: list[Job],
             now: float) -> list[Placement]:
        """CPU stages on the cores left: best first, each taking as many as it can use."""
        sharing = len(host.jobs)
        out = []
        for job in self.order(state, others, now):
            placement = scratch.fit_any(job, host, job.demands[job.stage.kind], sharing)
            if placement is not None:
                out.append(placement)
        return out

    def order(self, state: SchedulerState, jobs: list[Job], now: float) -> list[Job]:
        """Jobs best first: highest score (priority, aging, fair share), then oldest."""
        if len(jobs) > 1:
            jobs.sort(key=lambda j: (-state.score(j, j.stage.pending_since, now), j.seq))
        return jobs

    def while_draining(self, state: SchedulerState, host: Host, scratch: Scratch,
                       others: list[Job], now: float) -> list[Placement]:
        """CPU stages to start while a host-exclusive profile waits for the host: none."""
        return []

    def held_by_foreign_load(self, state: SchedulerState, host: Host) -> int:
        """Ready profiles on `host` kept from starting by its foreign load: all of them while
        the load is above the threshold (and no host-exclusive lease holds the host anyway)."""
        if host.exclusive_lease is not None or not self._too_loaded(state, host):
            return 0
        jobs = state.jobs
        return sum(jobs[job_id].stage.kind is StageKind.PROFILE for job_id in host.ready)

    @staticmethod
    def _too_loaded(state: SchedulerState, host: Host) -> bool:
        """True while the host's foreign load keeps profiles off it."""
        return host.foreign_load > state.config.foreign_load_threshold

    @staticmethod
    def _device_free(scratch: Scratch, host: Host, job: Job, demand: StageDemand) -> bool:
        """True if the profile's device (GPUs, or for a cores profile its cores) is free and
        only cores or memory held by CPU stages keep it from starting."""
        if not demand.gpus:
            return True
        kind = job.spec.target_kind
        return any(kind in r.target_kinds and len(scratch.free_gpus & r.gpu_set) >= demand.gpus
                   for r in host.runners.values())
