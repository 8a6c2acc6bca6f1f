"""Runner links: each connected runner's outbox, and the core's commands carried to runners.

`Links.dispatch` turns commands into SchedulerMessages on the right outbox, by command type. A
host-exclusive profile started in the same batch as PauseLeases goes through the pause gate: it
is sent once its runners confirm every paused stage stopped (`gate.PauseGate`). Not thread-safe:
the daemon calls it under its lock.
"""

from __future__ import annotations

import logging
import queue
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import singledispatchmethod
from typing import Any

from proto import tunesched_pb2 as pb
from scheduler.core import Command, PauseLease, ResumeLease, RevokeLease, StartStage
from scheduler.service import convert
from scheduler.service.gate import PauseGate
from scheduler.service.projection import Projection

log = logging.getLogger(__name__)


@dataclass
class RunnerLink:
    """A runner's live connection: its outbox of SchedulerMessages (None closes the stream)
    and when we last heard of it."""

    runner_id: str
    host_id: str
    register: dict[str, Any]
    outbox: queue.Queue = field(default_factory=queue.Queue)
    last_seen: float = 0.0
    connected: bool = True
    foreign_load: float = 0.0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def close(self) -> None:
        self.connected = False
        self.outbox.put(None)


@dataclass
class _Batch:
    """What one dispatch has seen so far: leases paused on a connected runner, to confirm
    before the host-exclusive profile that follows them starts."""

    now: float
    paused: set[str] = field(default_factory=set)


class Links:
    """The connected runners, by id."""

    def __init__(self, projection: Projection, gate: PauseGate,
                 timeout_of: Callable[[str], float]) -> None:
        self.projection = projection
        self.gate = gate
        self.timeout_of = timeout_of  # stage kind -> seconds
        self.by_id: dict[str, RunnerLink] = {}

    def get(self, runner_id: str) -> RunnerLink | None:
        return self.by_id.get(runner_id)

    def connect(self, register: dict[str, Any], now: float) -> RunnerLink:
        """A new link for the runner; an older one of the same runner is closed."""
        old = self.by_id.get(register["runner_id"])
        if old is not None:
            old.close()
        link = RunnerLink(register["runner_id"], register["host_id"], register, last_seen=now)
        self.by_id[link.runner_id] = link
        return link

    def current(self, link: RunnerLink) -> bool:
        """Whether `link` is its runner's live connection (not replaced, not closed)."""
        return self.by_id.get(link.runner_id) is link and link.connected

    def silent(self, now: float, timeout_s: float) -> list[RunnerLink]:
        """Connected links not heard from for `timeout_s`."""
        return [link for link in self.by_id.values()
                if link.connected and now - link.last_seen > timeout_s]

    def close_all(self) -> None:
        for link in self.by_id.values():
            link.outbox.put(None)

    def send(self, runner_id: str, message: pb.SchedulerMessage,
             start: StartStage | None = None) -> bool:
        """Queue `message` for the runner; False if it is not connected (a start then waits
        for its lease to expire; a runner that is gone has nothing to pause or revoke)."""
        link = self.by_id.get(runner_id)
        if link is not None and link.connected:
            link.outbox.put(message)
            return True
        if start is not None:
            log.warning("runner %s is not connected; lease %s will expire", runner_id,
                        start.lease.lease_id)
        return False

    def revoke_stray(self, link: RunnerLink, lease_id: str) -> None:
        """Tell a runner to stop what it runs under a lease the scheduler does not give it."""
        log.warning("runner %s runs a stage under lease %s, which it does not hold: revoking it",
                    link.runner_id, lease_id)
        reason = "the scheduler holds no such lease for this runner"
        self.send(link.runner_id, convert.revoke_message(lease_id, 0, reason))

    def dispatch(self, commands: list[Command], now: float) -> None:
        """Send what each command asks of a runner (other commands concern no runner)."""
        batch = _Batch(now)
        for command in commands:
            self._carry(command, batch)

    @singledispatchmethod
    def _carry(self, command: Any, batch: _Batch) -> None:
        """JobStateChanged, JobRejected, JobWaiting, MoveJob, ResultRejected: nothing to send."""

    @_carry.register
    def _start(self, command: StartStage, batch: _Batch) -> None:
        version = self.projection.jobs[command.job_id].state_version
        message = convert.start_message(command, version, self.timeout_of(command.kind))
        if batch.paused and str(command.lease.exclusive) == "host":
            self.gate.hold(command.lease.lease_id, batch.paused, batch.now,
                           lambda: self.send(command.runner_id, message, command))
            batch.paused = set()
        else:
            self.send(command.runner_id, message, command)

    @_carry.register
    def _revoke(self, command: RevokeLease, batch: _Batch) -> None:
        self.gate.stopped(command.lease_id)  # a paused stage that is killed is stopped
        self.gate.drop(command.lease_id)  # a held profile that is revoked never starts
        lease = self.projection.leases.get(command.lease_id)
        self.send(command.runner_id, convert.revoke_message(
            command.lease_id, lease.epoch if lease is not None else 0, command.reason))

    @_carry.register
    def _pause(self, command: PauseLease, batch: _Batch) -> None:
        if self.send(command.runner_id, convert.pause_message(command)):
            batch.paused.add(command.lease_id)

    @_carry.register
    def _resume(self, command: ResumeLease, batch: _Batch) -> None:
        self.send(command.runner_id, convert.resume_message(command))
