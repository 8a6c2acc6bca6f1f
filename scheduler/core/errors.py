"""The scheduler core's exceptions, in one tree.

    SchedulerError                 base of everything the core raises on purpose
    ├── ConfigError                a config, demand or job spec value is invalid
    │   └── UnknownPolicy          get_policy() was asked for a name nobody registered
    ├── InvalidTransition          a job/stage/lease state change not in its transition table
    ├── InvariantViolation         validate_state() found the state inconsistent
    └── SnapshotError              restore() was given data it cannot rebuild a state from

Bad input from the outside world (a result under a dead lease, a cancel for an unknown job) is
not an exception: the core answers it with a command (`ResultRejected`, `JobRejected`) or ignores
it with a log line. Exceptions mean a caller's programming error or a bug in the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ConfigError",
    "InvalidTransition",
    "InvariantViolation",
    "SchedulerError",
    "SnapshotError",
    "UnknownPolicy",
]


class SchedulerError(Exception):
    """Base class of all scheduler core errors."""


class ConfigError(SchedulerError, ValueError):
    """A configuration, demand or job spec value is invalid."""


class UnknownPolicy(ConfigError, KeyError):
    """No policy is registered under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown policy"


class InvalidTransition(SchedulerError):
    """A state change that the entity's transition table does not allow.

    Carries the entity kind ("job", "stage", "lease"), its id, the attempted edge and the
    entity's history (a sequence of (time, old, new, reason) tuples) for post-mortems.
    """

    def __init__(
        self, entity: str, entity_id: str, old: Any, new: Any, history: Sequence[tuple] = ()
    ) -> None:
        self.entity = entity
        self.entity_id = entity_id
        self.old = old
        self.new = new
        self.history = tuple(history)
        lines = "".join(f"\n  {h}" for h in self.history)
        super().__init__(f"{entity} {entity_id}: {old} -> {new} is not allowed; history:{lines}")


class InvariantViolation(SchedulerError, AssertionError):
    """validate_state() found broken invariants; `problems` lists them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class SnapshotError(SchedulerError, ValueError):
    """A snapshot cannot be restored (wrong version or malformed)."""
