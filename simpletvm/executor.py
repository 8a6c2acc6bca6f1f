"""Run a stage in its own process, pinned to the cores and GPUs of its lease.

`StageExecutor` forks each stage from a warm fork server that imported TVM once (a fresh
interpreter pays ~1.5 s of imports; the CUDA intrinsics another 10-17 s: docs/design.md
section 3). The child pins itself
(CPU affinity, TVM/OpenMP thread counts, CUDA_VISIBLE_DEVICES) before any TVM thread pool
exists, runs the stage, and writes a StageOutcome as JSON. Failures come back as data.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from simpletvm.errors import last_line
from simpletvm.stages import run_stage


@dataclass
class StageRequest:
    """One stage to run: which, over which job directory and round, on which resources."""

    stage: str
    job_dir: str
    round: int = 0
    cores: list[int] | None = None
    gpus: list[int] | None = None
    timeout_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageOutcome:
    """What a stage process reports: status "ok", "error", "timeout" or "crashed"."""

    stage: str
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    pid: int = 0
    started: float = 0.0
    finished: float = 0.0
    cores: list[int] = field(default_factory=list)
    cpu_s: float = 0.0  # user + system CPU seconds of the stage and its waited-for workers
    paused_at: list[float] = field(default_factory=list)  # stopped for a host-exclusive
    resumed_at: list[float] = field(default_factory=list)  # profile, and continued: pairwise
    cuda_env: dict[str, str] = field(default_factory=dict)  # the CUDA_* variables it ran with

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageOutcome:
        return cls(**data)


class StageHandle(Protocol):
    """A started stage: what a runner does with it until it ends."""

    @property
    def pid(self) -> int: ...

    def done(self) -> bool: ...

    def pause(self) -> list[str]: ...

    def resume(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> StageOutcome: ...


class Executor(Protocol):
    """Runs stages: `StageExecutor` (a pinned child process per stage) and its fake,
    `simpletvm.fake_executor.SleepExecutor` (sleeps, writes what the stage would). A started
    stage does nothing of its own until `wait()` is called: a runner can still kill it unrun
    if its lease is revoked meanwhile."""

    def warm(self) -> None: ...

    def start(self, request: StageRequest) -> StageHandle: ...

    def run(self, request: StageRequest) -> StageOutcome: ...


def pin(cores: list[int] | None, gpus: list[int] | None) -> None:
    """Confine this process to `cores`/`gpus`; call before TVM starts threads or touches CUDA."""
    if cores:
        os.sched_setaffinity(0, cores)
        threads = str(len(cores))
        os.environ.update(TVM_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
                          TVM_BIND_THREADS="0")  # TVM would re-bind its threads outside the mask
    if gpus is not None:  # [] hides every GPU: a stage without a GPU lease touches none
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's ids are then nvidia-smi's
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)


def cuda_env() -> dict[str, str]:
    """The CUDA device variables of this process."""
    return {k: v for k, v in os.environ.items() if k in _CUDA_VARS}


_CUDA_VARS = ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def execute(request: StageRequest) -> StageOutcome:
    """Run the stage in this process; exceptions become an "error" outcome."""
    started, cpu0 = time.time(), cpu_seconds()
    cores = sorted(os.sched_getaffinity(0))
    try:
        result = run_stage(request.stage, request.job_dir, request.round, cores, request.gpus)
        return StageOutcome(request.stage, "ok", result, pid=os.getpid(), started=started,
                            finished=time.time(), cores=cores, cpu_s=cpu_seconds() - cpu0,
                            cuda_env=cuda_env())
    except Exception as exc:
        message = f"{type(exc).__name__}: {last_line(exc)}"
        return StageOutcome(request.stage, "error", error=message,
                            traceback=traceback.format_exc(), pid=os.getpid(),
                            started=started, finished=time.time(), cores=cores,
                            cpu_s=cpu_seconds() - cpu0, cuda_env=cuda_env())


def child_main(request: dict[str, Any], outcome_path: str, go: Any = None) -> None:
    """Entry point of a stage process: wait for `go` (if given), pin, run, write the outcome."""
    if go is not None:
        go.wait()
    req = StageRequest(**request)
    pin(req.cores, req.gpus)
    outcome = execute(req)
    tmp = outcome_path + ".tmp"
    Path(tmp).write_text(json.dumps(outcome.to_dict()))
    os.replace(tmp, outcome_path)


def _signal_tree(pid: int, sig: int) -> None:
    """Send `sig` to process `pid` and all its descendants (gone ones are skipped).

    The descendants are listed before the parent is signalled: a SIGKILLed parent's children
    are reparented at once and can no longer be found from it. The parent is signalled
    first, so a stopped parent forks no new worker; then its children, listed again after
    that to catch one forked in between."""
    import psutil

    try:
        root = psutil.Process(pid)
        listed = root.children(recursive=True)
        root.send_signal(sig)
    except psutil.Error:
        return
    done: set[psutil.Process] = set()
    for _ in range(2):
        for child in listed:
            if child not in done:
                done.add(child)
                with contextlib.suppress(psutil.Error):
                    child.send_signal(sig)
        try:
            listed = root.children(recursive=True)
        except psutil.Error:
            return


PAUSE_CONFIRM_S = 2.0  # how long `pause` waits to see every process of the tree stopped
_STOPPED = ("stopped", "tracing-stop", "zombie", "dead")  # psutil statuses


def _not_stopped(pid: int) -> list[str]:
    """"PID NAME" of each process of `pid`'s tree that is not stopped (ended ones count as
    stopped)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    left = []
    for proc in tree:
        try:
            if proc.status() not in _STOPPED:
                left.append(f"{proc.pid} {proc.name()}")
        except psutil.Error:
            continue
    return left


