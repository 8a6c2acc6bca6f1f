"""What a runner knows about its host: cores, memory, GPUs, and load nobody leased."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from simpletvm.tuningdb import cpu_model, gpu_models

log = logging.getLogger(__name__)


@dataclass
class HostInfo:
    """Resources this runner offers to the scheduler."""

    host_id: str
    cores: list[int]
    gpus: list[int] = field(default_factory=list)
    memory_mb: int = 0
    target_kinds: list[str] = field(default_factory=lambda: ["llvm"])
    cpu_model: str = ""  # the device models tuning records are filed under
    gpu_models: list[str] = field(default_factory=list)


def detect_gpus() -> list[int]:
    """GPU indices that nvidia-smi lists; none without a driver."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def detect(host_id: str | None = None, cores: list[int] | None = None,
           gpus: list[int] | None = None) -> HostInfo:
    """This host's resources; explicit cores/GPUs override detection."""
    found_gpus = detect_gpus() if gpus is None else gpus
    return HostInfo(
        host_id=host_id or socket.gethostname(),
        cores=sorted(cores if cores is not None else os.sched_getaffinity(0)),
        gpus=found_gpus,
        memory_mb=int(psutil.virtual_memory().total // 2**20),
        target_kinds=["llvm", "cuda"] if found_gpus else ["llvm"],
        cpu_model=cpu_model(),
        gpu_models=gpu_models() if found_gpus else [],
    )


RUNNERS_DIR = Path(tempfile.gettempdir()) / "tunesched-runners"


class LoadMeter:
    """Host CPU load that no tunesched runner on the host explains, as a 0..1 fraction.

    Each call measures since the previous call: host busy CPU-seconds minus the CPU-seconds of
    the process trees of every runner agent on this host (their stages, fork servers and
    workers), over the interval times the host's core count. Runners find each other through
    `registry`: each meter announces its process there (a file named pid-start time, removed
    by `close`; one left by a dead runner is ignored and removed). Runners that cannot see
    each other's processes (separate containers) count each other as foreign.
    """

    def __init__(self, registry: Path = RUNNERS_DIR) -> None:
        self._me = psutil.Process()
        self._registry = registry
        self._announcement = registry / f"{self._me.pid}-{self._me.create_time():.3f}"
        try:
            registry.mkdir(mode=0o1777, parents=True, exist_ok=True)  # runners of any user
            self._announcement.touch()
        except OSError as exc:
            log.warning("cannot announce this runner in %s (%s): other runners on this host "
                        "will count its stages as foreign load", registry, exc)
        self._last = self._sample()

    def close(self) -> None:
        """Take this runner's announcement back."""
        self._announcement.unlink(missing_ok=True)

    def _runners(self) -> dict[str, psutil.Process]:
        """Every announced runner process that is alive, this one included."""
        found = {self._announcement.name: self._me}
        try:
            entries = list(self._registry.iterdir())
        except OSError:
            return found
        for entry in entries:
            if entry.name in found:
                continue
            try:
                pid, created = entry.name.split("-", 1)
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(created)) > 0.01:  # the pid was reused
                    raise psutil.NoSuchProcess(int(pid))
            except (ValueError, psutil.Error):
                with contextlib.suppress(OSError):
                    entry.unlink()
                continue
            found[entry.name] = proc
        return found

    def _ours(self) -> dict[str, float]:
        """CPU-seconds so far of each runner's process tree (a process counted once)."""
        seen: set[int] = set()
        out = {}
        for name, root in self._runners().items():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = 0.0
            for proc in tree:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.Error:
                    continue
            out[name] = total
        return out

    def _sample(self) -> tuple[float, dict[str, float], float]:
        cpu = psutil.cpu_times()
        busy = cpu.user + cpu.system + getattr(cpu, "nice", 0.0) + getattr(cpu, "irq", 0.0) \
            + getattr(cpu, "softirq", 0.0)
        return busy, self._ours(), sum(cpu)

    def foreign_load(self) -> float:
        busy, ours, total = self._sample()
        last_busy, last_ours, last_total = self._last
        self._last = (busy, ours, total)
        span = total - last_total
        if span <= 0:
            return 0.0
        # a runner seen first now started since the last call (every announced one was seen
        # then): all its CPU so far falls in this interval
        explained = sum(max(0.0, cpu - last_ours.get(name, 0.0)) for name, cpu in ours.items())
        return min(1.0, max(0.0, (busy - last_busy - explained) / span))


class ZeroLoad:
    """A fake LoadMeter that reports no foreign load: runners in benches and fast tests, where
    whatever else runs on the machine must not hold profiles back."""

    def foreign_load(self) -> float:
        return 0.0

    def close(self) -> None:
        """Nothing to take back."""
