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

from simpletvm.api import SimpleTVM
from simpletvm.driver import create_job, drive
from simpletvm.executor import StageExecutor, StageOutcome
from simpletvm.jobdir import JobDir
from simpletvm.spec import JobSpec


@dataclass(frozen=True)
class BenchJob:
    """One tuning job of the evaluation: a zoo model or an ONNX file, with a trial budget."""

    name: str
    model: str  # a zoo model's name, or a path to an .onnx file
    trials: int
    batch: int
    seed: int = 0
    shape: list[int] | None = None  # a zoo model's input shape; None: the zoo's default
    replay: str = ""  # a finished job directory whose measured candidates this job measures
    shapes: dict[str, list[int]] | None = None  # an ONNX file's input shapes, by input name

    @property
    def is_file(self) -> bool:
        return self.model.endswith(".onnx")

    @property
    def input_shapes(self) -> dict[str, list[int]] | None:
        if self.is_file:
            return self.shapes
        return {"x": list(self.shape)} if self.shape else None

    def spec(self, target: dict[str, Any]) -> JobSpec:
        model = Path(self.model).name if self.is_file else f"zoo:{self.model}"
        return JobSpec(name=self.name, target=target, trials=self.trials, batch_size=self.batch,
                       model=model, seed=self.seed, input_shapes=self.input_shapes,
                       replay=self.replay)

    def onnx_bytes(self) -> bytes | None:
        """The ONNX file's bytes (None for a zoo model: the job directory builds it)."""
        return Path(self.model).read_bytes() if self.is_file else None

    def load(self) -> SimpleTVM:
        """The model, for compiling it outside the ways (final latencies)."""
        if self.is_file:
            return SimpleTVM.from_onnx(self.model, self.input_shapes)
        return SimpleTVM.from_zoo(self.model, self.shape)

    def create(self, root: Path, target: dict[str, Any]) -> Path:
        """A fresh job directory of this job under `root`; its path."""
        return create_job(root / self.name, self.spec(target), self.onnx_bytes()).root


def parse_jobs(text: str, trials: int, batch: int) -> list[BenchJob]:
    """Comma-separated jobs: zoo models with an optional input shape (`matmul:64x256`,
    `conv2d`) and ONNX files with their input shapes by name (`path/m.onnx:x=1,3,32,32`, more
    inputs after more colons: `m.onnx:a=1,8:b=8,4`)."""
    items: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if token.isdigit() and items and ".onnx:" in items[-1]:
            items[-1] += f",{token}"  # a dimension of the ONNX input before it
        else:
            items.append(token)
    jobs = []
    for item in items:
        model, _, shape = item.partition(":")
        if model.endswith(".onnx"):
            jobs.append(_onnx_job(item, model, shape, trials, batch))
            continue
        try:
            dims = [int(d) for d in shape.split("x")] if shape else None
        except ValueError:
            raise SystemExit(f"--jobs: bad shape {shape!r} in {item!r}: write it like 64x256") \
                from None
        jobs.append(BenchJob(model, model, trials, batch, shape=dims))
    return jobs


def _onnx_job(item: str, path: str, shapes: str, trials: int, batch: int) -> BenchJob:
    if not Path(path).is_file():
        raise SystemExit(f"--jobs: no ONNX file {path!r} (in {item!r})")
    named: dict[str, list[int]] = {}
    for part in filter(None, shapes.split(":")):
        name, _, dims = part.partition("=")
        try:
            named[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise SystemExit(f"--jobs: bad input shape {part!r} in {item!r}: write it like "
                             "x=1,3,32,32") from None
        if not name:
            raise SystemExit(f"--jobs: input shape {part!r} in {item!r} needs the input's name")
    return BenchJob(Path(path).stem, path, trials, batch, shapes=named or None)


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
    """Each job alone on every core, one after another (the stages in one warm executor,
    warmed before the clock starts, as tunesched's runners warm before they register)."""
    executor = StageExecutor()
    executor.warm()
    spans: list[dict[str, Any]] = []
    dirs, errors = {}, {}
    with CpuMeter(cores) as meter:
        started = time.time()
        for job in jobs:
            jd = JobDir(job.create(root, target))
            dirs[job.name] = jd.root
            try:
                drive(jd, executor, cores,
                      on_stage=lambda _s, _r, o, name=job.name: spans.append(span_row(name, o)))
            except Exception as exc:  # a failed job is reported, the others still run
                errors[job.name] = f"{type(exc).__name__}: {exc}"
        finished = time.time()
    return WayRun("sequential", started, finished, meter.busy, dirs, spans, errors)


def _drive_alone(job_root: str, cores: list[int], spans_path: str, ready: Any,
                 go: Any) -> None:
    """Body of one uncontrolled job: its own process, executor and fork server, warmed before
    the clock starts (`ready` released), running once `go` is set."""
    spans: list[dict[str, Any]] = []
    name = Path(job_root).name
    error = ""
    executor = StageExecutor()
    executor.warm()
    ready.release()
    go.wait()
    try:
        drive(JobDir(job_root), executor, cores,
              on_stage=lambda _s, _r, o: spans.append(span_row(name, o)))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    Path(spans_path).write_text(json.dumps({"spans": spans, "error": error}))


def run_uncontrolled(jobs: list[BenchJob], root: Path, target: dict[str, Any],
                     cores: list[int]) -> WayRun:
    """Every job at once, each an independent tuning process on every core, no coordination."""
    ctx = multiprocessing.get_context("spawn")
    dirs = {job.name: job.create(root, target) for job in jobs}
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_drive_alone,
                         args=(str(dirs[j.name]), cores, str(root / f"{j.name}.spans.json"),
                               ready, go))
             for j in jobs]
    for p in procs:
        p.start()
    for _ in procs:  # every process has imported TVM and warmed its executor
        if not ready.acquire(timeout=600):
            raise RuntimeError("an uncontrolled job's process did not warm up in 10 min")
    with CpuMeter(cores) as meter:
        started = time.time()
        go.set()
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
    """Every job submitted at once to an embedded daemon with `runners` agents on this host
    (agents warm their executors before they register, so before the clock starts)."""
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
            infos = [client.submit(j.spec(target), j.onnx_bytes() or b"") for j in jobs]
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
