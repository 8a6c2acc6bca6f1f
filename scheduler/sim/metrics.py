"""Simulation metrics: makespan, its lower bound, completion times, busy fractions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..core.demands import Exclusivity, StageKind
from .mockjob import MockJob
from .scenarios import HostSpec

__all__ = ["BusyMeter", "LowerBound", "SimResult", "lower_bound"]


@dataclass(frozen=True, slots=True)
class LowerBound:
    """No schedule can finish before `value` = max(device, cpu, chain), where, per target
    kind (its jobs can only run on hosts serving it): device = profile seconds / devices;
    cpu = core-seconds / cores (a host-exclusive llvm profile holds every core of the
    smallest such host; a cuda profile one core); chain = the longest arrival + job run
    alone with each stage at its most useful core count."""

    device: float
    cpu: float
    chain: float

    @property
    def value(self) -> float:
        """The bound itself."""
        return max(self.device, self.cpu, self.chain)


def lower_bound(hosts: Sequence[HostSpec], jobs: Sequence[MockJob]) -> LowerBound:
    """The makespan lower bound of running `jobs` on `hosts` (failures not counted)."""
    device = cpu = chain = 0.0
    for kind in sorted({m.spec.target_kind for m in jobs}):
        pool = [h for h in hosts if kind in h.target_kinds]
        if not pool:
            continue
        devices = sum(h.gpus for h in pool) if kind == "cuda" else len(pool)
        cores = sum(h.cores for h in pool)
        smallest = min(h.cores for h in pool)
        dev_s = cpu_s = 0.0
        for mock in (m for m in jobs if m.spec.target_kind == kind):
            run = mock.arrival
            for stage, rnd in mock.planned_stages():
                work = mock.work(stage, rnd)
                demand = mock.demands[stage]
                if stage is StageKind.PROFILE:
                    dev_s += work
                    held = smallest if demand.exclusive is Exclusivity.HOST else min(
                        demand.min_cores, smallest)
                    cpu_s += work * held
                    run += work
                else:
                    cpu_s += work
                    run += work / min(demand.max_cores, smallest)
            chain = max(chain, run)
        device = max(device, dev_s / max(devices, 1))
        cpu = max(cpu, cpu_s / cores)
    return LowerBound(device, cpu, chain)


class BusyMeter:
    """Integrates a level over time: `set(now, level)` then `total(now)`."""

    __slots__ = ("area", "level", "since")

    def __init__(self) -> None:
        self.level = 0.0
        self.since = 0.0
        self.area = 0.0

    def set(self, now: float, level: float) -> None:
        """The level changes to `level` at `now`."""
        self.area += self.level * (now - self.since)
        self.level = level
        self.since = now

    def total(self, now: float) -> float:
        """Level-seconds up to `now`."""
        return self.area + self.level * (now - self.since)


@dataclass(frozen=True, slots=True)
class SimResult:
    """What one simulation run measured. Times are simulated seconds; `decisions` counts
    events handled by the core (each a scheduling decision point); `core_seconds` is the
    real time spent inside the core, measured only when the simulator was given a timer."""

    scenario: str
    policy: str
    jobs: int
    hosts: int
    done: int
    failed: int
    cancelled: int
    makespan: float
    lower_bound: float
    mean_completion: float
    device_busy: float
    cpu_busy: float
    contended_profiles: float
    decisions: int
    leases: int
    rejected_results: int
    moves: int
    core_seconds: float = 0.0  # real seconds inside SchedulerState.handle (if timed)

    @property
    def ratio(self) -> float:
        """makespan / lower bound."""
        return self.makespan / self.lower_bound if self.lower_bound > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, with the ratio."""
        return {**asdict(self), "ratio": self.ratio}
