"""Fair share between users and aging: the scalar every policy ranks waiting work by.

score = priority + aging_per_s * seconds waited - fair_share_weight * excess(user), where
excess(user) = the user's share of all leased core-seconds so far minus 1 / (users with live
jobs). A user above their share sinks, one below rises; waiting always raises a job, so no job
starves however low its priority.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .jobs import Job

__all__ = ["AdmissionQueue", "FairShare"]


@dataclass(slots=True)
class FairShare:
    """Leased core-seconds per user, and how many live (non-terminal) jobs each user has."""

    usage: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    active: dict[str, int] = field(default_factory=dict)

    def charge(self, user: str, core_seconds: float) -> None:
        """Add an ended lease's core-seconds to `user`."""
        if core_seconds > 0:
            self.usage[user] = self.usage.get(user, 0.0) + core_seconds
            self.total += core_seconds

    def job_added(self, user: str) -> None:
        """A job of `user` became live."""
        self.active[user] = self.active.get(user, 0) + 1

    def job_ended(self, user: str) -> None:
        """A job of `user` reached a final state."""
        n = self.active[user] - 1
        if n:
            self.active[user] = n
        else:
            del self.active[user]

    def excess(self, user: str) -> float:
        """User's share of usage minus their fair share (0 while nothing was used)."""
        if self.total <= 0.0 or not self.active:
            return 0.0
        return self.usage.get(user, 0.0) / self.total - 1.0 / len(self.active)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (`active` is rebuilt from jobs)."""
        return {"usage": dict(self.usage), "total": self.total}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairShare:
        """Rebuild usage from `to_dict()` output."""
        return cls(dict(data["usage"]), float(data["total"]))


class AdmissionQueue:
    """Jobs waiting for a host, per target kind and user. Within a user the order is static,
    (priority - aging * submitted_at) then submission order, so one heap per user suffices;
    across users `pop_best` compares the heads by full score (fair share moves over time)."""

    __slots__ = ("_aging", "_counts", "_heaps", "_members")

    def __init__(self, aging_per_s: float) -> None:
        self._aging = aging_per_s
        self._heaps: dict[str, dict[str, list[tuple[float, int, str]]]] = {}
        self._members: dict[str, str] = {}  # job id -> target kind
        self._counts: dict[str, int] = {}  # target kind -> waiting jobs

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._members

    def kinds(self) -> list[str]:
        """Target kinds that have waiting jobs, in sorted order."""
        return sorted(k for k, n in self._counts.items() if n)

    def push(self, job: Job) -> None:
        """Queue `job` for placement."""
        spec = job.spec
        key = (self._aging * job.submitted_at - spec.priority, job.seq, spec.job_id)
        users = self._heaps.setdefault(spec.target_kind, {})
        heapq.heappush(users.setdefault(spec.user, []), key)
        self._members[spec.job_id] = spec.target_kind
        self._counts[spec.target_kind] = self._counts.get(spec.target_kind, 0) + 1

    def remove(self, job_id: str) -> None:
        """Forget a job (cancelled); its heap entry is dropped lazily."""
        kind = self._members.pop(job_id, None)
        if kind is not None:
            self._counts[kind] -= 1

    def pop_best(self, kind: str, jobs: Mapping[str, Job], fair: FairShare, weight: float,
                 now: float) -> Job | None:
        """Remove and return the waiting `kind` job with the highest score, or None."""
        users = self._heaps.get(kind)
        if not users:
            return None
        best: tuple[float, int] | None = None
        best_user = ""
        for user in list(users):
            heap = users[user]
            while heap and heap[0][2] not in self._members:
                heapq.heappop(heap)
            if not heap:
                del users[user]
                continue
            key0, seq, _ = heap[0]
            rank = (key0 - self._aging * now + weight * fair.excess(user), seq)
            if best is None or rank < best:
                best, best_user = rank, user
        if best is None:
            return None
        _, _, job_id = heapq.heappop(users[best_user])
        if not users[best_user]:
            del users[best_user]
        del self._members[job_id]
        self._counts[kind] -= 1
        return jobs[job_id]

    def job_ids(self) -> list[str]:
        """Waiting job ids (in insertion order)."""
        return list(self._members)
