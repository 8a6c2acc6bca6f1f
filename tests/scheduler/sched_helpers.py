"""Helpers for the scheduler core tests: build states, feed events, answer StartStage."""

from __future__ import annotations

from typing import Any

from scheduler.core import (
    Command,
    Event,
    JobSubmitted,
    Lease,
    RunnerRegistered,
    SchedulerConfig,
    SchedulerState,
    StageFailed,
    StageFinished,
    StartStage,
)
from scheduler.core.demands import Exclusivity
from scheduler.core.leases import LeaseState
from scheduler.sim import mock_spec


def make_state(policy: str = "interleaved", **config: Any) -> SchedulerState:
    """A state with lease_ttl_s=None unless given."""
    config.setdefault("lease_ttl_s", None)
    return SchedulerState(SchedulerConfig(policy=policy, **config))


def feed(state: SchedulerState, event: Event, now: float) -> list[Command]:
    """handle() then validate_state()."""
    commands = state.handle(event, now)
    state.validate_state()
    return commands


def llvm_runner(runner_id: str = "r1", host_id: str = "h1", cores: int = 8,
                memory_mb: int = 65536) -> RunnerRegistered:
    """A CPU runner offering cores 0..cores-1."""
    return RunnerRegistered(runner_id, host_id, tuple(range(cores)), (), memory_mb, ("llvm",))


def cuda_runner(runner_id: str = "g1", host_id: str = "gh1", cores: int = 8,
                gpus: int = 1) -> RunnerRegistered:
    """A GPU runner."""
    return RunnerRegistered(runner_id, host_id, tuple(range(cores)), tuple(range(gpus)),
                            131072, ("cuda",))


def submit(job_id: str, target_kind: str = "llvm", **spec: Any) -> JobSubmitted:
    """JobSubmitted for a JobSpec built from keyword arguments (target {"kind": target_kind})."""
    return JobSubmitted(mock_spec(job_id, target_kind, **spec))


def starts(commands: list[Command]) -> list[StartStage]:
    """The StartStage commands among `commands`."""
    return [c for c in commands if isinstance(c, StartStage)]


def finished(start: StartStage, result: dict[str, Any] | None = None) -> StageFinished:
    """The StageFinished a runner would send for `start`."""
    lease = start.lease
    return StageFinished(lease.lease_id, lease.epoch, start.job_id, start.stage_id,
                         result or {})


def failed(start: StartStage, error: str = "boom") -> StageFailed:
    """The StageFailed a runner would send for `start`."""
    lease = start.lease
    return StageFailed(lease.lease_id, lease.epoch, start.job_id, start.stage_id, error)


def lease(epoch: int, holder: str, host: str, job: str, stage: str, cores: tuple[int, ...],
          memory: int, start: float, *, gpus: tuple[int, ...] = (),
          exclusive: Exclusivity = Exclusivity.NONE, expiry: float | None = None) -> Lease:
    """The Lease the core is expected to grant."""
    return Lease(f"lease-{epoch}", epoch, holder, host, job, stage, cores, gpus, memory,
                 exclusive, start, expiry, LeaseState.ACTIVE,
                 ((start, "", LeaseState.ACTIVE, "granted"),))


def start_cmd(epoch: int, holder: str, host: str, job: str, stage_no: int, kind: str,
              round_: int, cores: tuple[int, ...], memory: int, now: float, *,
              attempt: int = 0, gpus: tuple[int, ...] = (),
              exclusive: Exclusivity = Exclusivity.NONE,
              expiry: float | None = None, cause: str = "") -> StartStage:
    """The StartStage the core is expected to emit."""
    stage = f"{job}/{stage_no}"
    return StartStage(lease(epoch, holder, host, job, stage, cores, memory, now, gpus=gpus,
                            exclusive=exclusive, expiry=expiry),
                      job, stage, kind, round_, attempt, holder, cause)


PROFILE_RESULT = {"trials": 32, "best_latency_us": 100.0}


def run_round(state: SchedulerState, start: StartStage, now: float,
              step: float = 1.0) -> tuple[StartStage | None, float]:
    """Finish `start` and the stages of the same job that follow, until the job's next
    StartStage is not emitted (returns None) or a compile starts; returns it and the time."""
    result = PROFILE_RESULT if start.kind == "profile" else {}
    now += step
    nxt = [s for s in starts(feed(state, finished(start, result), now))
           if s.job_id == start.job_id]
    return (nxt[0] if nxt else None), now
