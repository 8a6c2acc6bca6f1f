"""Whole-model latency: run a compiled Relax executable in the VM and summarise the samples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from simpletvm.models import InputSpec, random_inputs


@dataclass(frozen=True)
class Latency:
    """Latency statistics in microseconds over `samples` timed repeats."""

    mean_us: float
    median_us: float
    p90_us: float
    cv: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        us = np.asarray(seconds) * 1e6
        mean = float(us.mean())
        return cls(mean, float(np.median(us)), float(np.percentile(us, 90)),
                   float(us.std() / mean) if mean else 0.0, len(us))


def measure(executable: Any, specs: list[InputSpec], device: str = "cpu", repeat: int = 20,
            min_repeat_ms: int = 50) -> tuple[Latency, list[np.ndarray]]:
    """Latency of `main` and its outputs on random inputs (fixed seed)."""
    import tvm
    from tvm import relax

    dev = tvm.runtime.device(device, 0)
    vm = relax.VirtualMachine(executable, dev)
    args = [tvm.runtime.tensor(a, dev) for a in random_inputs(specs)]
    out = vm["main"](*args)
    outputs = [o.numpy() for o in out] if isinstance(out, (list, tuple)) else [out.numpy()]
    timer = vm.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return Latency.of(list(timer(*args).results)), outputs
