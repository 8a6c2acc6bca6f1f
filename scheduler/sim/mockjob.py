"""MockJob and FakeStageExecutor: tuning jobs with known stage times, no TVM.

Stage times follow docs/design.md section 1 (one 32-candidate MetaSchedule round, measured on a
2-core llvm host) for CPU hosts, and an assumed GPU-host profile (never measured: no GPU has been
available) where search and build are long and profiling is short. A stage's work is fixed
when the job is made (seeded), so every policy faces the same jobs and the lower bound is
policy-independent:

    work (core-seconds) = measured seconds x cores used when measured (search, build: 2;
                          extract, learn, compile: 1)
    duration            = work / min(cores leased, the stage's max_cores)   (CPU stages)
    duration            = device seconds                                    (profile)
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simpletvm.fake_stages import latency_after
from simpletvm.spec import JobSpec

from ..core.commands import StartStage
from ..core.demands import StageDemand, StageKind, job_demands
from ..core.jobs import Job, JobState, next_stage_kind

__all__ = [
    "CPU_HOST_TIMES",
    "GPU_HOST_TIMES",
    "FakeStageExecutor",
    "MockJob",
    "StageOutcome",
    "StageTimes",
    "mock_spec",
]

Range = tuple[float, float]
FINAL = -1  # the round of the final benchmark (the profile stage after compile)


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds per stage of one round, as (low, high) ranges measured on `MEASURED_CORES`.
    Search time depends on the workload: each job draws its own base log-uniformly from
    `search`, then every round varies it by +-25%."""

    extract: Range
    search: Range
    build: Range
    profile: Range
    learn: Range
    compile: Range
    benchmark: Range


MEASURED_CORES: Mapping[StageKind, int] = {
    StageKind.EXTRACT: 1, StageKind.SEARCH: 2, StageKind.BUILD: 2, StageKind.PROFILE: 1,
    StageKind.LEARN: 1, StageKind.COMPILE: 1,
}

# docs/design.md section 1.1: extract 0.2 s; search 1.7-4.1 s (matmul) .. 9.4-28 s (conv2d);
# build 2.7-4.8 s; profile 4.7-6.3 s; learn 0.1-0.35 s (this repository's learn: up to 0.95 s,
# section 1.2). Compile (one core) 0.2-2.1 s and the final benchmark (two models timed 20 times
# for at least 50 ms each) 2.7-3.3 s, section 1.2: zoo models of 1-5 tasks; compile's upper end
# is widened to 4 s for bigger models (an assumption).
CPU_HOST_TIMES = StageTimes(extract=(0.15, 0.25), search=(1.7, 28.0), build=(2.7, 4.8),
                            profile=(4.7, 6.3), learn=(0.1, 0.35), compile=(0.2, 4.0),
                            benchmark=(2.6, 3.3))
