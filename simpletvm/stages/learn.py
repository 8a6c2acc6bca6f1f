"""Stage `learn`: commit the round's measurements to the task database and the cost model.

The only writer of the task's database, measured.txt, cost_model.tar and progress.json.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from simpletvm import context
from simpletvm.candidates import to_measure_candidate
from simpletvm.jobdir import read_json
from simpletvm.stages.base import StageContext

FAILED_RUN_SECS = 1e10  # what MetaSchedule records for a candidate that did not run


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _commit(ctx: StageContext, task: int, entries: list[dict[str, Any]],
            results: list[dict[str, Any]]) -> None:
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    job, spec = ctx.job, ctx.job.spec()
    info = job.tasks()[task]
    task_dir = job.task_dir(info)
    workload = tvm.ir.load_json((task_dir / "task.json").read_text())
    tctx = context.tune_context(workload, spec.target, info.name, seed=0, num_threads=ctx.threads)
    cands = [to_measure_candidate(workload, e) for e in entries]
    runner_results = [RunnerResult(r["run_secs"], r["error"]) for r in results]
    model = context.cost_model(job.cost_model_path, ctx.threads)
    model.last_train_size = job.progress().cost_model_trained_size
    model.update(tctx, cands, runner_results)
    model.save(str(job.cost_model_path))
    db = context.database(task_dir)
    wl = db.commit_workload(workload)
    for cand, res in zip(cands, results, strict=True):
        run_secs = res["run_secs"] or [FAILED_RUN_SECS]
        db.commit_tuning_record(ms.database.TuningRecord(
            cand.sch.trace, wl, [float(s) for s in run_secs], tctx.target, cand.args_info))
    with open(task_dir / "measured.txt", "a") as f:
        f.write("".join(e["hash"] + "\n" for e in entries))
    return model.last_train_size


def _committed(job: Any, task: int, entries: list[dict[str, Any]]) -> bool:
    """True when every candidate of the round is already in the task's measured.txt."""
    path = job.task_dir(job.tasks()[task]) / "measured.txt"
    measured = set(path.read_text().split()) if path.exists() else set()
    return all(e["hash"] in measured for e in entries)


def run(ctx: StageContext) -> dict[str, Any]:
    """Update database, cost model and progress.json; delete the round's artifacts."""
    job = ctx.job
    plan = read_json(ctx.round_dir / "candidates.json")
    progress = job.progress()
    task, entries = plan["task"], plan["candidates"]
    if entries and _committed(job, task, entries):  # a retried learn: do not count twice
        return _summary(job, progress, plan, None, replayed=True)
    for index in plan.get("exhausted_tasks", []):
        progress.tasks[index].exhausted = True
    batch_best = None
    if task is not None and entries:
        results = read_json(ctx.round_dir / "results.json")["results"]
        trained = _commit(ctx, task, entries, results)
        progress.cost_model_trained_size = trained
        medians = [_median(r["run_secs"]) * 1e6 for r in results if r["run_secs"]]
        batch_best = min(medians) if medians else None
        state = progress.tasks[task]
        state.trials += len(entries)
        progress.trials += len(entries)
        if batch_best is not None and (state.best_us is None or batch_best < state.best_us):
            state.best_us = batch_best
    progress.rounds = ctx.round + 1
    infos = job.tasks()
    progress.curve.append({"round": ctx.round, "time": time.time(), "trials": progress.trials,
                           "task": task, "batch_best_us": batch_best,
                           "estimated_latency_us": progress.estimated_latency_us(infos)})
    job.write_progress(progress)
    shutil.rmtree(ctx.round_dir / "art", ignore_errors=True)
    return _summary(job, progress, plan, batch_best, replayed=False)


def _summary(job: Any, progress: Any, plan: dict[str, Any], batch_best: float | None,
             replayed: bool) -> dict[str, Any]:
    spec = job.spec()
    estimate = progress.estimated_latency_us(job.tasks())
    goal_met = spec.latency_goal_us is not None and estimate is not None \
        and estimate <= spec.latency_goal_us
    exhausted = all(t.exhausted for t in progress.tasks)
    return {"task": plan["task"], "trials": len(plan["candidates"]),
            "trials_total": progress.trials, "batch_best_us": batch_best,
            "estimated_latency_us": estimate, "replayed": replayed,
            "done": progress.trials >= spec.trials or goal_met or exhausted}
