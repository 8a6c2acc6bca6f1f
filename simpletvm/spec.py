"""JobSpec: what one tuning job asks for. One type in every layer, validated when it is made.

The CLI builds it from flags, the client sends it (`scheduler/service/convert.py` is its one
protobuf conversion), the daemon keeps it in its job records, the scheduling core schedules by it,
and the stages read it from the job directory's job.json (`to_dict`/`from_dict`). A JobSpec that
exists is valid: `__post_init__` checks every rule and raises SpecError, one line saying what is
wrong and what to do. Import-light on purpose (no numpy, onnx or TVM): the core and the daemon
import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from simpletvm import zoo
from simpletvm.errors import SpecError, TargetError

__all__ = ["JobSpec", "SpecError", "check_input_ranks", "check_target"]

MAX_TRIALS = 1_000_000
MAX_BATCH = 4096
MAX_PRIORITY = 1000
MAX_NAME = 200
MAX_INPUT_DIM = 1 << 16           # one input dimension
MAX_INPUT_ELEMENTS = 1 << 28      # one input tensor (1 GiB of float32)
MAX_VERIFY = 64                   # verification candidates per task, and passes
TARGET_KINDS = ("llvm", "cuda")  # what the scheduler can lease a device for
UNSUPPORTED_KINDS = ("rocm", "metal", "vulkan", "opencl")  # TVM targets tunesched cannot run
CPU_PROFILE_MODES = ("host", "cores")
SAMPLINGS = ("all", "chameleon")  # which of a round's proposed candidates are measured
TARGET_HELP = 'use "cpu", "cuda", or a JSON dict such as {"kind": "llvm", "num-cores": 2}'


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One tuning job: the model, the target, the budget and how to schedule and verify it.

    model: "zoo:NAME", an uploaded model's file name, a path, or "relax" (a saved module).
    target: a target dict ({"kind": "llvm", "num-cores": 2}); `simpletvm.targets.parse_target`
        makes one from "cpu", "cuda" or JSON text.
    trials: the measurement budget; 0 tunes nothing (the model is compiled as it is).
    latency_goal_us: stop tuning once the model's estimated latency reaches it (None: no goal).
    input_shapes: input name -> shape, for models with dynamic inputs (zoo: the input "x").
    replay: evaluation only: a job directory whose measured candidates the search proposes
        again, round by round, instead of its own (the search still runs, so the stage costs
        what it did); two ways of running the same job then measure the same candidates.
    verify_top, verify_passes: after the search, each task's `verify_top` leading candidates
        (and, on CPU targets, its untuned schedule) are timed again together in
        `verify_passes` interleaved passes and the fastest by that timing is kept
        (simpletvm.verification); verify_top 0 turns it off, except for records reused
        from earlier jobs, which are always timed again (verification.REUSED_TOP of them).
    min_task_share: tasks whose weight x FLOPs is under this share of the model's are not
        tuned (the extract stage marks them done): a reshape does not take trials from a conv.
    fresh: the job takes nothing from the scheduler's tuning memory (its records still go in).
    sampling: which of a round's new candidates are measured: "all" (the batch, as the search
        ranks it) or "chameleon" (Ahn et al., ICLR 2020: the search is asked for four batches
        more, its proposals are clustered by their cost-model features and one new candidate
        per cluster is measured: at most the batch, fewer when the proposals bunch up, so the
        budget lasts more rounds; simpletvm.sampling).
    job_id: given by the scheduler when it accepts the job ("" before).
    demand_overrides, cpu_profile_exclusivity: scheduling hints of the simulator and tests
        (stage kind -> StageDemand fields; "host" | "cores" | None for the scheduler's default).
    """

    model: str = ""
    target: dict[str, Any] = field(default_factory=lambda: {"kind": "llvm"})
    trials: int = 256
    # fields with a "flag" are `tunesched submit` options of that help text (cli/jobs.py)
    batch_size: int = field(default=32, metadata={"flag": "Candidates measured per round."})
    name: str = field(default="", metadata={"flag": "Job name (default: the model's)."})
    seed: int = field(default=0, metadata={"flag": "Seed of the evolutionary search."})
    priority: int = field(default=0, metadata={
        "flag": "Higher goes first (-1000..1000); waiting jobs gain priority with age."})
    user: str = "default"
    latency_goal_us: float | None = field(default=None, metadata={
        "flag": "Stop tuning once the model's estimated latency is this many us or less.",
        "type": float})
    input_shapes: dict[str, list[int]] | None = None
    replay: str = ""
    verify_top: int = field(default=6, metadata={
        "flag": "After the search, time each task's N leading candidates (and, on CPU, its "
                "untuned schedule) again and keep the fastest (0: off)."})
    verify_passes: int = field(default=7, metadata={
        "flag": "Interleaved timing passes of that verification."})
    fresh: bool = field(default=False, metadata={
        "flag": "Start from nothing: take no records or cost model from earlier jobs."})
    min_task_share: float = field(default=0.0, metadata={
        "flag": "Leave untuned the tasks under this share (0..1) of the model's FLOPs, "
                "weight x FLOPs each (0: tune every task)."})
    sampling: str = field(default="all", metadata={
        "flag": "Which proposed candidates a round measures: all (the batch) or chameleon (one "
                "per cluster of their features, at most the batch; Ahn et al. 2020).",
        "choices": SAMPLINGS})
    job_id: str = ""
    demand_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cpu_profile_exclusivity: str | None = None

    def __post_init__(self) -> None:
        _check_counts(self)
        _check_texts(self)
        object.__setattr__(self, "target", check_target(self.target))
        if self.latency_goal_us is not None and not (
                _number(self.latency_goal_us) and self.latency_goal_us > 0):
            raise SpecError(f"latency goal must be positive (microseconds), got "
                            f"{self.latency_goal_us}")
        object.__setattr__(self, "input_shapes", _check_shapes(self.input_shapes))
        if self.model.startswith("zoo:"):
            check_input_ranks(zoo.input_ranks(_zoo_name(self.model)), self.input_shapes)
        if not self.name:
            object.__setattr__(self, "name", self.model.removeprefix("zoo:"))
        if not isinstance(self.fresh, bool):
            raise SpecError(f"fresh must be true or false, got {self.fresh!r}")
        if not (_number(self.min_task_share) and 0 <= self.min_task_share < 1):
            raise SpecError(f"min task share must be at least 0 and under 1, got "
                            f"{self.min_task_share}")
        if self.sampling not in SAMPLINGS:
            raise SpecError(f"sampling must be one of {', '.join(SAMPLINGS)}, got "
                            f"{self.sampling!r}")
        if self.cpu_profile_exclusivity not in (None, *CPU_PROFILE_MODES):
            raise SpecError(f"cpu profile exclusivity must be one of "
                            f"{', '.join(CPU_PROFILE_MODES)}, got {self.cpu_profile_exclusivity!r}")

    @property
    def target_kind(self) -> str:
        """The device kind the scheduler places the job by: "cuda" or "llvm"."""
        return "cuda" if self.target["kind"] == "cuda" else "llvm"

    @property
    def profile_cores(self) -> int | None:
        """Cores an llvm target is timed on (its num-cores), None when it names none."""
        cores = self.target.get("num-cores") if self.target["kind"] == "llvm" else None
        return cores if isinstance(cores, int) else None

    def with_(self, **changes: Any) -> JobSpec:
        """A copy with `changes` (validated like any JobSpec)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (job.json, the daemon's records, the core's event log)."""
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["target"] = dict(self.target)
        data["demand_overrides"] = {k: dict(v) for k, v in self.demand_overrides.items()}
        if self.input_shapes is not None:
            data["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Rebuild from `to_dict()` output; keys this version does not know are ignored."""
        return cls(**{k: v for k, v in data.items() if k in _NAMES})


_FIELDS = fields(JobSpec)
_NAMES = frozenset(f.name for f in _FIELDS)


def check_target(target: Any) -> dict[str, Any]:
    """A copy of `target` if it is a target dict of a known kind; TargetError otherwise."""
    if not isinstance(target, Mapping) or not isinstance(target.get("kind"), str):
        raise TargetError(f"target needs a 'kind': {TARGET_HELP}")
    target = dict(target)
    if target["kind"] in UNSUPPORTED_KINDS:
        raise TargetError(f"target kind {target['kind']!r} is not supported: tunesched tunes "
                          f"llvm (CPU) and cuda targets only; {TARGET_HELP}")
    if target["kind"] not in TARGET_KINDS:
        raise TargetError(f"unknown target kind {target['kind']!r}: {TARGET_HELP}")
    cores = target.get("num-cores")
    if target["kind"] == "llvm" and "num-cores" in target and not (_integer(cores) and cores > 0):
        raise TargetError(f"num-cores must be a positive integer, got {cores!r}: {TARGET_HELP}")
    return target


def check_input_ranks(ranks: Mapping[str, int], shapes: Mapping[str, list[int]] | None) -> None:
    """SpecError unless every shape names an input of the model and has its rank (rank 0:
    unknown, any rank goes)."""
    for name, shape in (shapes or {}).items():
        if name not in ranks:
            raise SpecError(f"input shape given for {name!r}, but the model's inputs are "
                            f"{sorted(ranks)}")
        if ranks[name] and len(shape) != ranks[name]:
            raise SpecError(f"input shape for {name!r} has rank {len(shape)}, but the "
                            f"model's input has rank {ranks[name]}")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_counts(spec: JobSpec) -> None:
    for name in ("trials", "batch_size", "seed", "priority", "verify_top", "verify_passes"):
        if not _integer(getattr(spec, name)):
            raise SpecError(f"{name.replace('_', ' ')} must be an integer, got "
                            f"{getattr(spec, name)!r}")
    if not 0 <= spec.trials <= MAX_TRIALS:
        raise SpecError(f"trials must be between 0 (compile only, no tuning) and "
                        f"{MAX_TRIALS}, got {spec.trials}")
    if not 0 < spec.batch_size <= MAX_BATCH:
        raise SpecError(f"batch size must be between 1 and {MAX_BATCH}, got {spec.batch_size}")
    if abs(spec.priority) > MAX_PRIORITY:
        raise SpecError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, got "
                        f"{spec.priority}")
    if spec.verify_top != 0 and not 2 <= spec.verify_top <= MAX_VERIFY:
        raise SpecError(f"verify top must be 0 (verification off) or between 2 and "
                        f"{MAX_VERIFY} candidates per task, got {spec.verify_top}")
    if not 1 <= spec.verify_passes <= MAX_VERIFY:
        raise SpecError(f"verify passes must be between 1 and {MAX_VERIFY}, got "
                        f"{spec.verify_passes} (to turn verification off, set verify top to 0)")