# A GPU host (an assumption, never measured): CUDA search spaces are larger and builds go
# through nvcc, while a kernel runs in microseconds, so profiling 32 candidates takes about a
# second. Its final benchmark is timed like a CPU one (20 runs of 50 ms per model): about 3 s.
GPU_HOST_TIMES = StageTimes(extract=(0.2, 0.4), search=(10.0, 30.0), build=(8.0, 16.0),
                            profile=(0.5, 1.5), learn=(0.2, 0.5), compile=(8.0, 18.0),
                            benchmark=(2.6, 3.3))


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What running one stage attempt does: its uncontended duration and either a result
    (for StageFinished) or an error (for StageFailed, reported after half the duration)."""

    seconds: float
    result: Mapping[str, Any] | None
    error: str | None = None


def mock_spec(job_id: str, kind: str = "llvm", **fields: Any) -> JobSpec:
    """The JobSpec of a simulated job: target `{"kind": kind}` (no num-cores: the profile
    takes the default demand), the rest from `fields`."""
    return JobSpec(job_id=job_id, target={"kind": kind}, **fields)


@dataclass
class MockJob:
    """A tuning job with pre-drawn stage work, a latency curve and optional failures.

    fail_rate: chance that any stage attempt fails (decided by hashing job, stage, attempt).
    exhaust_round: search reports `exhausted` in this round (None: never).
    """

    spec: JobSpec
    times: StageTimes = CPU_HOST_TIMES
    seed: int = 0
    arrival: float = 0.0
    fail_rate: float = 0.0
    exhaust_round: int | None = None
    initial_latency_us: float = 1000.0
    final_latency_us: float = 60.0
    cpu_profile_exclusivity: str = "host"
    demands: dict[StageKind, StageDemand] = field(init=False)
    _work: dict[tuple[StageKind, int], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.demands = job_demands(self.spec, self.cpu_profile_exclusivity)
        self._work = self._draw_work()

    @property
    def job_id(self) -> str:
        """The spec's job id."""
        return self.spec.job_id

    def _draw_work(self) -> dict[tuple[StageKind, int], float]:
        rng = random.Random(self.seed)
        t = self.times
        lo, hi = t.search
        search_base = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        rounds = math.ceil(self.spec.trials / self.spec.batch_size)
        work = {(StageKind.EXTRACT, 0): rng.uniform(*t.extract)}
        for r in range(rounds):
            search = min(max(search_base * rng.uniform(0.75, 1.25), lo), hi)
            work[(StageKind.SEARCH, r)] = search * MEASURED_CORES[StageKind.SEARCH]
            work[(StageKind.BUILD, r)] = rng.uniform(*t.build) * MEASURED_CORES[StageKind.BUILD]
            work[(StageKind.PROFILE, r)] = rng.uniform(*t.profile)
            work[(StageKind.LEARN, r)] = rng.uniform(*t.learn)
        work[(StageKind.COMPILE, 0)] = (rng.uniform(*t.compile)
                                        * MEASURED_CORES[StageKind.COMPILE])
        work[(StageKind.PROFILE, FINAL)] = rng.uniform(*t.benchmark)
        return work

    def work(self, kind: StageKind, round_: int) -> float:
        """Core-seconds (device-seconds for profile) of this stage (round FINAL: the final
        benchmark)."""
        if kind in (StageKind.EXTRACT, StageKind.COMPILE):
            return self._work[(kind, 0)]
        return self._work[(kind, round_)]

    def seconds(self, kind: StageKind, round_: int, cores: int) -> float:
        """Uncontended duration of this stage with `cores` cores leased."""
        work = self.work(kind, round_)
        if kind is StageKind.PROFILE:
            return work
        return work / max(1, min(cores, self.demands[kind].max_cores))

    def latency_after(self, trials: int) -> float:
        """Best latency found after `trials` measurements (the fake stages' curve)."""
        return latency_after(trials, self.initial_latency_us, self.final_latency_us)

    def result(self, kind: StageKind, round_: int) -> dict[str, Any]:
        """What the stage reports when it finishes."""
        if kind is StageKind.SEARCH:
            return {"candidates": self.spec.batch_size,
                    "exhausted": self.exhaust_round is not None and round_ >= self.exhaust_round}
        if kind is StageKind.PROFILE and round_ == FINAL:
            return {"final": True, "trials": 0}
        if kind is StageKind.PROFILE:
            done = min(round_ * self.spec.batch_size, self.spec.trials)
            trials = min(self.spec.batch_size, self.spec.trials - done)
            return {"trials": trials, "best_latency_us": self.latency_after(done + trials)}
        return {}

    def fails(self, stage_id: str, attempt: int) -> bool:
        """Whether this attempt fails (deterministic)."""
        if self.fail_rate <= 0.0:
            return False
        key = f"{self.seed}:{stage_id}:{attempt}".encode()
        return zlib.crc32(key) / 4294967296.0 < self.fail_rate

    def planned_stages(self) -> list[tuple[StageKind, int]]:
        """The (kind, round) stages the core will run for this job if nothing fails, using
        the core's own round logic on this job's results."""
        job = Job(self.spec, 0, 0.0, self.demands)
        kind: StageKind | None = StageKind.EXTRACT
        plan = []
        while kind is not None:
            final = kind is StageKind.PROFILE and job.state is JobState.FINISHING
            round_ = FINAL if final else job.round
            plan.append((kind, round_))
            kind = next_stage_kind(job, kind, self.result(kind, round_))
            if kind is StageKind.COMPILE:
                job.state = JobState.FINISHING
        return plan


class FakeStageExecutor:
    """Answers StartStage commands from MockJobs: duration and result or error. Ships in the
    package so daemon/runner tests can run stages without TVM."""

    def __init__(self, jobs: Mapping[str, MockJob]) -> None:
        self.jobs = jobs
        self.compiling: set[str] = set()  # jobs that reached compile: a profile is final

    def run(self, start: StartStage) -> StageOutcome:
        """The outcome of running `start` uncontended with its lease's cores."""
        mock = self.jobs[start.job_id]
        kind = StageKind(start.kind)
        if kind is StageKind.COMPILE:
            self.compiling.add(start.job_id)
        final = kind is StageKind.PROFILE and start.job_id in self.compiling
        round_ = FINAL if final else start.round
        seconds = mock.seconds(kind, round_, len(start.lease.core_ids))
        if mock.fails(start.stage_id, start.attempt):
            return StageOutcome(seconds / 2, None, f"mock {kind} failure")
        return StageOutcome(seconds, mock.result(kind, round_))
