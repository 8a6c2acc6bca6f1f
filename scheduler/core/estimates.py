"""Running averages of stage work, for the predictive policy.

Work is core-seconds for CPU stages (duration x cores held) and device-seconds for profile.
Each job keeps its own averages; a global average per (target kind, stage kind) stands in
until the job has its own, and priors from docs/design.md section 1 stand in until anything ran
(section 1.3 says which are measured: the llvm search is a middle guess over workloads, and
every cuda one an assumption: no GPU has been measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .demands import StageDemand, StageKind
from .jobs import Job, JobState

__all__ = ["BENCHMARK", "PRIOR_WORK", "Estimates"]

# docs/design.md section 1, one 32-candidate round on 2 cores (search and build use both).
# Compile (one core) and the final benchmark (the profile stage after compile: two models, each
# 20 runs of at least 50 ms) were measured apart in section 1.2: compile 0.2-2.1 s for zoo models
# of 1-5 tasks (bigger models take longer, hence 2.0), benchmark 2.7-3.3 s. The cuda rows are
# assumptions, never measured.
PRIOR_WORK: Mapping[tuple[str, str], float] = {
    ("llvm", "extract"): 0.2, ("llvm", "search"): 12.0, ("llvm", "build"): 7.5,
    ("llvm", "profile"): 5.6, ("llvm", "learn"): 0.25, ("llvm", "compile"): 2.0,
    ("llvm", "benchmark"): 3.0,
    ("cuda", "extract"): 0.3, ("cuda", "search"): 40.0, ("cuda", "build"): 24.0,
    ("cuda", "profile"): 1.0, ("cuda", "learn"): 0.35, ("cuda", "compile"): 13.0,
    ("cuda", "benchmark"): 3.0,
}
BENCHMARK = "benchmark"  # the key of the final benchmark's work (a profile, kept apart)

_CPU_ROUND = (StageKind.SEARCH, StageKind.BUILD, StageKind.LEARN)


class Estimates:
    """Exponential running averages of stage work per job and per target/stage kind."""

    __slots__ = ("alpha", "global_work")

    def __init__(self, alpha: float, global_work: Mapping[str, float] | None = None) -> None:
        self.alpha = alpha
        self.global_work: dict[tuple[str, str], float] = {
            tuple(key.split("/", 1)): value for key, value in (global_work or {}).items()}

    def observe(self, job: Job, kind: StageKind | str, work: float) -> None:
        """Fold one finished stage's work into the job's and the global average."""
        a = self.alpha
        mine = job.est.get(kind)
        job.est[kind] = work if mine is None else a * work + (1 - a) * mine
        key = (job.spec.target_kind, kind)
        old = self.global_work.get(key)
        self.global_work[key] = work if old is None else a * work + (1 - a) * old

    def work(self, job: Job, kind: StageKind | str) -> float:
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
        each at its max cores), its profiles, then its compile and final benchmark."""
        work = self.work

        def parallel(kind: StageKind) -> int:
            most = job.demands[kind].max_cores
            return most if cores is None else max(1, min(cores, most))

        last = work(job, BENCHMARK)
        if not job.benchmarking:
            last += work(job, StageKind.COMPILE) / parallel(StageKind.COMPILE)
        if job.state is JobState.FINISHING:
            return last
        spec = job.spec
        left = spec.trials - job.trials_done
        rounds = -(-left // spec.batch_size) if left > 0 else 0
        per_round = work(job, StageKind.PROFILE)
        for kind in _CPU_ROUND:
            per_round += work(job, kind) / parallel(kind)
        return rounds * per_round + last

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"alpha": self.alpha,
                "global_work": {f"{t}/{k}": v for (t, k), v in self.global_work.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimates:
        """Rebuild from `to_dict()` output."""
        return cls(float(data["alpha"]), data["global_work"])
