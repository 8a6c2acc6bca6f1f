"""DaemonConfig: the one settings object of a daemon process (built by the CLI from flags)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scheduler.core import SchedulerConfig, StageKind
from scheduler.service.auth import Auth

# Seconds a stage may run before its runner kills it (a failed attempt); `--stage-timeout`.
STAGE_TIMEOUTS_S: dict[str, float] = {
    "extract": 900.0, "search": 3600.0, "build": 3600.0, "profile": 3600.0, "learn": 900.0,
    "compile": 3600.0}
assert set(STAGE_TIMEOUTS_S) == {str(kind) for kind in StageKind}

MAX_MODEL_BYTES = 512 * 1024 * 1024  # the default --max-model-mb


@dataclass
class DaemonConfig:
    """Settings of one daemon process. `core` holds everything the scheduling core decides
    by (policy, lease TTL, exclusivity, foreign load threshold, ...), with its defaults."""

    state_path: Path
    core: SchedulerConfig = field(default_factory=SchedulerConfig)
    heartbeat_interval_s: float = 2.0
    runner_timeout_s: float = 15.0
    tick_s: float = 0.5
    # a snapshot after this many logged events, or 2 per job the core holds if more: a
    # snapshot costs time in proportion to the jobs (70 ms under the lock at 2,000), so
    # its cost per event stays flat and a restart replays at most that many events
    snapshot_every: int = 500
    stage_timeouts_s: dict[str, float] = field(default_factory=lambda: dict(STAGE_TIMEOUTS_S))
    max_model_bytes: int = MAX_MODEL_BYTES  # an uploaded model over this: RESOURCE_EXHAUSTED
    records_scope: str = "shared"  # tuning memory: "shared" by every user, or each "user"'s
    records_keep: int = 32  # records kept per workload and target key (the best)
    auth: Auth = field(default_factory=Auth)
    clock: Callable[[], float] = time.time

    def stage_timeout(self, kind: str) -> float:
        return self.stage_timeouts_s.get(kind, STAGE_TIMEOUTS_S["search"])

    def records_scope_of(self, user: str) -> str:
        """The scope a user's records go to and come from ("" when shared)."""
        return user if self.records_scope == "user" else ""
