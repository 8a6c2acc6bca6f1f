"""What each stage kind needs from a host, per target kind, and how jobs override it.

Defaults follow docs/design.md section 1 (one 32-candidate round on a 2-core llvm host):
extract and learn take one core; search is CPU-bound and many cores help; build compiles
candidates in parallel; profile owns the device being tuned (a GPU for cuda, the host's cores,
by default the whole host, for llvm); compile is CPU only and single-threaded (measured: its CPU
seconds equal its wall seconds, docs/design.md section 1.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from simpletvm.spec import JobSpec

__all__ = [
    "DEFAULT_DEMANDS",
    "Exclusivity",
    "StageDemand",
    "StageKind",
    "TargetKind",
    "job_demands",
    "resolve_demands",
]


class StageKind(StrEnum):
    """The stages of a tuning job, in the order a round runs them."""

    EXTRACT = "extract"
    SEARCH = "search"
    BUILD = "build"
    PROFILE = "profile"
    LEARN = "learn"
    COMPILE = "compile"


class TargetKind(StrEnum):
    """The kind of device a job tunes for."""

    LLVM = "llvm"
    CUDA = "cuda"


class Exclusivity(StrEnum):
    """What a lease owns alone. NONE: only the cores/GPUs it lists (and only if the policy
    controls resources). CORES: its cores, no sharing even under `shared`. GPU: its GPUs. HOST:
    the whole host; no other lease may exist there while it lives."""

    NONE = "none"
    CORES = "cores"
    GPU = "gpu"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class StageDemand:
    """Resources one stage asks for. Cores are granted between min and max (both clamped to what
    the runner offers); `max_cores` is also the stage's useful parallelism."""

    min_cores: int = 1
    max_cores: int = 1
    gpus: int = 0
    memory_mb: int = 512
    exclusive: Exclusivity = Exclusivity.NONE

    def __post_init__(self) -> None:
        if self.min_cores < 1 or self.max_cores < self.min_cores:
            raise ConfigError(f"bad cores in {self}: need 1 <= min_cores <= max_cores")
        if self.gpus < 0 or self.memory_mb < 0:
            raise ConfigError(f"negative gpus or memory in {self}")
        if not isinstance(self.exclusive, Exclusivity):
            object.__setattr__(self, "exclusive", _exclusivity(self.exclusive))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {**asdict(self), "exclusive": str(self.exclusive)}


def _exclusivity(value: object) -> Exclusivity:
    try:
        return Exclusivity(value)
    except ValueError as exc:
        raise ConfigError(f"unknown exclusivity {value!r}") from exc


_CPU = {
    StageKind.EXTRACT: StageDemand(1, 1, memory_mb=1024),
    StageKind.SEARCH: StageDemand(1, 8, memory_mb=2048),
    StageKind.BUILD: StageDemand(1, 8, memory_mb=2048),
    StageKind.LEARN: StageDemand(1, 1, memory_mb=1024),
    StageKind.COMPILE: StageDemand(1, 1, memory_mb=4096),  # one thread: CPU s = wall s
}

DEFAULT_DEMANDS: Mapping[tuple[TargetKind, StageKind], StageDemand] = {
    **{(TargetKind.LLVM, k): d for k, d in _CPU.items()},
    **{(TargetKind.CUDA, k): d for k, d in _CPU.items()},
    # llvm: the host CPU is the device; min/max cores = the target's num-cores. With exclusivity
    # HOST the lease holds every core the runner offers and the host is otherwise idle.
    (TargetKind.LLVM, StageKind.PROFILE): StageDemand(4, 4, memory_mb=1024,
                                                      exclusive=Exclusivity.HOST),
    # cuda: one GPU alone, plus one core to drive it.
    (TargetKind.CUDA, StageKind.PROFILE): StageDemand(1, 1, gpus=1, memory_mb=1024,
                                                      exclusive=Exclusivity.GPU),
}

_FIELDS = frozenset(StageDemand.__dataclass_fields__)
_STAGE_NAMES = frozenset(str(k) for k in StageKind)
_CPU_PROFILE_MODES = {"host": Exclusivity.HOST, "cores": Exclusivity.CORES}


def _apply(demand: StageDemand, fields: Mapping[str, Any], where: str) -> StageDemand:
    if not fields:
        return demand
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown demand fields {sorted(unknown)}")
    return replace(demand, **fields)


def resolve_demands(
    target_kind: str,
    *,
    cpu_profile_exclusivity: str,
    config_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    job_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[StageKind, StageDemand]:
    """Demands for every stage of a job: defaults, then config overrides (target -> stage ->
    fields), then the llvm profile's exclusivity mode, then the job's own overrides (stage ->
    fields)."""
    try:
        target = TargetKind(target_kind)
    except ValueError as exc:
        raise ConfigError(f"unknown target kind {target_kind!r}") from exc
    if cpu_profile_exclusivity not in _CPU_PROFILE_MODES:
        raise ConfigError(f"cpu_profile_exclusivity must be 'host' or 'cores', "
                          f"not {cpu_profile_exclusivity!r}")
    per_target = (config_overrides or {}).get(target, {})
    job_overrides = job_overrides or {}
    for name in (*per_target, *job_overrides):
        if name not in _STAGE_NAMES:
            raise ConfigError(f"demand override for unknown stage kind {name!r}")
    out: dict[StageKind, StageDemand] = {}
    for kind in StageKind:
        demand = DEFAULT_DEMANDS[(target, kind)]
        demand = _apply(demand, per_target.get(kind, {}), f"config {target}/{kind}")
        mode = _CPU_PROFILE_MODES[cpu_profile_exclusivity]
        if target is TargetKind.LLVM and kind is StageKind.PROFILE and demand.exclusive != mode:
            demand = replace(demand, exclusive=mode)
        out[kind] = _apply(demand, job_overrides.get(kind, {}), f"job {kind}")
    return out


def job_demands(spec: JobSpec, cpu_profile_exclusivity: str,
                config_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                ) -> dict[StageKind, StageDemand]:
    """Demands of every stage of `spec`'s job: `resolve_demands` for its target kind, an llvm
    profile timed on exactly the target's num-cores (core-exclusive mode leaves the rest of the
    host to other stages; host-exclusive mode holds the host either way), then the spec's own
    overrides; the spec's cpu profile exclusivity, if it names one, beats the scheduler's."""
    overrides = {kind: dict(fields) for kind, fields in spec.demand_overrides.items()}
    cores = spec.profile_cores
    if cores:
        overrides["profile"] = {"min_cores": cores, "max_cores": cores,
                                **overrides.get("profile", {})}
    return resolve_demands(
        spec.target_kind,
        cpu_profile_exclusivity=spec.cpu_profile_exclusivity or cpu_profile_exclusivity,
        config_overrides=config_overrides, job_overrides=overrides)
