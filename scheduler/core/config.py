"""SchedulerConfig: the one validated settings object the core is built with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["SchedulerConfig"]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Settings of one scheduler core. All times are seconds.

    policy: registered policy name (see `get_policy`); policy_options are passed to its factory.
    lease_ttl_s: a lease expires this long after its grant or its holder's last heartbeat;
        None: leases never expire (the simulator without heartbeats).
    max_stage_retries: a failed stage is retried this many times, then its job fails.
    foreign_load_threshold: no profile lease on a host whose foreign load is above this.
    cpu_profile_exclusivity: "host" (an llvm profile owns the whole host) or "cores".
    pause_for_profile: a host-exclusive profile does not wait for the host's CPU stages to end:
        they are paused (SIGSTOP) while it runs and resumed after. False: it waits (drains).
    jobs_per_host: cap on jobs placed on one host at once; None lets the policy choose.
    aging_per_s: priority levels a waiting job or stage gains per second (no starvation).
    fair_share_weight: priority levels a user loses per unit of excess share of leased
        core-seconds (usage share minus 1/active users).
    gpu_core_weight: one GPU-second counts as this many core-seconds in fair share.
    estimate_alpha: weight of the newest observation in stage-time running averages.
    demand_overrides: target kind -> stage kind -> StageDemand fields.
    """

    policy: str = "interleaved"
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    lease_ttl_s: float | None = 30.0
    max_stage_retries: int = 2
    foreign_load_threshold: float = 0.25
    cpu_profile_exclusivity: str = "host"
    pause_for_profile: bool = True
    jobs_per_host: int | None = None
    aging_per_s: float = 1.0 / 300.0
    fair_share_weight: float = 1.0
    gpu_core_weight: float = 4.0
    estimate_alpha: float = 0.3
    demand_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.lease_ttl_s is not None and not self.lease_ttl_s > 0:
            problems.append("lease_ttl_s must be > 0 or None")
        if self.max_stage_retries < 0:
            problems.append("max_stage_retries must be >= 0")
        if not 0.0 <= self.foreign_load_threshold <= 1.0:
            problems.append("foreign_load_threshold must be in [0, 1]")
        if self.cpu_profile_exclusivity not in ("host", "cores"):
            problems.append("cpu_profile_exclusivity must be 'host' or 'cores'")
        if self.jobs_per_host is not None and self.jobs_per_host < 1:
            problems.append("jobs_per_host must be >= 1 or None")
        if self.aging_per_s < 0 or self.fair_share_weight < 0 or self.gpu_core_weight < 0:
            problems.append("aging_per_s, fair_share_weight, gpu_core_weight must be >= 0")
        if not 0.0 < self.estimate_alpha <= 1.0:
            problems.append("estimate_alpha must be in (0, 1]")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchedulerConfig:
        """Rebuild from `to_dict()` output; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        return cls(**data)
