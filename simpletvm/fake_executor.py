"""SleepExecutor: a fake of `simpletvm.executor.StageExecutor` whose stages sleep known times.

It implements the same `Executor` protocol (`start(StageRequest)` -> a `StageHandle` with
`wait()`, `kill()`, `pause()`, `resume()`, `pid`), with no TVM and no child process: a stage
"runs" in the thread that waits on it, for a duration taken from a table per stage kind (or a
callable of the request), then writes what the real stage writes (`simpletvm.fake_stages`).
Benches and fast tests run real runner agents over it (`scheduler.testing.sleep_agent`).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping

from simpletvm.executor import StageOutcome, StageRequest
from simpletvm.fake_stages import run_effects

__all__ = ["DEFAULT_SECONDS", "Durations", "SleepExecutor", "SleepStage"]

# Seconds per stage kind, short for fast tests: about 1/20 of the 2-core llvm build, profile and
# (matmul) search times of docs/design.md section 1; extract and learn are floors, and compile
# is 1/20 of an assumed 10 s, longer than the measured compile (section 1.3 checks each).
DEFAULT_SECONDS: Mapping[str, float] = {
    "extract": 0.05, "search": 0.2, "build": 0.2, "profile": 0.25, "learn": 0.05,
    "compile": 0.5}

Durations = Mapping[str, float] | Callable[[StageRequest], float]


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

    def pause(self) -> list[str]:
        with self._lock:
            if self._paused_since is None:
                self._paused_since = time.monotonic()
                self.paused_at.append(time.time())
        self._wake.set()
        return []  # a sleep stops at once

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
            result = run_effects(self.request.stage, self.request.job_dir, self.request.round)
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

    def warm(self) -> None:
        """Nothing to start: no fork server."""

    def start(self, request: StageRequest) -> SleepStage:
        return SleepStage(request, self.duration(request))

    def run(self, request: StageRequest) -> StageOutcome:
        return self.start(request).wait()
