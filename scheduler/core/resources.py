"""Hosts and runners: concrete core ids, GPU ids and memory, counted once per host.

Several runners may share a host; each offers a subset of the host's cores and GPUs. The host's
resources are the union of what its runners offer, its memory the largest any runner reports.
`core_use`/`gpu_use` count active leases per id: under a resource-controlling policy every count
is 0 or 1; only the `shared` baseline oversubscribes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Host", "Runner"]


@dataclass(slots=True)
class Runner:
    """A runner agent: the cores/GPUs/memory it offers on its host and the targets it serves."""

    runner_id: str
    host_id: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...]
    memory_mb: int
    target_kinds: tuple[str, ...]
    leases: dict[str, None] = field(default_factory=dict)  # active lease ids, in grant order
    core_set: frozenset[int] = field(init=False)
    gpu_set: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        self.cores = tuple(sorted(set(self.cores)))
        self.gpus = tuple(sorted(set(self.gpus)))
        self.target_kinds = tuple(self.target_kinds)
        self.core_set = frozenset(self.cores)
        self.gpu_set = frozenset(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the lease index is rebuilt from leases)."""
        return {
            "runner_id": self.runner_id, "host_id": self.host_id, "cores": list(self.cores),
            "gpus": list(self.gpus), "memory_mb": self.memory_mb,
            "target_kinds": list(self.target_kinds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Runner:
        """Rebuild from `to_dict()` output."""
        return cls(data["runner_id"], data["host_id"], tuple(data["cores"]),
                   tuple(data["gpus"]), int(data["memory_mb"]), tuple(data["target_kinds"]))


@dataclass(slots=True)
class Host:
    """A machine: resources (union over its runners), what is in use, its load and its jobs."""

    host_id: str
    seq: int
    runners: dict[str, Runner] = field(default_factory=dict)
    cores: frozenset[int] = frozenset()
    gpus: frozenset[int] = frozenset()
    memory_mb: int = 0
    target_kinds: frozenset[str] = frozenset()
    core_use: dict[int, int] = field(default_factory=dict)
    gpu_use: dict[int, int] = field(default_factory=dict)
    free_cores: set[int] = field(default_factory=set)
    free_gpus: set[int] = field(default_factory=set)
    used_memory_mb: int = 0
    leases: dict[str, None] = field(default_factory=dict)  # active lease ids on this host
    exclusive_lease: str | None = None  # a HOST-exclusive lease, alone on the host
    foreign_load: float = 0.0
    gpu_util: tuple[float, ...] = ()
    jobs: dict[str, None] = field(default_factory=dict)  # jobs placed here, not yet terminal
    ready: dict[str, None] = field(default_factory=dict)  # placed jobs whose stage is pending

    @property
    def free_memory_mb(self) -> int:
        """Memory not held by leases (may be negative under `shared`)."""
        return self.memory_mb - self.used_memory_mb

    @property
    def alive(self) -> bool:
        """True while at least one runner is attached."""
        return bool(self.runners)

    def recompute_offer(self) -> None:
        """Rebuild cores/GPUs/memory/targets from the attached runners."""
        self.cores = frozenset(c for r in self.runners.values() for c in r.cores)
        self.gpus = frozenset(g for r in self.runners.values() for g in r.gpus)
        self.memory_mb = max((r.memory_mb for r in self.runners.values()), default=0)
        self.target_kinds = frozenset(k for r in self.runners.values() for k in r.target_kinds)
        self.free_cores = {c for c in self.cores if not self.core_use.get(c)}
        self.free_gpus = {g for g in self.gpus if not self.gpu_use.get(g)}

    def take(self, core_ids: Iterable[int], gpu_ids: Iterable[int], memory_mb: int) -> None:
        """Count a new lease's resources as used."""
        core_use, free = self.core_use, self.free_cores
        for c in core_ids:
            core_use[c] = core_use.get(c, 0) + 1
            free.discard(c)
        for g in gpu_ids:
            self.gpu_use[g] = self.gpu_use.get(g, 0) + 1
            self.free_gpus.discard(g)
        self.used_memory_mb += memory_mb

    def give_back(self, core_ids: Iterable[int], gpu_ids: Iterable[int], memory_mb: int) -> None:
        """Return an ended lease's resources."""
        core_use = self.core_use
        for c in core_ids:
            n = core_use[c] - 1
            if n:
                core_use[c] = n
            else:
                del core_use[c]
                if c in self.cores:
                    self.free_cores.add(c)
        for g in gpu_ids:
            n = self.gpu_use[g] - 1
            if n:
                self.gpu_use[g] = n
            else:
                del self.gpu_use[g]
                if g in self.gpus:
                    self.free_gpus.add(g)
        self.used_memory_mb -= memory_mb

    def runners_for(self, target_kind: str) -> list[Runner]:
        """Attached runners that serve `target_kind`, in registration order."""
        return [r for r in self.runners.values() if target_kind in r.target_kinds]

    def can_serve(self, target_kind: str, needs_gpu: bool) -> bool:
        """True if some runner here serves `target_kind` (with a GPU when `needs_gpu`)."""
        return any(target_kind in r.target_kinds and (r.gpus or not needs_gpu)
                   for r in self.runners.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form of what is not derived from runners and leases (job order kept)."""
        return {"host_id": self.host_id, "seq": self.seq, "foreign_load": self.foreign_load,
                "gpu_util": list(self.gpu_util), "jobs": list(self.jobs),
                "ready": list(self.ready)}
