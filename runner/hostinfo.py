"""What a runner knows about its host: cores, memory, GPUs, and load nobody leased."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field

import psutil

from simpletvm.tuningdb import cpu_model, gpu_models


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


class LoadMeter:
    """Host CPU load that our own stage processes do not explain, as a 0..1 fraction.

    Each call measures since the previous call: host busy CPU-seconds minus the CPU-seconds of
    this runner's process tree, over the interval times the host's core count.
    """

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._last = self._sample()

    def _ours(self) -> float:
        total = 0.0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        return total

    def _sample(self) -> tuple[float, float, float]:
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
        return min(1.0, max(0.0, (busy - last_busy - max(0.0, ours - last_ours)) / span))


class ZeroLoad:
    """A fake LoadMeter that reports no foreign load: runners in benches and fast tests, where
    whatever else runs on the machine must not hold profiles back."""

    def foreign_load(self) -> float:
        return 0.0
