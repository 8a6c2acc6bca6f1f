"""Running averages of stage work, for the predictive policy.

Work is core-seconds for CPU stages (duration x cores held) and device-seconds for profile.
Each job keeps its own averages; a global average per (target kind, stage kind) stands in
until the job has its own, and priors from docs/design.md section 1 stand in until anything ran
(section 1.3 says which are measured: the llvm compile is an assumption, the llvm search a
middle guess over workloads, and every cuda one an assumption: no GPU has been measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .demands import StageDemand, StageKind
from .jobs import Job

__all__ = ["PRIOR_WORK", "Estimates"]

# docs/design.md section 1, one 32-candidate round on 2 cores (search and build use both);
# compile and the cuda rows are assumptions, never measured.
PRIOR_WORK: Mapping[tuple[str, str], float] = {
    ("llvm", "extract"): 0.2, ("llvm", "search"): 12.0, ("llvm", "build"): 7.5,
    ("llvm", "profile"): 5.6, ("llvm", "learn"): 0.25, ("llvm", "compile"): 20.0,
    ("cuda", "extract"): 0.3, ("cuda", "search"): 40.0, ("cuda", "build"): 24.0,
    ("cuda", "profile"): 1.0, ("cuda", "learn"): 0.35, ("cuda", "compile"): 30.0,
}

_CPU_ROUND = (StageKind.SEARCH, StageKind.BUILD, StageKind.LEARN)


class Estimates:
    """Exponential running averages of stage work per job and per target/stage kind."""

    __slots__ = ("alpha", "global_work")

    def __init__(self, alpha: float, global_work: Mapping[str, float] | None = None) -> None:
        self.alpha = alpha
        self.global_work: dict[tuple[str, str], float] = {
            tuple(key.split("/", 1)): value for key, value in (global_work or {}).items()}

    def observe(self, job: Job, kind: StageKind, work: float) -> None:
        """Fold one finished stage's work into the job's and the global average."""
        a = self.alpha
        mine = job.est.get(kind)
        job.est[kind] = work if mine is None else a * work + (1 - a) * mine
        key = (job.spec.target_kind, kind)
        old = self.global_work.get(key)
        self.global_work[key] = work if old is None else a * work + (1 - a) * old

    def work(self, job: Job, kind: StageKind) -> float:
        """Expected work of `job`'s next `kind` stage."""
        mine = job.est.get(kind)
        if mine is not None:
            return mine
        key = (job.spec.target_kind, kind)
        found = self.global_work.get(key)
        return found if found is not None else PRIOR_WORK.get(key, 1.0)

    def duration(self, job: Job, kind: StageKind, cores: int) -> float:
        """Expected seconds for `job`'s `kind` stage run with `cores` cores."""
        work = self.work(job, kind)
        if kind is StageKind.PROFILE:
            return work
        demand: StageDemand = job.demands[kind]
        return work / max(1, min(cores, demand.max_cores))

    def remaining(self, job: Job, cores: int | None = None) -> float:
        """Expected seconds left for `job` on its own: its CPU stages on `cores` cores (None:
        each at its max cores), its profiles, then its compile."""
        spec = job.spec
        left = spec.trials - job.trials_done
        rounds = -(-left // spec.batch_size) if left > 0 else 0
        demands = job.demands
        work = self.work

        def parallel(kind: StageKind) -> int:
            most = demands[kind].max_cores
            return most if cores is None else max(1, min(cores, most))

        per_round = work(job, StageKind.PROFILE)
        for kind in _CPU_ROUND:
            per_round += work(job, kind) / parallel(kind)
        return rounds * per_round + work(job, StageKind.COMPILE) / parallel(StageKind.COMPILE)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"alpha": self.alpha,
                "global_work": {f"{t}/{k}": v for (t, k), v in self.global_work.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimates:
        """Rebuild from `to_dict()` output."""
        return cls(float(data["alpha"]), data["global_work"])
