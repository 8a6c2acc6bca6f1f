"""The three ways to tune the same jobs on one machine: one after another, all at once without a
scheduler, and through tunesched. Each returns a `WayRun`: its span, every stage's interval and
the job directories it left behind (all three use the same stage code, so only the coordination
differs)."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from simpletvm.driver import create_job, drive
from simpletvm.executor import StageExecutor, StageOutcome
from simpletvm.spec import JobSpec


@dataclass(frozen=True)
class BenchJob:
    """One tuning job of the evaluation: a zoo model with a trial budget."""

    name: str
    model: str
    trials: int
    batch: int
    seed: int = 0
    shape: list[int] | None = None  # the model's input shape; None: the zoo's default
    replay: str = ""  # a finished job directory whose measured candidates this job measures

    @property
    def input_shapes(self) -> dict[str, list[int]] | None:
        return {"x": list(self.shape)} if self.shape else None

    def spec(self, target: dict[str, Any]) -> JobSpec:
        return JobSpec(name=self.name, target=target, trials=self.trials, batch_size=self.batch,
                       model=f"zoo:{self.model}", seed=self.seed, input_shapes=self.input_shapes,
                       replay=self.replay)


def parse_jobs(text: str, trials: int, batch: int) -> list[BenchJob]:
    """`matmul:64x256,conv2d,mlp:32x256`: zoo models, each with an optional input shape."""
    jobs = []
    for item in text.split(","):
        model, _, shape = item.strip().partition(":")
        try:
            dims = [int(d) for d in shape.split("x")] if shape else None
        except ValueError:
            raise SystemExit(f"--jobs: bad shape {shape!r} in {item!r}: write it like 64x256") \
                from None
        jobs.append(BenchJob(model, model, trials, batch, shape=dims))
    return jobs


@dataclass
class WayRun:
    """What one way did: wall span, CPU busy fraction, stage spans (as lease-timeline rows)."""

    way: str
    started: float
    finished: float
    cpu_busy: float
    jobs: dict[str, Path]
    spans: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return self.finished - self.started


class CpuMeter:
    """Busy fraction of the given CPUs between enter and exit (every process, not just ours)."""

    def __init__(self, cores: list[int]) -> None:
        self.cores = cores
        self.busy = 0.0

    def _sample(self) -> tuple[float, float]:
        times = psutil.cpu_times(percpu=True)
        total = idle = 0.0
        for core in self.cores:
            t = times[core]
            total += sum(t)
            idle += t.idle + getattr(t, "iowait", 0.0)
        return total, idle

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *_exc: object) -> None:
        total, idle = self._sample()
        d_total, d_idle = total - self._start[0], idle - self._start[1]
        self.busy = 1.0 - d_idle / d_total if d_total > 0 else 0.0


def span_row(job: str, outcome: StageOutcome, host: str = "local") -> dict[str, Any]:
    """A stage outcome as a row shaped like the daemon's lease timeline."""
    return {"job_id": job, "stage": outcome.stage, "granted_at": outcome.started,
            "ended_at": outcome.finished, "cores": outcome.cores, "gpus": [],
            "host_id": host, "cpu_s": outcome.cpu_s, "state": outcome.status}


def run_sequential(jobs: list[BenchJob], root: Path, target: dict[str, Any],
                   cores: list[int]) -> WayRun:
    """Each job alone on every core, one after another (the stages in one warm executor)."""
    executor = StageExecutor()
    spans: list[dict[str, Any]] = []
    dirs, errors = {}, {}
    with CpuMeter(cores) as meter:
        started = time.time()
        for job in jobs:
            jd = create_job(root / job.name, job.spec(target))
            dirs[job.name] = jd.root
            try:
                drive(jd, executor, cores,
                      on_stage=lambda _s, _r, o, name=job.name: spans.append(span_row(name, o)))
            except Exception as exc:  # a failed job is reported, the others still run
                errors[job.name] = f"{type(exc).__name__}: {exc}"
        finished = time.time()
    return WayRun("sequential", started, finished, meter.busy, dirs, spans, errors)


def _drive_alone(job_root: str, cores: list[int], spans_path: str) -> None:
    """Body of one uncontrolled job: its own process, executor and fork server."""
    from simpletvm.jobdir import JobDir

    spans: list[dict[str, Any]] = []
    name = Path(job_root).name
    error = ""
    try:
        drive(JobDir(job_root), StageExecutor(), cores,
              on_stage=lambda _s, _r, o: spans.append(span_row(name, o)))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    Path(spans_path).write_text(json.dumps({"spans": spans, "error": error}))


def run_uncontrolled(jobs: list[BenchJob], root: Path, target: dict[str, Any],
                     cores: list[int]) -> WayRun:
    """Every job at once, each an independent tuning process on every core, no coordination."""
    ctx = multiprocessing.get_context("spawn")
    dirs = {job.name: create_job(root / job.name, job.spec(target)).root for job in jobs}
    with CpuMeter(cores) as meter:
        started = time.time()
        procs = [ctx.Process(target=_drive_alone,
                             args=(str(dirs[j.name]), cores, str(root / f"{j.name}.spans.json")))
                 for j in jobs]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        finished = time.time()
    spans, errors = [], {}
    for job in jobs:
        path = root / f"{job.name}.spans.json"
        data = json.loads(path.read_text()) if path.exists() else {"spans": [],
                                                                     "error": "process died"}
        spans += data["spans"]
        if data["error"]:
            errors[job.name] = data["error"]
    return WayRun("uncontrolled", started, finished, meter.busy, dirs, spans, errors)


def run_tunesched(jobs: list[BenchJob], root: Path, target: dict[str, Any], cores: list[int],
                  runners: int, exclusivity: str = "host", way: str = "tunesched",
                  policy: str = "predictive", jobs_per_host: int | None = None,
                  on_poll: Callable[[list[Any]], None] | None = None) -> WayRun:
    """Every job submitted at once to an embedded daemon with `runners` agents on this host."""
    from scheduler.core import TERMINAL_JOB_STATES, SchedulerConfig
    from scheduler.service.config import DaemonConfig
    from scheduler.testing import LocalCluster

    config = DaemonConfig(root / "state" / "scheduler.db", core=SchedulerConfig(
        policy=policy, cpu_profile_exclusivity=exclusivity, jobs_per_host=jobs_per_host,
        foreign_load_threshold=1.0))  # the only load here is our own
    with LocalCluster(root, {"bench-host": runners}, cores=cores, config=config) as cluster:
        client = cluster.client
        with CpuMeter(cores) as meter:
            started = time.time()
            infos = [client.submit(j.spec(target)) for j in jobs]
            while True:
                states = [client.get(i.job_id) for i in infos]
                if on_poll:
                    on_poll(states)
                if all(s.state in TERMINAL_JOB_STATES for s in states):
                    break
                time.sleep(0.5)  # polling the API for the end, not synchronisation
            ends = [s.finished_at for s in states]
            finished = max(ends) if all(ends) else time.time()
        names = {i.job_id: i.name for i in infos}
        spans = [{**row, "job_id": names.get(row["job_id"], row["job_id"])}
                 for row in client.timeline()]
    dirs = {i.name: cluster.work_dir("bench-host") / "jobs" / i.job_id for i in infos}
    errors = {s.name: f"{s.state}: {s.error}" for s in states if s.state != "done"}
    return WayRun(way, started, finished, meter.busy, dirs, spans, errors)
