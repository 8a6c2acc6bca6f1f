"""Leases: a stage's grant of concrete resources on a host, fenced by a scheduler-wide epoch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .demands import Exclusivity
from .transitions import HistoryEntry, TransitionTable, check_transition

__all__ = ["LEASE_TRANSITIONS", "Lease", "LeaseState"]


class LeaseState(StrEnum):
    """A lease is active until it is released, revoked or expires; all three are final."""

    ACTIVE = "active"
    RELEASED = "released"
    REVOKED = "revoked"
    EXPIRED = "expired"


LEASE_TRANSITIONS: TransitionTable = {
    # The policy placed a stage: resources are taken from the host and StartStage is sent.
    (None, LeaseState.ACTIVE): "granted",
    # The holder reported StageFinished or StageFailed under this lease: resources come back.
    (LeaseState.ACTIVE, LeaseState.RELEASED): "stage reported a result",
    # The scheduler took it back: its runner was lost or its job was cancelled.
    (LeaseState.ACTIVE, LeaseState.REVOKED): "revoked by the scheduler",
    # No heartbeat from the holder before `expiry`, or a LeaseExpired event.
    (LeaseState.ACTIVE, LeaseState.EXPIRED): "expired",
}


@dataclass(frozen=True, slots=True)
class Lease:
    """A grant of cores, GPUs and memory on one host to one stage, held by one runner.

    `epoch` is a scheduler-wide, strictly increasing fencing number: a result is accepted only
    under the live lease with the same id and epoch. `expiry` is None when leases never expire.
    """

    lease_id: str
    epoch: int
    holder: str
    host_id: str
    job_id: str
    stage_id: str
    core_ids: tuple[int, ...]
    gpu_ids: tuple[int, ...]
    memory_mb: int
    exclusive: Exclusivity
    start: float
    expiry: float | None
    state: LeaseState = LeaseState.ACTIVE
    history: tuple[HistoryEntry, ...] = ()
    paused_since: float | None = None  # paused (SIGSTOP) while a host-exclusive profile runs
    paused_s: float = 0.0  # total time paused before `paused_since`

    @property
    def live(self) -> bool:
        """True while the lease is active."""
        return self.state is LeaseState.ACTIVE

    @property
    def paused(self) -> bool:
        """True while the stage under this lease is stopped for a host-exclusive profile: its
        cores are lent to the profile; its memory (and any GPUs) stay held."""
        return self.paused_since is not None

    @property
    def held_cores(self) -> tuple[int, ...]:
        """The cores this lease holds now: none while paused."""
        return () if self.paused_since is not None else self.core_ids

    def running_s(self, now: float) -> float:
        """Seconds since the grant that the stage was not paused."""
        paused = self.paused_s + (now - self.paused_since if self.paused_since is not None
                                  else 0.0)
        return max(0.0, now - self.start - paused)

    def pause(self, now: float) -> Lease:
        """The lease paused from `now`."""
        return replace(self, paused_since=now)

    def resume(self, now: float) -> Lease:
        """The lease running again from `now`."""
        if self.paused_since is None:
            return self
        return replace(self, paused_since=None,
                       paused_s=self.paused_s + max(0.0, now - self.paused_since))

    def transition(self, new: LeaseState, now: float, reason: str) -> Lease:
        """The lease after moving to `new`; raises InvalidTransition for an edge not allowed."""
        check_transition(LEASE_TRANSITIONS, "lease", self.lease_id, self.state, new, self.history)
        entry = (now, self.state, new, reason)
        return replace(self, state=new, history=(*self.history, entry))

    def extended(self, expiry: float | None) -> Lease:
        """The lease with a later expiry (heartbeat)."""
        return replace(self, expiry=expiry)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        return {
            "lease_id": self.lease_id, "epoch": self.epoch, "holder": self.holder,
            "host_id": self.host_id, "job_id": self.job_id, "stage_id": self.stage_id,
            "core_ids": list(self.core_ids), "gpu_ids": list(self.gpu_ids),
            "memory_mb": self.memory_mb, "exclusive": str(self.exclusive), "start": self.start,
            "expiry": self.expiry, "state": str(self.state),
            "history": [list(h) for h in self.history],
            "paused_since": self.paused_since, "paused_s": self.paused_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lease:
        """Rebuild from `to_dict()` output."""
        return cls(
            lease_id=data["lease_id"], epoch=int(data["epoch"]), holder=data["holder"],
            host_id=data["host_id"], job_id=data["job_id"], stage_id=data["stage_id"],
            core_ids=tuple(data["core_ids"]), gpu_ids=tuple(data["gpu_ids"]),
            memory_mb=int(data["memory_mb"]), exclusive=Exclusivity(data["exclusive"]),
            start=data["start"], expiry=data["expiry"], state=LeaseState(data["state"]),
            history=tuple(tuple(h) for h in data.get("history", ())),
            paused_since=data.get("paused_since"), paused_s=float(data.get("paused_s", 0.0)),
        )
