"""Pausing a host for a host-exclusive profile: which leases stop, which resume, and how one
batch of commands folds a resume into the next pause.

A host-exclusive CPU profile need not wait for the host's long searches and builds to end:
their leases are paused (their cores go back to the host, the profile takes them) and resumed
when it ends. Functions over the `SchedulerState`; `state.py` calls them while handling events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .commands import Command, PauseLease, ResumeLease
from .demands import StageKind
from .errors import SchedulerError

if TYPE_CHECKING:
    from .jobs import Job
    from .resources import Host
    from .state import SchedulerState

__all__ = ["can_pause_host", "coalesce", "pause_host", "resume_host"]


def can_pause_host(state: SchedulerState, host: Host) -> bool:
    """True if a host-exclusive profile may start on `host` now by pausing every lease there:
    pausing is on, the policy controls resources, and no lease on the host is a profile (a
    measurement is never paused) or paused already."""
    if not (state.config.pause_for_profile and state.policy.controls_resources):
        return False
    for lease_id in host.leases:
        lease = state.leases[lease_id]
        if lease.paused or state.jobs[lease.job_id].stage.kind is StageKind.PROFILE:
            return False
    return True


def pause_host(state: SchedulerState, host: Host, job: Job, now: float,
               out: list[Command]) -> None:
    """Pause every lease on `host` for `job`'s host-exclusive profile: their cores go back to
    the host (the profile takes them); PauseLease goes out before the StartStage."""
    if not can_pause_host(state, host):
        raise SchedulerError(f"policy {state.policy.name} placed a host-exclusive profile "
                             f"on {host.host_id}, whose leases cannot be paused")
    reason = f"host-exclusive profile of {job.job_id}"
    for lease_id in host.leases:
        lease = state.leases[lease_id]
        host.give_back(lease.core_ids, (), 0)
        state.leases[lease_id] = lease.pause(now)
        out.append(PauseLease(lease_id, lease.epoch, lease.holder, reason, state.cause))


def resume_host(state: SchedulerState, host: Host, now: float, out: list[Command]) -> bool:
    """The host-exclusive lease ended: every paused lease on `host` takes its cores back and
    runs on. True if any ResumeLease went out."""
    resumed = False
    for lease_id in host.leases:
        lease = state.leases[lease_id]
        if lease.paused:
            host.take(lease.core_ids, (), 0)
            state.leases[lease_id] = lease.resume(now)
            out.append(ResumeLease(lease_id, lease.epoch, lease.holder, state.cause))
            resumed = True
    return resumed


def coalesce(commands: list[Command]) -> list[Command]:
    """Drop a ResumeLease and the PauseLease of the same lease that follows it in one batch:
    one profile ended and the next took the host, so the stage just stays paused."""
    resumed: dict[str, int] = {}
    drop: set[int] = set()
    for i, command in enumerate(commands):
        if isinstance(command, ResumeLease):
            resumed[command.lease_id] = i
        elif isinstance(command, PauseLease) and command.lease_id in resumed:
            drop.update((resumed.pop(command.lease_id), i))
    return [c for i, c in enumerate(commands) if i not in drop] if drop else commands
