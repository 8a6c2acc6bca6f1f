"""shared: no control, the scheduler-less baseline. Every job is placed at once and every
ready stage starts immediately with the cores it wants (the least used ones of its runner),
whatever else runs there: cores oversubscribe, memory is not checked, profiles are not
exclusive. The simulator slows stages down by the host's load factor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..demands import Exclusivity
from ..resources import Host
from .base import Placement, Policy

if TYPE_CHECKING:
    from ..state import SchedulerState

__all__ = ["SharedPolicy"]


class SharedPolicy(Policy):
    """Start everything now; leases may overlap."""

    name = "shared"
    controls_resources = False

    def max_jobs_on_host(self, state: SchedulerState, host: Host) -> int:
        """No cap: every job is placed at once."""
        return 1 << 30

    def plan_host(self, state: SchedulerState, host: Host, now: float) -> list[Placement]:
        """Every ready stage, in submission order, on its least used cores/GPUs."""
        core_use = dict(host.core_use)
        gpu_use = dict(host.gpu_use)
        out = []
        for job in sorted((state.jobs[j] for j in host.ready), key=lambda j: j.seq):
            runner = next((r for r in host.runners.values()
                           if job.spec.target_kind in r.target_kinds), None)
            if runner is None:
                continue
            demand = job.demands[job.stage.kind]
            n = min(demand.max_cores, len(runner.cores))
            cores = tuple(sorted(sorted(runner.cores, key=lambda c: core_use.get(c, 0))[:n]))
            gpus = tuple(sorted(sorted(runner.gpus, key=lambda g: gpu_use.get(g, 0))
                                [: demand.gpus]))
            for c in cores:
                core_use[c] = core_use.get(c, 0) + 1
            for g in gpus:
                gpu_use[g] = gpu_use.get(g, 0) + 1
            memory = min(demand.memory_mb, runner.memory_mb)
            out.append(Placement(job.job_id, runner.runner_id, cores, gpus, memory,
                                 Exclusivity.NONE))
        return out
