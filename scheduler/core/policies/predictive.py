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
- Widening (`widen`, default on): a stage keeps the cores it starts with, so the job with the
  most expected work left must not start a multi-core stage on a sliver when the cores it can
  use are about to free. If fewer cores are free than its stage can use, and waiting for the
  running leases it needs is expected to end that stage sooner than starting narrow now, its
  stage waits for them; meanwhile other stages only backfill the free cores if they are
  expected to end before those cores come. A running stage that outran its estimate is
  expected to end soon (a quarter of its estimate), until it has run twice its estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..resources import Host
from .base import Placement, Scratch
from .interleaved import InterleavedPolicy

if TYPE_CHECKING:
    from ..jobs import Job
    from ..leases import Lease
    from ..state import SchedulerState

__all__ = ["PredictivePolicy"]

# A stage that has outrun its estimate is expected to end within this fraction of it ...
OVERDUE_GRACE = 0.25
# ... until it has run this many times its estimate.
OVERDUE_LIMIT = 2.0


class PredictivePolicy(InterleavedPolicy):
    """Interleaved with estimate-driven ordering and backfilling."""

    name = "predictive"

    def __init__(self, order: str = "lrpt", remaining_weight: float = 2.0,
                 widen: bool = True, **options: Any) -> None:
        if order not in ("lrpt", "srpt"):
            raise ConfigError(f"predictive order must be 'lrpt' or 'srpt', not {order!r}")
        if remaining_weight < 0:
            raise ConfigError("remaining_weight must be >= 0")
        if not isinstance(widen, bool):
            raise ConfigError(f"predictive widen must be true or false, not {widen!r}")
        super().__init__(order=order, remaining_weight=remaining_weight, widen=widen,
                         **options)
        self._weight = (-1.0 if order == "lrpt" else 1.0) * remaining_weight
        self._widen = widen

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
        return self._backfill(state, host, scratch, self.order(state, others, now),
                              self._expected_free_at(state, host, now), now)

    def fill(self, state: SchedulerState, host: Host, scratch: Scratch, others: list[Job],
             now: float) -> list[Placement]:
        """CPU stages best first, unless the job with the most left should wait to start
        wide (see the module docstring): then only backfilling."""
        if self._widen and others:
            held = self._wide_wait(state, host, scratch, others, now)
            if held is not None:
                job, until = held
                rest = [j for j in self.order(state, others, now) if j is not job]
                return self._backfill(state, host, scratch, rest, until, now)
        return super().fill(state, host, scratch, others, now)

    def _wide_wait(self, state: SchedulerState, host: Host, scratch: Scratch,
                   others: list[Job], now: float) -> tuple[Job, float] | None:
        """(job, when its cores come) if the host's longest job should wait for cores."""
        estimates = state.estimates
        jobs = state.jobs
        longest = max((jobs[j] for j in host.jobs), key=lambda j: (estimates.remaining(j), -j.seq))
        if not any(job is longest for job in others):
            return None  # running (a stage keeps its cores), not ready, or a profile
        if longest.spec.target_kind in state.queue.kinds():
            return None  # jobs wait for hosts: throughput matters, not this job's chain
        kind = longest.stage.kind
        demand = longest.demands[kind]
        work = estimates.work(longest, kind)
        best: tuple[float, float, float] | None = None  # (narrow end, wide end, cores come)
        for runner in host.runners_for(longest.spec.target_kind):
            width = min(demand.max_cores, len(runner.cores))
            free = len(scratch.free_cores & runner.core_set) - scratch.reserved_cores
            if free >= width:
                return None  # it gets all it can use now
            if free < max(1, min(demand.min_cores, width)):
                continue  # it cannot start here now anyway
            until = self._cores_free_at(state, runner.leases, width - free, now)
            if until is None:
                continue
            narrow, wide = now + work / free, until + work / width
            if best is None or min(narrow, wide) < min(best[:2]):
                best = (narrow, wide, until)
        if best is None or best[1] >= best[0]:
            return None
        return longest, best[2]

    def _cores_free_at(self, state: SchedulerState, lease_ids: Iterable[str], needed: int,
                       now: float) -> float | None:
        """When `needed` more cores are expected to be free, from these leases' expected
        ends (None if they do not hold that many)."""
        ends = []
        for lid in lease_ids:
            lease = state.leases[lid]
            end = self._overdue_end(state, lease, now)
            if end is not None:
                ends.append((end, len(lease.held_cores)))
        got = 0
        for end, cores in sorted(ends):
            got += cores
            if got >= needed:
                return end
        return None

    def _backfill(self, state: SchedulerState, host: Host, scratch: Scratch, jobs: list[Job],
                  until: float, now: float) -> list[Placement]:
        """Stages of `jobs` (in order) expected to end by `until`, on the free cores."""
        out = []
        for job in jobs:
            demand = job.demands[job.stage.kind]
            placement = scratch.fit_any(job, host, demand, len(host.jobs))
            if placement is None:
                continue
            cores = len(placement.core_ids)
            if now + state.estimates.duration(job, job.stage.kind, cores) <= until:
                out.append(placement)
            else:  # give the cores back to the scratch: it would delay the waiting stage
                scratch.free_cores.update(placement.core_ids)
                scratch.free_memory += placement.memory_mb
        return out

    @classmethod
    def _expected_free_at(cls, state: SchedulerState, host: Host, now: float) -> float:
        """When the host's active leases are expected to have ended."""
        return max((cls._expected_end(state, state.leases[lid], now) for lid in host.leases),
                   default=now)

    @staticmethod
    def _overdue_end(state: SchedulerState, lease: Lease, now: float) -> float | None:
        """When the stage under `lease` is expected to end, allowing for one that outran its
        estimate: stage times scatter around their averages, so a stage a little late is
        expected to end soon (within OVERDUE_GRACE of its estimate); None once it has run
        OVERDUE_LIMIT times its estimate (stuck or mis-estimated: nothing says when)."""
        job = state.jobs[lease.job_id]
        expected = state.estimates.duration(job, job.stage.kind, len(lease.core_ids))
        running = lease.running_s(now)
        if running >= OVERDUE_LIMIT * expected:
            return None
        return now + max(expected - running, OVERDUE_GRACE * expected)

    @staticmethod
    def _expected_end(state: SchedulerState, lease: Lease, now: float) -> float:
        """When the stage under `lease` is expected to end (not before now)."""
        job = state.jobs[lease.job_id]
        left = state.estimates.duration(job, job.stage.kind, len(lease.core_ids)) \
            - lease.running_s(now)
        return now + max(0.0, left)
