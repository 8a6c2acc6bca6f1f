"""PauseGate: a host-exclusive profile starts only once the stages paused for it are stopped.

The core sends PauseLease to the runners holding the host's CPU stages, then StartStage for the
profile, possibly to another runner on another stream: nothing orders the two. The gate holds
the profile's start until every paused lease is confirmed stopped by its runner (Paused), or
has ended (result, revoke), or `timeout_s` passes (a runner that never answers: logged, and
the profile starts anyway rather than wait forever).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PauseGate"]

Send = Callable[[], None]


@dataclass
class _Held:
    send: Send
    deadline: float
    waiting: set[str] = field(default_factory=set)


class PauseGate:
    """Held profile starts, keyed by the profile's lease id. Not thread-safe: the daemon calls
    it under its lock."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._held: dict[str, _Held] = {}
        self._for: dict[str, str] = {}  # paused lease id -> profile lease id

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, profile_lease: str, paused: set[str], now: float, send: Send) -> None:
        """Call `send` once every lease in `paused` is confirmed stopped (now, if none)."""
        if not paused:
            send()
            return
        self._held[profile_lease] = _Held(send, now + self.timeout_s, set(paused))
        for lease_id in paused:
            self._for[lease_id] = profile_lease

    def stopped(self, lease_id: str) -> None:
        """`lease_id` is stopped or gone: release a profile that waited only for it."""
        profile = self._for.pop(lease_id, None)
        held = self._held.get(profile) if profile is not None else None
        if held is None:
            return
        held.waiting.discard(lease_id)
        if not held.waiting:
            del self._held[profile]
            held.send()

    def drop(self, profile_lease: str) -> None:
        """The held profile's own lease ended before it started: never send it."""
        held = self._held.pop(profile_lease, None)
        if held is not None:
            for lease_id in held.waiting:
                self._for.pop(lease_id, None)

    def overdue(self, now: float) -> list[tuple[str, set[str]]]:
        """Send the starts whose time is up; returns (profile lease, leases never confirmed)."""
        late = [(p, h) for p, h in self._held.items() if h.deadline <= now]
        for profile, held in late:
            self.drop(profile)
            held.send()
        return [(p, h.waiting) for p, h in late]
