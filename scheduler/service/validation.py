"""What the daemon checks beyond a JobSpec's own rules: the uploaded model, a runner's
Register, a stage's result numbers. Each failure is an InvalidRequest saying what to fix (a bad
stage result becomes a failed stage instead, retried like any failure)."""

from __future__ import annotations

import math
from typing import Any

from scheduler.service.errors import InvalidRequest
from simpletvm.spec import JobSpec, SpecError, check_input_ranks


def check_submission(spec: JobSpec, model: bytes) -> None:
    """A spec goes with a model: uploaded ONNX whose inputs its shapes name, or a zoo name
    (whose input shapes the spec checked against the zoo's table)."""
    if not model:
        if not spec.model.startswith("zoo:"):
            raise InvalidRequest("no model uploaded: send an .onnx file or name a zoo:MODEL")
        return
    try:
        check_input_ranks(onnx_input_ranks(model), spec.input_shapes)
    except SpecError as exc:
        raise InvalidRequest(str(exc)) from exc


def onnx_input_ranks(model: bytes) -> dict[str, int]:
    """Name -> rank of each input of ONNX `model` (weights excluded; rank 0: unknown). Reads
    the model with onnx (imported here, on the first upload): no TVM."""
    from simpletvm.errors import ModelError
    from simpletvm.models import read_onnx

    try:
        graph = read_onnx(model).graph
    except ModelError as exc:
        raise InvalidRequest(str(exc)) from exc
    weights = {t.name for t in graph.initializer}
    return {i.name: len(i.type.tensor_type.shape.dim) for i in graph.input
            if i.name not in weights}


def check_register(register: dict[str, Any]) -> None:
    """A runner's Register names itself and its host and offers valid resources."""
    if not register.get("runner_id") or not register.get("host_id"):
        raise InvalidRequest("register needs a runner_id and a host_id")
    if not register.get("cores"):
        raise InvalidRequest("register needs at least one core")
    for kind in ("cores", "gpus"):
        ids = list(register.get(kind, ()))
        if len(set(ids)) != len(ids) or not all(0 <= i < 65536 for i in ids):
            raise InvalidRequest(f"register {kind} must be distinct ids from 0 to 65535")
    if register.get("memory_mb", 0) < 0:
        raise InvalidRequest("register memory_mb must not be negative")


COUNT_KEYS = ("trials", "measured", "trials_total", "reused_records", "reused_tasks",
              "known_trials", "tasks")
LATENCY_KEYS = ("best_latency_us", "estimated_latency_us", "tuned_us", "untuned_us")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _is_latency(value: Any) -> bool:
    """A finite, non-negative number (or None: not measured)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and math.isfinite(value) and value >= 0)


def malformed_result(result: dict[str, Any]) -> str:
    """Why a stage result's numbers cannot be used ("" when they can): the core and the job
    records do arithmetic on them, so a runner must not smuggle in strings, NaN or negatives."""
    for key in COUNT_KEYS:
        if key in result and not _is_count(result[key]):
            return f"result key {key!r} must be a count, got {str(result[key])[:40]!r}"
    for key in LATENCY_KEYS:
        if not _is_latency(result.get(key)):
            return (f"result key {key!r} must be a latency in microseconds, "
                    f"got {str(result[key])[:40]!r}")
    rows = result.get("task_rows")
    if rows is not None and not (isinstance(rows, list) and len(rows) <= MAX_TASK_ROWS
                                 and all(_task_row_ok(r) for r in rows)):
        return (f"result key 'task_rows' must be at most {MAX_TASK_ROWS} rows of name, weight, "
                "flops, trials, best_us, verified_us, exhausted")
    return ""


MAX_TASK_ROWS = 4096
_ROW_KEYS = {"name", "weight", "flops", "trials", "best_us", "verified_us", "exhausted"}


def _task_row_ok(row: Any) -> bool:
    """A task row as `Progress.task_rows` writes it (shown on the dashboard, so bounded)."""
    return (isinstance(row, dict) and set(row) == _ROW_KEYS and isinstance(row["name"], str)
            and len(row["name"]) <= 256 and isinstance(row["exhausted"], bool)
            and _is_count(row["trials"]) and _is_count(row["weight"])
            and row["flops"] is not None and _is_latency(row["flops"])
            and _is_latency(row["best_us"]) and _is_latency(row["verified_us"]))


def checked_result(result: dict[str, Any]) -> dict[str, Any]:
    """A runner's result (`convert.result_dict`) the core can use: JSON that is not an object
    counts as no result; a successful one whose numbers are malformed becomes a failed stage
    saying so."""
    payload = result["result"] if isinstance(result["result"], dict) else {}
    result = {**result, "result": payload}
    why = malformed_result(payload) if result["ok"] else ""
    if why:
        result.update(ok=False, error=f"runner sent a malformed result: {why}", result={})
    return result
