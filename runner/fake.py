"""Fake stage execution: every stage sleeps a known time and writes what the real one would.

`SleepExecutor` implements the executor interface `runner.agent.Agent` uses
(`start(StageRequest)` -> a process-like object with `wait()`, `kill()`, `pid`), with no TVM
and no child process: the stage "runs" in the thread that waits on it, for a duration taken
from a table per stage kind (or a callable of the request). At its end it writes into the job
directory exactly what the agent and the daemon read, so the real agent code path (bundle
fetch, state upload after extract/learn, result upload after compile) runs unchanged:

    extract   tasks/index.json (one fake task), progress.json
    search    rounds/rNNNN/candidates.json;           {"task", "candidates", "done"}
    build     rounds/rNNNN/built.json;                {"built", "errors", ...}
    profile   rounds/rNNNN/results.json;              {"measured", "batch_best_us", ...}
    learn     progress.json (trials, rounds=round+1); {"trials", "trials_total", "done", ...}
    compile   result/report.json;                     {"tuned_us", "untuned_us", "speedup"}

Latencies follow a fixed curve (like scheduler.sim.MockJob): 1000 us untuned, approaching
60 us as trials accumulate. Benches and fast tests build agents with `fake_agent()`, which
also replaces the agent's load meter with `ZeroLoad` so that whatever else runs on the test
machine never holds profiles back (the scheduler skips profiles on a loaded host).
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.hostinfo import HostInfo
from simpletvm.executor import StageOutcome, StageRequest
from simpletvm.jobdir import JobDir, Progress, TaskInfo, TaskProgress, read_json, write_json

if TYPE_CHECKING:
    from runner.agent import Agent

__all__ = ["DEFAULT_SECONDS", "SleepExecutor", "SleepStage", "ZeroLoad", "fake_agent",
           "latency_after", "run_effects"]

# Seconds per stage kind: DESIGN.md section 1's 2-core llvm times divided by about 20.
DEFAULT_SECONDS: Mapping[str, float] = {
    "extract": 0.05, "search": 0.2, "build": 0.2, "profile": 0.25, "learn": 0.05,
    "compile": 0.5}

UNTUNED_US, FINAL_US = 1000.0, 60.0

Durations = Mapping[str, float] | Callable[[StageRequest], float]


def latency_after(trials: int) -> float:
    """Best latency (us) found after `trials` measurements: an exponential approach."""
    return FINAL_US + (UNTUNED_US - FINAL_US) * math.exp(-trials / 150.0)


# ---------------------------------------------------------------------- stage effects
def _extract(job: JobDir, round_: int) -> dict[str, Any]:
    if not ((job.root / "tasks" / "index.json").exists() and job.progress_path.exists()):
        job.write_tasks([TaskInfo(0, "fake_dense", 1, 1.0e6, "fake-shash-0")])
        job.write_progress(Progress(tasks=[TaskProgress()]))
    return {"tasks": 1, "flops": 1.0e6, "task_names": ["fake_dense"]}


def _search(job: JobDir, round_: int) -> dict[str, Any]:
    spec, progress = job.spec(), job.progress()
    done = progress.trials >= spec.trials
    batch = 0 if done else max(1, min(spec.batch_size, spec.trials - progress.trials))
    task = None if done else 0
    write_json(job.round_dir(round_) / "candidates.json", {
        "task": task, "candidates": [{"hash": f"fake-{round_}-{i}"} for i in range(batch)],
        "exhausted_tasks": []})
    return {"task": task, "candidates": batch, "exhausted_tasks": [], "done": done}


def _build(job: JobDir, round_: int) -> dict[str, Any]:
    plan = read_json(job.round_dir(round_) / "candidates.json")
    built = [{"artifact": f"fake-{i:03d}.so", "error": None}
             for i in range(len(plan["candidates"]))]
    write_json(job.round_dir(round_) / "built.json", {"built": built})
    return {"built": len(built), "errors": 0, "hash_mismatches": 0}


def _profile(job: JobDir, round_: int) -> dict[str, Any]:
    built = read_json(job.round_dir(round_) / "built.json")["built"]
    best_s = latency_after(job.progress().trials + len(built)) * 1e-6
    now = time.time()
    results = [{"run_secs": [best_s * (1.0 + 0.01 * i)], "error": None}
               for i in range(len(built))]
    write_json(job.round_dir(round_) / "results.json",
               {"results": results, "started": now, "finished": now})
    return {"measured": len(results), "errors": 0,
            "batch_best_us": best_s * 1e6 if results else None, "started": now,
            "finished": now}


def _learn(job: JobDir, round_: int) -> dict[str, Any]:
    spec, progress = job.spec(), job.progress()
    plan = read_json(job.round_dir(round_) / "candidates.json")
    plan_id = f"{round_}:fake"
    n = len(plan["candidates"])
    batch_best = None
    replayed = any(c.get("plan") == plan_id for c in progress.curve)  # a retried learn
    if not replayed:
        if n:
            results = read_json(job.round_dir(round_) / "results.json")["results"]
            batch_best = min(min(r["run_secs"]) for r in results) * 1e6
            task = progress.tasks[0]
            task.trials += n
            task.best_us = batch_best if task.best_us is None else min(task.best_us, batch_best)
            progress.trials += n
        progress.rounds = round_ + 1
        progress.curve.append({"round": round_, "plan": plan_id, "time": time.time(),
                               "trials": progress.trials, "task": plan["task"],
                               "batch_best_us": batch_best,
                               "estimated_latency_us": progress.tasks[0].best_us})
        job.write_progress(progress)
    estimate = progress.tasks[0].best_us
    return {"task": plan["task"], "trials": n, "trials_total": progress.trials,
            "batch_best_us": batch_best, "estimated_latency_us": estimate,
            "replayed": replayed, "done": progress.trials >= spec.trials}


def _compile(job: JobDir, round_: int) -> dict[str, Any]:
    spec, progress = job.spec(), job.progress()
    tuned = progress.tasks[0].best_us if progress.tasks and progress.tasks[0].best_us \
        else UNTUNED_US
    report = {"name": spec.name, "model": spec.model, "target": spec.target,
              "trials": progress.trials, "trial_budget": spec.trials,
              "rounds": progress.rounds, "untuned": {"median_us": UNTUNED_US},
              "tuned": {"median_us": tuned}, "speedup": UNTUNED_US / tuned,
              "max_abs_diff_vs_untuned": 0.0, "curve": progress.curve, "fake": True}
    write_json(job.result_dir / "report.json", report)
    return {"tuned_us": tuned, "untuned_us": UNTUNED_US, "speedup": UNTUNED_US / tuned,
            "max_abs_diff": 0.0}


EFFECTS: Mapping[str, Callable[[JobDir, int], dict[str, Any]]] = {
    "extract": _extract, "search": _search, "build": _build, "profile": _profile,
    "learn": _learn, "compile": _compile}


def run_effects(request: StageRequest) -> dict[str, Any]:
    """Write what stage `request.stage` writes into its job directory; return its result."""
    effect = EFFECTS.get(request.stage)
    if effect is None:
        raise ValueError(f"unknown stage {request.stage!r}: choose one of {', '.join(EFFECTS)}")
    return effect(JobDir(request.job_dir), request.round)


# ---------------------------------------------------------------------- executor
class SleepStage:
    """A stage that sleeps: `wait()` blocks (in the caller's thread) until its time is up,
    writes its effects and returns the outcome; `kill()` ends it promptly, without effects;
    `pause()`/`resume()` stop and continue its clock (and its time limit's)."""

    def __init__(self, request: StageRequest, seconds: float) -> None:
        self.request = request
        self.seconds = max(0.0, seconds)
        self.pid = os.getpid()  # no child process: the runner's own
        self.started = time.time()
        self._start = time.monotonic()
        self._killed = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.paused_at: list[float] = []
        self.resumed_at: list[float] = []
        self._paused_s = 0.0
        self._paused_since: float | None = None
        self.outcome: StageOutcome | None = None  # set when wait() returns

    def done(self) -> bool:
        return self.outcome is not None or self._killed.is_set()

    def kill(self) -> None:
        self._killed.set()
        self._wake.set()

    def pause(self) -> None:
        with self._lock:
            if self._paused_since is None:
                self._paused_since = time.monotonic()
                self.paused_at.append(time.time())
        self._wake.set()

    def resume(self) -> None:
        with self._lock:
            if self._paused_since is not None:
                self._paused_s += time.monotonic() - self._paused_since
                self._paused_since = None
                self.resumed_at.append(time.time())
        self._wake.set()

    def _ran(self) -> tuple[float, bool]:
        """Seconds run (not paused) so far, and whether it is paused now."""
        with self._lock:
            now = time.monotonic()
            paused = self._paused_s + (now - self._paused_since
                                       if self._paused_since is not None else 0.0)
            return now - self._start - paused, self._paused_since is not None

    def wait(self, timeout: float | None = None) -> StageOutcome:
        """Sleep out the stage (or until killed / `timeout`, default the request's timeout)."""
        limit = timeout if timeout is not None else self.request.timeout_s
        timed_out = limit is not None and self.seconds > limit
        end = min(self.seconds, limit) if timed_out else self.seconds
        while not self._killed.is_set():
            ran, paused = self._ran()
            if ran >= end and not paused:
                break
            self._wake.clear()
            self._wake.wait(None if paused else end - ran)
        if self._killed.is_set():
            self.outcome = self._failed("crashed", "stage killed (its lease was revoked)")
        elif timed_out:
            self.outcome = self._failed("timeout", f"stage exceeded its timeout of {limit:g} s")
        else:
            self.outcome = self._run()
        self.resume()  # a pause that raced the end ends here
        self.outcome.paused_at, self.outcome.resumed_at = self.paused_at, self.resumed_at
        return self.outcome

    def _run(self) -> StageOutcome:
        try:
            result = run_effects(self.request)
        except Exception as exc:
            return StageOutcome(self.request.stage, "error", error=f"{type(exc).__name__}: {exc}",
                                traceback=traceback.format_exc(), pid=self.pid,
                                started=self.started, finished=time.time(),
                                cores=list(self.request.cores or []))
        return StageOutcome(self.request.stage, "ok", result, pid=self.pid,
                            started=self.started, finished=time.time(),
                            cores=list(self.request.cores or []))

    def _failed(self, status: str, message: str) -> StageOutcome:
        return StageOutcome(self.request.stage, status, error=message, pid=self.pid,
                            started=self.started, finished=time.time(),
                            cores=list(self.request.cores or []))


class SleepExecutor:
    """Runs stages by sleeping: `seconds` maps stage kind -> seconds (missing kinds: the
    defaults), or is a callable(request) -> seconds. Thread-safe; keeps no state."""

    def __init__(self, seconds: Durations | None = None) -> None:
        self.seconds = seconds if seconds is not None else DEFAULT_SECONDS

    def duration(self, request: StageRequest) -> float:
        if callable(self.seconds):
            return float(self.seconds(request))
        return float(self.seconds.get(request.stage, DEFAULT_SECONDS.get(request.stage, 0.0)))

    def start(self, request: StageRequest) -> SleepStage:
        return SleepStage(request, self.duration(request))

    def run(self, request: StageRequest) -> StageOutcome:
        return self.start(request).wait()


class ZeroLoad:
    """A load meter that reports no foreign load (stands in for runner.hostinfo.LoadMeter)."""

    def foreign_load(self) -> float:
        return 0.0


def fake_agent(address: str, host_id: str, work_dir: str | Path, runner_id: str,
               cores: int = 2, seconds: Durations | None = None,
               memory_mb: int = 65536) -> Agent:
    """A real `runner.agent.Agent` whose stages sleep (SleepExecutor) and whose host reports
    no foreign load. Run it with `agent.run(stop_event)` in a thread; `agent.stop()` ends it."""
    from runner.agent import Agent, RunnerConfig

    host = HostInfo(host_id, list(range(cores)), memory_mb=memory_mb)
    agent = Agent(RunnerConfig(address, host, Path(work_dir), runner_id),
                  executor=SleepExecutor(seconds))
    agent.meter = ZeroLoad()
    return agent
