"""Numbers over stage spans: busy fractions, contended profiling, the makespan lower bound."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from client.timeline import running_windows, window

Interval = tuple[float, float]


def _span(row: dict[str, Any]) -> Interval:
    return float(row["granted_at"]), float(row.get("ended_at") or row["granted_at"])


def union_length(intervals: Iterable[Interval]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _overlap(interval: Interval, others: list[Interval]) -> float:
    a, b = interval
    clipped = [(max(a, x), min(b, y)) for x, y in others if x < b and y > a]
    return union_length(clipped)


def contended_profile_fraction(spans: list[dict[str, Any]]) -> float:
    """Share of profiling time (the profile process's own window) during which another stage
    ran on the machine (a paused stage does not run)."""
    profiles = [(i, window(r)) for i, r in enumerate(spans) if r["stage"] == "profile"]
    total = sum(b - a for _, (a, b) in profiles)
    if total <= 0:
        return 0.0
    contended = sum(_overlap(iv, [w for j, r in enumerate(spans) if j != i
                                  for w in running_windows(r)])
                    for i, iv in profiles)
    return contended / total


def device_busy(spans: list[dict[str, Any]], makespan: float) -> float:
    """Share of the makespan in which some job was profiling (the device is the CPU here)."""
    return union_length(_span(r) for r in spans if r["stage"] == "profile") / makespan


@dataclass(frozen=True)
class LowerBound:
    """max(exclusive device seconds / devices, CPU seconds / cores, longest job chain)."""

    device_s: float
    cpu_s: float
    chain_s: float
    devices: int
    cores: int

    @property
    def value(self) -> float:
        return max(self.device_s / self.devices, self.cpu_s / self.cores, self.chain_s)

    @classmethod
    def of(cls, spans: list[dict[str, Any]], cores: int, devices: int = 1) -> LowerBound:
        """From uncontended spans (each job alone): they carry cpu_s per stage."""
        chains: dict[str, float] = defaultdict(float)
        device = cpu = 0.0
        for row in spans:
            a, b = _span(row)
            chains[row["job_id"]] += b - a
            cpu += float(row.get("cpu_s") or 0.0)
            if row["stage"] == "profile":
                device += b - a
        return cls(device, cpu, max(chains.values(), default=0.0), devices, cores)