def _check_texts(spec: JobSpec) -> None:
    for name in ("model", "name", "user", "replay", "job_id"):
        if not isinstance(getattr(spec, name), str):
            raise SpecError(f"{name} must be text, got {getattr(spec, name)!r}")
    if len(spec.name) > MAX_NAME:
        raise SpecError(f"job name is longer than {MAX_NAME} characters")
    if spec.model.startswith("zoo:"):
        _zoo_name(spec.model)
    if spec.replay and not os.path.isabs(spec.replay):
        raise SpecError(f"replay directory must be an absolute path on the runners' hosts, "
                        f"got {spec.replay!r}")


def _zoo_name(model: str) -> str:
    name = model.removeprefix("zoo:")
    if name not in zoo.INPUTS:
        raise SpecError(f"unknown zoo model {name!r}: choose one of {', '.join(zoo.INPUTS)}")
    return name


def _check_shapes(shapes: Any) -> dict[str, list[int]] | None:
    if shapes is None:
        return None
    if not (isinstance(shapes, Mapping) and all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and v
            and all(_integer(d) for d in v) for k, v in shapes.items())):
        raise SpecError('input shapes must be JSON like {"x": [1, 3, 224, 224]}')
    out = {name: list(shape) for name, shape in shapes.items()}
    for name, shape in out.items():
        if any(d <= 0 for d in shape):
            raise SpecError(f"input shape for {name!r} must be positive integers, got {shape}")
        if any(d > MAX_INPUT_DIM for d in shape):
            raise SpecError(f"input dimensions must be at most {MAX_INPUT_DIM}, got {shape} "
                            f"for {name!r}")
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise SpecError(f"input {name!r} would have {math.prod(shape)} elements, over the "
                            f"{MAX_INPUT_ELEMENTS} limit")
    return out or None
