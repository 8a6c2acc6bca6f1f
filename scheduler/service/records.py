"""JobRecord: what the daemon knows and tells clients about a job; submission validation."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scheduler.service.errors import InvalidRequest
from simpletvm.jobdir import JobSpec as TuningSpec

MAX_TRIALS = 1_000_000
MAX_BATCH = 4096
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_INPUT_DIM = 1 << 16           # one input dimension
MAX_INPUT_ELEMENTS = 1 << 28      # one input tensor (1 GiB of float32)
MAX_VERIFY = 64                   # verification candidates per task, and passes
ZOO_MODELS = ("matmul", "conv2d", "mlp", "convnet", "resnet_tiny", "resnet18")


@dataclass
class JobRecord:
    """One job as clients see it. `state_version` counts learn stages committed to the blob."""

    job_id: str
    name: str
    model: str
    target: dict[str, Any]
    trials: int
    batch_size: int = 32
    seed: int = 0
    priority: int = 0
    user: str = "default"
    latency_goal_us: float | None = None
    input_shapes: dict[str, list[int]] | None = None
    request_id: str = ""
    replay_dir: str = ""  # evaluation: see simpletvm JobSpec.replay
    verify_top: int = TuningSpec.verify_top  # simpletvm.verification; 0: off
    verify_passes: int = TuningSpec.verify_passes
    submitted_at: float = 0.0
    state: str = "queued"
    stage: str = ""
    round: int = 0
    trials_done: int = 0
    best_latency_us: float | None = None
    error: str = ""
    host_id: str = ""
    finished_at: float = 0.0
    state_version: int = -1     # -1: no state bundle yet (extract has not committed)
    untuned_us: float | None = None
    tuned_us: float | None = None
    uploaded_model: bool = False
    stage_times: dict[str, float] = field(default_factory=dict)  # running mean per stage kind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def terminal(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def eta_s(self) -> float:
        """Seconds left, from mean stage times and rounds left; -1 when unknown."""
        per_round = sum(self.stage_times.get(k, 0.0)
                        for k in ("search", "build", "profile", "learn"))
        if self.terminal:
            return 0.0
        if per_round <= 0 or self.batch_size <= 0:
            return -1.0
        rounds_left = max(0, self.trials - self.trials_done) / self.batch_size
        return rounds_left * per_round + self.stage_times.get("compile", 10.0)

    def job_spec(self) -> dict[str, Any]:
        """The simpletvm job.json contents."""
        return {"name": self.name, "target": self.target, "trials": self.trials,
                "batch_size": self.batch_size, "seed": self.seed, "model": self.model,
                "input_shapes": self.input_shapes, "latency_goal_us": self.latency_goal_us,
                "replay": self.replay_dir, "verify_top": self.verify_top,
                "verify_passes": self.verify_passes}


def validate_submission(name: str, model: str, target_text: str, trials: int, batch_size: int,
                        priority: int, latency_goal_us: float, input_shapes_json: str,
                        model_bytes: int) -> tuple[dict[str, Any], dict[str, list[int]] | None]:
    """Check a submission; returns (target dict, input shapes). InvalidRequest says what to fix."""
    from simpletvm.errors import TargetError
    from simpletvm.targets import parse_target

    if not 0 < trials <= MAX_TRIALS:
        raise InvalidRequest(f"trials must be between 1 and {MAX_TRIALS}, got {trials}")
    if not 0 < batch_size <= MAX_BATCH:
        raise InvalidRequest(f"batch size must be between 1 and {MAX_BATCH}, got {batch_size}")
    if abs(priority) > 1000:
        raise InvalidRequest(f"priority must be between -1000 and 1000, got {priority}")
    if not math.isfinite(latency_goal_us) or latency_goal_us < 0:
        raise InvalidRequest(f"latency goal must be positive (microseconds), got {latency_goal_us}")
    if len(name) > 200:
        raise InvalidRequest("job name is longer than 200 characters")
    if model.startswith("zoo:"):
        if model[4:] not in ZOO_MODELS:
            raise InvalidRequest(f"unknown zoo model {model[4:]!r}: choose one of "
                                 f"{', '.join(ZOO_MODELS)}")
    elif model_bytes == 0:
        raise InvalidRequest("no model uploaded: send an .onnx file or name a zoo:MODEL")
    if model_bytes > MAX_MODEL_BYTES:
        raise InvalidRequest(f"model is {model_bytes} bytes, over the {MAX_MODEL_BYTES} limit")
    try:
        target = parse_target(target_text or "cpu", check_with_tvm=False)
    except TargetError as exc:
        raise InvalidRequest(str(exc)) from exc
    except (ValueError, RecursionError) as exc:  # numbers over 4300 digits, deep nesting
        raise InvalidRequest('target is not valid JSON: use "cpu", "cuda" or a dict like '
                             '{"kind": "llvm", "num-cores": 2}') from exc
    shapes = None
    if input_shapes_json:
        try:
            shapes = json.loads(input_shapes_json)
            ok = isinstance(shapes, dict) and all(
                isinstance(v, list) and v
                and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
                for v in shapes.values())
        except (ValueError, RecursionError):  # JSONDecodeError, 4300+ digits, deep nesting
            ok = False
        if not ok:
            raise InvalidRequest('input shapes must be JSON like {"x": [1, 3, 224, 224]}')
        for name, shape in shapes.items():
            if any(d <= 0 for d in shape):
                raise InvalidRequest(f"input shape for {name!r} must be positive integers, "
                                     f"got {shape}")
            if any(d > MAX_INPUT_DIM for d in shape):
                raise InvalidRequest(f"input dimensions must be at most {MAX_INPUT_DIM}, "
                                     f"got {shape} for {name!r}")
            if math.prod(shape) > MAX_INPUT_ELEMENTS:
                raise InvalidRequest(f"input {name!r} would have {math.prod(shape)} elements, "
                                     f"over the {MAX_INPUT_ELEMENTS} limit")
    return target, shapes


def validate_verification(top: int | None, passes: int | None) -> tuple[int, int]:
    """The verification settings of a submission (unset: simpletvm's defaults); InvalidRequest
    says what to fix."""
    top = TuningSpec.verify_top if top is None else top
    passes = TuningSpec.verify_passes if passes is None else passes
    if top != 0 and not 2 <= top <= MAX_VERIFY:
        raise InvalidRequest(f"verify top must be 0 (verification off) or between 2 and "
                             f"{MAX_VERIFY} candidates per task, got {top}")
    if not 1 <= passes <= MAX_VERIFY:
        raise InvalidRequest(f"verify passes must be between 1 and {MAX_VERIFY}, got {passes} "
                             "(to turn verification off, set verify top to 0)")
    return top, passes


def input_ranks(model: Any) -> dict[str, int]:
    """Name -> rank of each input of an ONNX ModelProto (weights excluded; rank 0: unknown)."""
    weights = {t.name for t in model.graph.initializer}
    return {i.name: len(i.type.tensor_type.shape.dim) for i in model.graph.input
            if i.name not in weights}


@functools.cache
def zoo_input_ranks(name: str) -> dict[str, int]:
    """Input ranks of the zoo model `name` (built once at its default shape)."""
    from simpletvm import zoo

    return input_ranks(zoo.build(name))


def check_input_shapes(ranks: dict[str, int], shapes: dict[str, list[int]] | None) -> None:
    """InvalidRequest unless every shape names an input of the model and has its rank."""
    for name, shape in (shapes or {}).items():
        if name not in ranks:
            raise InvalidRequest(f"input shape given for {name!r}, but the model's inputs are "
                                 f"{sorted(ranks)}")
        if ranks[name] and len(shape) != ranks[name]:
            raise InvalidRequest(f"input shape for {name!r} has rank {len(shape)}, but the "
                                 f"model's input has rank {ranks[name]}")
