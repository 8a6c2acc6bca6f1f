"""predictive: interleaved plus running averages of each job's stage times.

- While a host-exclusive profile waits for its host to drain (pausing is off, or the host's
  leases cannot be paused: another profile runs there), CPU stages still start if they
  are expected to end before the host would be free anyway (backfilling, as in EASY).
- Work is ranked by score plus a bonus for the job's expected remaining time (its own running
  averages, else the global ones): up to `remaining_weight` priority levels (default 2),
  in proportion to remaining / the longest remaining among the candidates. With order="lrpt"
  (default) the job with the most left goes first, which keeps the critical chain moving and
  the devices busy to the end (makespan); order="srpt" favours the shortest (mean completion
  time). The bonus is bounded, so aging still prevents starvation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..resources import Host
from .base import Placement, Scratch
from .interleaved import InterleavedPolicy

if TYPE_CHECKING:
    from ..jobs import Job
    from ..state import SchedulerState

__all__ = ["PredictivePolicy"]


class PredictivePolicy(InterleavedPolicy):
    """Interleaved with estimate-driven ordering and backfilling."""

    name = "predictive"

    def __init__(self, order: str = "lrpt", remaining_weight: float = 2.0,
                 **options: Any) -> None:
        if order not in ("lrpt", "srpt"):
            raise ConfigError(f"predictive order must be 'lrpt' or 'srpt', not {order!r}")
        if remaining_weight < 0:
            raise ConfigError("remaining_weight must be >= 0")
        super().__init__(order=order, remaining_weight=remaining_weight, **options)
        self._weight = (-1.0 if order == "lrpt" else 1.0) * remaining_weight

    def order(self, state: SchedulerState, jobs: list[Job], now: float) -> list[Job]:
        """Best first by score plus the remaining-time bonus (see the module docstring)."""
        if len(jobs) > 1:
            remaining = {j.job_id: state.estimates.remaining(j) for j in jobs}
            scale = self._weight / max(max(remaining.values()), 1e-9)

            def key(job: Job) -> tuple[float, int]:
                rank = -state.score(job, job.stage.pending_since, now)
                return rank + scale * remaining[job.job_id], job.seq

            jobs.sort(key=key)
        return jobs

    def while_draining(self, state: SchedulerState, host: Host, scratch: Scratch,
                       others: list[Job], now: float) -> list[Placement]:
        """CPU stages expected to end before the host's running leases would."""
        free_at = self._expected_free_at(state, host, now)
        out = []
        for job in self.order(state, others, now):
            demand = job.demands[job.stage.kind]
            placement = scratch.fit_any(job, host, demand, len(host.jobs))
            if placement is None:
                continue
            cores = len(placement.core_ids)
            if now + state.estimates.duration(job, job.stage.kind, cores) <= free_at:
                out.append(placement)
            else:  # give the cores back to the scratch: it would delay the profile
                scratch.free_cores.update(placement.core_ids)
                scratch.free_memory += placement.memory_mb
        return out

    @staticmethod
    def _expected_free_at(state: SchedulerState, host: Host, now: float) -> float:
        """When the host's active leases are expected to have ended."""
        latest = now
        for lease_id in host.leases:
            lease = state.leases[lease_id]
            job = state.jobs[lease.job_id]
            end = now - lease.running_s(now) + state.estimates.duration(
                job, job.stage.kind, len(lease.core_ids))
            latest = max(latest, end)
        return latest
