"""A local cluster for tests, benchmarks and the demo: one way to start a daemon and runners.

    with LocalCluster(tmp, hosts={"box": 2}, seconds=SECONDS) as cluster:   # sleep stages
        job = cluster.client.submit(JobSpec(model="zoo:mlp", trials=8))
        wait_for(lambda: cluster.client.get(job.job_id).state == "done", 30, "the job")

`LocalCluster` runs the daemon and the runner agents in this process (threads), on a free
loopback port, and always tears them down. Its agents run real stages (`StageExecutor`) or,
given `seconds`, sleep stages (`SleepExecutor`, no TVM, and a host that reports no foreign
load). Faults that need processes (kill -9, SIGTERM, rlimits) use `DaemonProcess` and
`RunnerProcess`: `tunesched scheduler` and `tunesched runner` as children. `wait_for` is the
one way to wait: it polls a condition with a deadline, never sleeps as synchronisation.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil

from client.api import Client
from runner.agent import Agent, RunnerConfig
from runner.hostinfo import HostInfo, ZeroLoad
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from simpletvm.fake_executor import Durations, SleepExecutor
from simpletvm.tuningdb import cpu_model

__all__ = ["TUNESCHED", "DaemonProcess", "LocalCluster", "RunnerProcess", "sleep_agent",
           "wait_for"]

T = TypeVar("T")

TUNESCHED = [sys.executable, "-m", "cli"]  # the `tunesched` command, from this interpreter


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy, and return that; TimeoutError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def connected_runners(client: Client) -> int:
    return sum(r.connected for r in client.runners())


def sleep_agent(address: str, host_id: str, work_dir: str | Path, runner_id: str,
                cores: int = 2, seconds: Durations | None = None,
                memory_mb: int = 65536) -> Agent:
    """A real runner agent whose stages sleep (`SleepExecutor`) on a host of `cores` cores
    that reports no foreign load. Run it with `agent.run(stop_event)` in a thread."""
    host = HostInfo(host_id, list(range(cores)), memory_mb=memory_mb, cpu_model=cpu_model())
    return Agent(RunnerConfig(address, host, Path(work_dir), runner_id),
                 executor=SleepExecutor(seconds), meter=ZeroLoad())


class LocalCluster:
    """An in-process daemon and runner agents on loopback; a context manager.

    hosts: host id -> runners on it (runners of one host share its work dir,
        `work_dir(host)`). seconds: sleep stages of these durations (see SleepExecutor);
        None: real stages on `cores` (default: every core this process may use).
    config: the daemon's settings (default: state under `root/state`).
    http: serve the dashboard and metrics there too (e.g. "127.0.0.1:0").
    token: the user token of `client` when the daemon's config wants one."""

    def __init__(self, root: Path, hosts: dict[str, int] | None = None, *,
                 seconds: Durations | None = None, cores: list[int] | None = None,
                 config: DaemonConfig | None = None, timeout: float = 60.0,
                 http: str = "", token: str | None = None) -> None:
        self.root = Path(root)
        self.config = config or DaemonConfig(self.root / "state" / "scheduler.db")
        self.service = Service(self.config, "127.0.0.1:0", http=http).start()
        self.address = self.service.address
        self._stop = threading.Event()
        self.agents: list[Agent] = []
        self._threads: list[threading.Thread] = []
        self.client = Client(self.address, timeout=30, token=token)
        try:
            for host_id, runners in (hosts if hosts is not None else {"box": 2}).items():
                for i in range(runners):
                    self.add_agent(self._agent(host_id, f"{host_id}-r{i}", seconds, cores))
            wait_for(lambda: connected_runners(self.client) == len(self.agents), timeout,
                     f"{len(self.agents)} runners to register", interval=0.05)
        except BaseException:
            self.stop()
            raise

    def _agent(self, host_id: str, runner_id: str, seconds: Durations | None,
               cores: list[int] | None) -> Agent:
        if seconds is not None:
            return sleep_agent(self.address, host_id, self.work_dir(host_id), runner_id,
                               seconds=seconds)
        host = HostInfo(host_id, cores or sorted(os.sched_getaffinity(0)), [], 0, ["llvm"],
                        cpu_model=cpu_model())
        return Agent(RunnerConfig(self.address, host, self.work_dir(host_id), runner_id))

    def work_dir(self, host_id: str) -> Path:
        return self.root / "work" / host_id

    @property
    def daemon(self) -> Any:
        return self.service.daemon

    def add_agent(self, agent: Agent) -> Agent:
        """Run `agent` in a thread of this process until the cluster stops."""
        thread = threading.Thread(target=agent.run, args=(self._stop,),
                                  name=agent.config.runner_id, daemon=True)
        thread.start()
        self.agents.append(agent)
        self._threads.append(thread)
        return agent

    def stop(self) -> None:
        self._stop.set()
        for agent in self.agents:
            agent.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self.client.close()
        self.service.stop()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class _Child:
    """A `tunesched` child process with its output in a log file."""

    proc: subprocess.Popen
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


class DaemonProcess(_Child):
    """`tunesched scheduler` as a child process on a free loopback port (`address`)."""

    def __init__(self, state: Path, log: Path, args: list[str] | tuple[str, ...] = (),
                 listen: str = "127.0.0.1:0") -> None:
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [*TUNESCHED, "scheduler", "--listen", listen, "--state", str(state), *args],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the daemon did not start ({line!r}): "
                               f"{log.read_text(errors='replace')[-2000:]}")
        self.address = match.group(1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (kill -9 with SIGKILL) and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class RunnerProcess(_Child):
    """`tunesched runner` as a child process in its own session (its fork server and stage
    processes are its children); `preexec` runs in the child before it starts."""

    def __init__(self, address: str, runner_id: str, host_id: str, work: Path, log: Path,
                 cores: str | None = None, preexec: Callable[[], None] | None = None) -> None:
        self.log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        cmd = [*TUNESCHED, "runner", "--scheduler", address, "--runner-id", runner_id,
               "--host-id", host_id, "--work-dir", str(work), "--gpus", "none"]
        if cores:
            cmd += ["--cores", cores]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     start_new_session=True, preexec_fn=preexec)

    def stop(self) -> None:
        """SIGTERM the runner's process group and wait (SIGKILL after 15 s)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def kill_group(self) -> None:
        """kill -9 the runner and everything in its process group (fork server, stages)."""
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()
        wait_for(lambda: not any(_pgid(p) == pgid for p in psutil.process_iter()), 10,
                 "the runner's process group to be gone")

    def stage_processes(self) -> list[psutil.Process]:
        """The stage processes running now (children of the runner's fork server)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                parents = child.parents()
            except psutil.NoSuchProcess:
                continue
            if len(parents) > 2 and parents[1].pid == self.proc.pid:
                found.append(child)
        return found


def _pgid(process: psutil.Process) -> int:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return -1
