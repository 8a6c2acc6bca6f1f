"""sequential: one job at a time in the whole scheduler, each alone on its host (the thesis'
baseline). Within the job, stages are placed as by `interleaved`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..resources import Host
from .interleaved import InterleavedPolicy

if TYPE_CHECKING:
    from ..state import SchedulerState

__all__ = ["SequentialPolicy"]


class SequentialPolicy(InterleavedPolicy):
    """At most one placed job scheduler-wide."""

    name = "sequential"

    def max_placed_jobs(self, state: SchedulerState) -> int | None:
        """One job at a time."""
        return 1

    def max_jobs_on_host(self, state: SchedulerState, host: Host) -> int:
        """One job per host (and one in total)."""
        return 1
