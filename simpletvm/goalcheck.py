"""The latency goal, judged by a measurement instead of a sum of per-task estimates.

Once the estimate (each task's best time, weighted) says the model meets the job's latency
goal, the search plans a goal round before it stops: build compiles the whole model with the
job's records, profile times it (alone on its device: the profile lease is exclusive), learn
writes the measurement down. If the model meets the goal, tuning is over (verification and
compile follow); if not, tuning goes on, and the goal is checked again once the estimate is 5%
better than at the missed check. A warm-started job whose known records already meet the goal
is done without a search round.
"""

from __future__ import annotations

from typing import Any

from simpletvm.jobdir import JobDir, Progress, TaskInfo
from simpletvm.spec import JobSpec

GOAL = "goal"  # the plan key of a goal round
RECHECK = 0.95  # a missed goal is checked again once the estimate is this much of the last one


def due(spec: JobSpec, progress: Progress, infos: list[TaskInfo]) -> bool:
    """Whether the estimate meets the goal and no measurement has judged it yet (or the
    estimate has improved since a missed check)."""
    estimate = progress.estimated_latency_us(infos)
    if spec.latency_goal_us is None or estimate is None or estimate > spec.latency_goal_us:
        return False
    if not progress.goal_checks:
        return True
    last = progress.goal_checks[-1]
    return not last["met"] and estimate < RECHECK * last["estimate_us"]


def plan(spec: JobSpec, progress: Progress, infos: list[TaskInfo],
         exhausted: list[int]) -> dict[str, Any]:
    return {"task": None, "candidates": [], "exhausted_tasks": exhausted,
            GOAL: {"latency_us": spec.latency_goal_us,
                   "estimate_us": progress.estimated_latency_us(infos)}}


def is_goal_plan(plan: dict[str, Any]) -> bool:
    return GOAL in plan


def build(job: JobDir, out: Any) -> dict[str, Any]:
    """Compile the whole model with the job's records into `out` (a .so); artifact or error."""
    from tvm.s_tir import meta_schedule as ms

    from simpletvm import models, verification
    from simpletvm.errors import last_line
    from simpletvm.targets import to_tvm

    try:
        records = verification.open_records(job.root / "tasks")  # (no bool(): UnionDatabase
        if records is None:  # has no size)
            records = ms.database.MemoryDatabase()
        mod = models.load_module(job.model_path)
        executable = ms.relax_integration.compile_relax(records, mod, to_tvm(job.spec().target),
                                                        params=None)
        executable.export_library(str(out))
    except Exception as exc:  # a model that does not compile is a missed goal, said why
        return {"artifact": None, "error": f"{type(exc).__name__}: {last_line(exc)}"}
    return {"artifact": str(out), "error": None}


def time_model(job: JobDir, built: dict[str, Any], device: str) -> dict[str, Any]:
    """Time the built model (its VM `main` on random inputs): run seconds or the error."""
    import tvm

    from simpletvm import benchmark, models

    if built["error"] is not None:
        return {"run_secs": None, "error": built["error"]}
    executable = tvm.runtime.load_module(built["artifact"])
    latency, _ = benchmark.measure(executable, models.load_input_specs(job.model_path), device)
    return {"run_secs": [latency.median_us * 1e-6], "error": None}


def record(progress: Progress, round_: int, plan: dict[str, Any],
           result: dict[str, Any]) -> dict[str, Any]:
    """Write the goal round's measurement into progress; the check as recorded."""
    goal = plan[GOAL]
    measured = result["run_secs"][0] * 1e6 if result["run_secs"] else None
    check = {"round": round_, "goal_us": goal["latency_us"], "estimate_us": goal["estimate_us"],
             "measured_us": measured, "met": measured is not None
             and measured <= goal["latency_us"], "error": result["error"]}
    progress.goal_checks.append(check)
    return check
