"""Candidates cross process boundaries as JSON traces, replayed onto the task's workload.

`tvm.ir.save_json` of a Trace segfaults on replay; `Trace.as_json()` works once its IntImm
leaves are turned into plain ints.
"""

from __future__ import annotations

import contextlib
from typing import Any

import tvm_ffi


def _plain(obj: Any) -> Any:
    kind = type(obj).__name__
    if isinstance(obj, (list, tuple)) or kind == "Array":
        return [_plain(x) for x in obj]
    if isinstance(obj, dict) or kind == "Map":
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if kind in ("IntImm", "FloatImm"):
        return obj.value
    if kind == "String":
        return str(obj)
    return obj


def trace_to_json(trace: Any) -> Any:
    """A JSON-serialisable form of a schedule trace."""
    return _plain(trace.as_json())


def replay(workload: Any, trace_json: Any) -> Any:
    """The Schedule that `trace_json` produces on `workload`."""
    from tvm.s_tir import Schedule
    from tvm.s_tir.schedule import Trace

    sch = Schedule(workload)
    Trace.apply_json_to_schedule(trace_json, sch)
    return sch


def to_measure_candidate(workload: Any, entry: dict[str, Any]) -> Any:
    """A MeasureCandidate from a candidates.json entry."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate

    sch = replay(workload, entry["trace"])
    return MeasureCandidate(sch, [ArgInfo.from_json(a) for a in entry["args_info"]])


def shash(mod: Any) -> str:
    """Structural hash of a module, as a string."""
    return str(tvm_ffi.structural_hash(mod))


def to_entry(candidate: Any) -> dict[str, Any]:
    """A candidates.json entry for a MeasureCandidate."""
    return {
        "trace": trace_to_json(candidate.sch.trace),
        "args_info": [_plain(a.as_json()) for a in candidate.args_info],
        "hash": shash(candidate.sch.mod),
    }


def default_entry(workload: Any) -> dict[str, Any]:
    """The candidates.json entry of a task's default schedule: its workload as extracted, not
    transformed at all, which is what a CPU model built without records runs (TVM's CPU
    pipeline schedules nothing). Marked `default`.

    Its trace looks up the root block and changes nothing: MetaSchedule's databases leave a
    record with an empty trace out of their top-k, so an empty one could never be kept."""
    from tvm.s_tir import Schedule
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.schedule.schedule import ScheduleError

    sch = Schedule(workload)
    with contextlib.suppress(ScheduleError):  # no root block: the empty trace, which cannot win
        sch.get_sblock("root")
    return {"trace": trace_to_json(sch.trace),
            "args_info": [_plain(a.as_json()) for a in ArgInfo.from_entry_func(workload)],
            "hash": shash(sch.mod), "default": True}


def task_default_entry(task_dir: Any) -> dict[str, Any]:
    """`default_entry` of the task whose directory is `task_dir` (its task.json)."""
    import tvm

    return default_entry(tvm.ir.load_json((task_dir / "task.json").read_text()))