class StageProcess:
    """A running stage child: poll it, wait for it, pause/resume it, kill it, read its outcome.

    Pausing stops the child and its workers (SIGSTOP) so a profile elsewhere on the host has
    the CPU to itself; the stage's time limit does not run while it is paused."""

    def __init__(self, process: Any, request: StageRequest, outcome_path: str,
                 go: Any = None) -> None:
        self.process = process
        self.request = request
        self.outcome_path = outcome_path
        self._go = go  # the child waits for it before it runs the stage (None: it does not)
        self.started = time.time()
        self.paused_at: list[float] = []
        self.resumed_at: list[float] = []
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def paused(self) -> bool:
        return len(self.paused_at) > len(self.resumed_at)

    def done(self) -> bool:
        return not self.process.is_alive()

    def pause(self, confirm_s: float | None = None) -> list[str]:
        """Stop the stage's whole process tree until `resume()`; return once every process of
        it is seen stopped (psutil), or after `confirm_s` (default PAUSE_CONFIRM_S) with the
        "PID NAME" of each one that is not (empty: the pause is confirmed)."""
        with self._lock:
            if self.paused or not self.process.is_alive():
                return []
            _signal_tree(self.pid, signal.SIGSTOP)
            self.paused_at.append(time.time())
            deadline = time.monotonic() + (PAUSE_CONFIRM_S if confirm_s is None else confirm_s)
            while True:
                left = _not_stopped(self.pid)
                if not left or time.monotonic() > deadline:
                    return left
                time.sleep(0.002)  # SIGSTOP takes effect asynchronously: poll the status

    def resume(self) -> None:
        """Continue a paused stage."""
        with self._lock:
            if not self.paused:
                return
            _signal_tree(self.pid, signal.SIGCONT)
            self.resumed_at.append(time.time())

    def paused_s(self, now: float | None = None) -> float:
        """Seconds spent paused so far."""
        now = time.time() if now is None else now
        ends = [*self.resumed_at, now] if self.paused else self.resumed_at
        return sum(b - a for a, b in zip(self.paused_at, ends, strict=True))

    def kill(self) -> None:
        """SIGKILL the stage and its workers (stopped ones too: SIGKILL needs no SIGCONT)."""
        if self.process.is_alive():
            _signal_tree(self.pid, signal.SIGKILL)
        self.process.join()
        self._ended()

    def wait(self, timeout: float | None = None) -> StageOutcome:
        """Block until the stage ends (killing it once it has run `timeout` seconds, paused
        time not counted) and return its outcome."""
        if self._go is not None:
            self._go.set()  # the stage runs from now on
        limit = timeout if timeout is not None else self.request.timeout_s
        if limit is None:
            self.process.join()
        else:
            while True:
                left = self.started + limit + self.paused_s() - time.time()
                if left <= 0 and not self.paused:
                    break
                self.process.join(min(max(left, 0.05), 0.5))
                if not self.process.is_alive():
                    break
        if self.process.is_alive():
            self.kill()
            return self._failed("timeout", f"stage exceeded its timeout of {limit:g} s")
        self._ended()
        return self.outcome()

    def _ended(self) -> None:
        """The process is gone: a pause that raced its exit ends here."""
        with self._lock:
            if self.paused:
                self.resumed_at.append(time.time())

    def outcome(self) -> StageOutcome:
        try:
            data = json.loads(Path(self.outcome_path).read_text())
        except (OSError, json.JSONDecodeError):
            code = self.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return self._failed("crashed", f"stage process died ({how}) without a result")
        finally:
            Path(self.outcome_path).unlink(missing_ok=True)
        outcome = StageOutcome.from_dict(data)
        outcome.paused_at, outcome.resumed_at = list(self.paused_at), list(self.resumed_at)
        return outcome

    def _failed(self, status: str, message: str) -> StageOutcome:
        Path(self.outcome_path).unlink(missing_ok=True)
        return StageOutcome(self.request.stage, status, error=message, pid=self.pid,
                            started=self.started, finished=time.time(),
                            cores=list(self.request.cores or []),
                            paused_at=list(self.paused_at), resumed_at=list(self.resumed_at))


def skip_main_reimport() -> None:
    """Keep stage children from re-running the launching program's imports.

    multiprocessing re-imports a program started as a script (`tunesched` is a console script,
    benches are scripts) in every child: the CLI with grpc, rich and friends, about a second per
    stage. Stage children need nothing from `__main__`; a main module that looks like a package
    entry point (`pkg.__main__`, as `python -m` gives) is left alone by the children.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None \
            and getattr(main, "__file__", None):
        main.__spec__ = importlib.machinery.ModuleSpec("tunesched_script.__main__", None)


class StageExecutor:
    """Starts stage processes forked from one warm fork server (per interpreter)."""

    def __init__(self, gpu: bool = False) -> None:
        skip_main_reimport()
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(
            ["simpletvm._preload_cuda" if gpu else "simpletvm._preload"])

    def warm(self) -> None:
        """Start the fork server now: it imports TVM (seconds) and would otherwise do so
        inside the first lease, where the stage is not yet a process the runner can stop."""
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def start(self, request: StageRequest) -> StageProcess:
        """The stage's process, started but held: it runs the stage once `wait()` is called
        (and is never run if it is killed first)."""
        fd, path = tempfile.mkstemp(prefix=f"tunesched-{request.stage}-", suffix=".json")
        os.close(fd)
        os.unlink(path)
        go = self._ctx.Event()
        process = self._ctx.Process(target=child_main, args=(request.to_dict(), path, go),
                                    name=f"stage-{request.stage}", daemon=False)
        process.start()
        return StageProcess(process, request, path, go)

    def run(self, request: StageRequest) -> StageOutcome:
        return self.start(request).wait()


