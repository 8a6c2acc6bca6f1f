"""The pure scheduling core: `SchedulerState.handle(event, now) -> list[Command]`.

No gRPC, SQLite, TVM or wall clock in here; the daemon translates its messages into these
events and carries out the commands, the simulator does the same with simulated time.

    state = SchedulerState(SchedulerConfig(policy="interleaved", lease_ttl_s=60.0))
    state.handle(RunnerRegistered("r1", "host-a", cores=(0, 1, 2, 3), memory_mb=16384,
                                  target_kinds=("llvm",)), now=0.0)
    for command in state.handle(JobSubmitted(JobSpec(job_id="job-1", trials=256)), now=0.1):
        ...  # JobStateChanged, StartStage(lease=..., kind="extract", ...)
    state.handle(StageFinished(lease.lease_id, lease.epoch, "job-1", stage_id, {}), now=0.4)
    data = state.snapshot()                 # plain, JSON-able
    same = SchedulerState.restore(data)     # answers later events exactly as `state` would

Policies: `get_policy(name, **options)` or `SchedulerConfig(policy=name, policy_options=...)`;
names in `available_policies()`; add one with `register_policy(name, factory)`.
Errors: see `errors` for the exception tree. A job's spec is `simpletvm.spec.JobSpec`, the
one spec type of every layer.
"""

from .commands import (
    Command,
    JobRejected,
    JobStateChanged,
    JobWaiting,
    MoveJob,
    PauseLease,
    ResultRejected,
    ResumeLease,
    RevokeLease,
    StartStage,
    command_from_dict,
    command_to_dict,
)
from .config import SchedulerConfig
from .demands import DEFAULT_DEMANDS, Exclusivity, StageDemand, StageKind, TargetKind
from .errors import (
    ConfigError,
    InvalidTransition,
    InvariantViolation,
    SchedulerError,
    SnapshotError,
    UnknownPolicy,
)
from .events import (
    Event,
    HeartbeatReceived,
    HeartbeatsReceived,
    JobCancelled,
    JobSubmitted,
    LeaseExpired,
    RunnerLost,
    RunnerRegistered,
    StageFailed,
    StageFinished,
    Tick,
    event_from_dict,
    event_to_dict,
)
from .jobs import TERMINAL_JOB_STATES, Job, JobState, Stage, StageState
from .leases import Lease, LeaseState
from .policies import Placement, Policy, available_policies, get_policy, register_policy
from .resources import Host, Runner
from .state import SchedulerState

__all__ = [
    "DEFAULT_DEMANDS",
    "TERMINAL_JOB_STATES",
    "Command",
    "ConfigError",
    "Event",
    "Exclusivity",
    "HeartbeatReceived",
    "HeartbeatsReceived",
    "Host",
    "InvalidTransition",
    "InvariantViolation",
    "Job",
    "JobCancelled",
    "JobRejected",
    "JobState",
    "JobStateChanged",
    "JobSubmitted",
    "JobWaiting",
    "Lease",
    "LeaseExpired",
    "LeaseState",
    "MoveJob",
    "PauseLease",
    "Placement",
    "Policy",
    "ResultRejected",
    "ResumeLease",
    "RevokeLease",
    "Runner",
    "RunnerLost",
    "RunnerRegistered",
    "SchedulerConfig",
    "SchedulerError",
    "SchedulerState",
    "SnapshotError",
    "Stage",
    "StageDemand",
    "StageFailed",
    "StageFinished",
    "StageKind",
    "StageState",
    "StartStage",
    "TargetKind",
    "Tick",
    "UnknownPolicy",
    "available_policies",
    "command_from_dict",
    "command_to_dict",
    "event_from_dict",
    "event_to_dict",
    "get_policy",
    "register_policy",
]
