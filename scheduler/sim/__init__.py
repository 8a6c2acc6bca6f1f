"""Discrete-event simulation of the scheduler core with MockJobs (no TVM, simulated clock)."""

from .metrics import LowerBound, SimResult, lower_bound
from .mockjob import (
    CPU_HOST_TIMES,
    FINAL,
    GPU_HOST_TIMES,
    FakeStageExecutor,
    MockJob,
    StageOutcome,
    StageTimes,
    mock_spec,
)
from .scenarios import (
    HostSpec,
    Scenario,
    cpu_hosts_scenario,
    gpu_host_scenario,
    huge_scenario,
    mixed_scenario,
    small_host_scenario,
)
from .simulator import Simulator

__all__ = [
    "CPU_HOST_TIMES",
    "FINAL",
    "GPU_HOST_TIMES",
    "FakeStageExecutor",
    "HostSpec",
    "LowerBound",
    "MockJob",
    "Scenario",
    "SimResult",
    "Simulator",
    "StageOutcome",
    "StageTimes",
    "cpu_hosts_scenario",
    "gpu_host_scenario",
    "huge_scenario",
    "lower_bound",
    "mixed_scenario",
    "mock_spec",
    "small_host_scenario",
]
