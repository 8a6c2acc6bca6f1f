"""Stage `learn`: commit the round's measurements to the task database and the cost model.

The only writer of the task's database, measured.txt, cost_model.tar and progress.json. A
verification round (simpletvm.verification) goes to each of its tasks' verified/ databases
instead and teaches the cost model nothing: its candidates were measured already.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from simpletvm import context, goalcheck, taskdb, verification
from simpletvm.candidates import to_measure_candidate
from simpletvm.jobdir import read_json, write_json
from simpletvm.stages.base import StageContext


def _commit(ctx: StageContext, task_dir: Path, info: Any, entries: list[dict[str, Any]],
            results: list[dict[str, Any]], trained_size: int) -> int:
    """Append the round's records and hashes; update and save the cost model (atomically)."""
    job = ctx.job
    tctx, cands, runner_results = taskdb.append(job, task_dir, info.name, entries, results,
                                                ctx.threads)
    model = context.cost_model(job.cost_model_path, ctx.threads)
    model.last_train_size = trained_size
    model.update(tctx, cands, runner_results)
    model.save(str(taskdb.pending_model(job)))
    return model.last_train_size


def _plan_id(round_: int, entries: list[dict[str, Any]]) -> str:
    digest = hashlib.sha1("".join(e["hash"] for e in entries).encode()).hexdigest()[:16]
    return f"{round_}:{digest}"


def run(ctx: StageContext) -> dict[str, Any]:
    """Update database, cost model and progress.json; delete the round's artifacts."""
    job = ctx.job
    plan = read_json(ctx.round_dir / "candidates.json")
    progress = job.progress()
    task, entries = plan["task"], plan["candidates"]
    plan_id = _plan_id(ctx.round, entries)
    if any(c.get("plan") == plan_id for c in progress.curve):  # a retried learn: committed
        _finish(ctx)  # it may have died between progress.json and the cost model
        return _summary(job, progress, plan, None, replayed=True)
    for index in plan.get("exhausted_tasks", []):
        progress.tasks[index].exhausted = True
    batch_best, changed = None, 0
    infos = job.tasks()
    verify = verification.is_verify_plan(plan)
    if goalcheck.is_goal_plan(plan):
        goalcheck.record(progress, ctx.round, plan,
                         read_json(ctx.round_dir / "results.json")["model"])
    elif verify:
        results = read_json(ctx.round_dir / "results.json")["results"] if entries else []
        for index in verification.verified_tasks(plan):
            mine = [i for i, c in enumerate(entries) if c["task"] == index]
            if mine:
                progress.tasks[index].verified_us = _commit_verified(
                    ctx, job.task_dir(infos[index]), infos[index], [entries[i] for i in mine],
                    [results[i] for i in mine])
                changed += _kept_another(job.task_dir(infos[index]))
            progress.tasks[index].verified = True  # even if nothing ran: it had its round
    elif task is not None and entries:
        info = infos[task]
        task_dir = job.task_dir(info)
        taskdb.truncate_uncommitted(task_dir, progress.committed_bytes.get(info.dirname, {}))
        results = read_json(ctx.round_dir / "results.json")["results"]
        progress.cost_model_trained_size = _commit(ctx, task_dir, info, entries, results,
                                                   progress.cost_model_trained_size)
        progress.committed_bytes[info.dirname] = taskdb.committed_sizes(task_dir)
        medians = [statistics.median(r["run_secs"]) * 1e6 for r in results if r["run_secs"]]
        batch_best = min(medians) if medians else None
        state = progress.tasks[task]
        state.trials += len(entries)
        progress.trials += len(entries)
        if batch_best is not None and (state.best_us is None or batch_best < state.best_us):
            state.best_us = batch_best
    progress.rounds = ctx.round + 1
    progress.curve.append({"round": ctx.round, "plan": plan_id, "time": time.time(),
                           "trials": progress.trials, "task": task, "batch_best_us": batch_best,
                           "estimated_latency_us": progress.estimated_latency_us(infos),
                           "verify": verify, "goal": goalcheck.is_goal_plan(plan)})
    job.write_progress(progress)  # the commit point
    _finish(ctx)
    return {**_summary(job, progress, plan, batch_best, replayed=False), "verify_changed": changed}


def _kept_another(task_dir: Path) -> int:
    """1 when the task's verification kept another kernel than its search timings picked
    (the fastest by search time; the default schedule, never searched, counts as another)."""
    summary = verification.summary(task_dir) or {}
    searched = [r for r in summary.get("candidates", []) if r.get("search_us") is not None]
    if not searched:
        return 0
    pick = min(searched, key=lambda r: r["search_us"])["hash"]
    return int(summary["kept"] is not None and summary["kept"] != pick)


def _finish(ctx: StageContext) -> None:
    """After the commit point: the trained cost model takes its place; the round's compiled
    artifacts go. Both are idempotent, so a learn that died in here is finished by its retry."""
    taskdb.install_pending_model(ctx.job)
    shutil.rmtree(ctx.round_dir / "art", ignore_errors=True)


def _commit_verified(ctx: StageContext, task_dir: Path, info: Any, entries: list[dict[str, Any]],
                     results: list[dict[str, Any]]) -> float | None:
    """Write the task's verified/ database (each candidate at its verified time) and
    verified.json; the kept candidate's time in us. Rewritten whole, so a retry is harmless."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    workload = tvm.ir.load_json((task_dir / "task.json").read_text())
    target = context.tune_context(workload, ctx.job.spec().target, info.name, seed=0,
                                  num_threads=ctx.threads).target
    tmp = task_dir / (verification.VERIFIED + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    db = ms.database.JSONDatabase(work_dir=str(tmp), module_equality="structural")
    wl = db.commit_workload(workload)
    rows = []
    estimates = verification.verified_secs([res["run_secs"] or [] for res in results])
    for entry, res, secs in zip(entries, results, estimates, strict=True):
        rows.append({"hash": entry["hash"], "search_us": entry.get("search_us"),
                     "passes_us": [s * 1e6 for s in res["run_secs"] or []],
                     "verified_us": secs * 1e6 if secs is not None else None,
                     "error": res["error"], "default": bool(entry.get("default"))})
        if secs is not None:
            cand = to_measure_candidate(workload, entry)
            db.commit_tuning_record(ms.database.TuningRecord(
                cand.sch.trace, wl, [secs], target, cand.args_info))
    timed = [r for r in rows if r["verified_us"] is not None]
    best = min(timed, key=lambda r: r["verified_us"]) if timed else None
    final = task_dir / verification.VERIFIED
    shutil.rmtree(final, ignore_errors=True)
    if timed:
        tmp.replace(final)
    else:
        shutil.rmtree(tmp)
    write_json(task_dir / verification.SUMMARY, {
        "round": ctx.round, "kept": best["hash"] if best else None,
        "kept_default": bool(best and best["default"]), "candidates": rows})
    return best["verified_us"] if best else None


def _summary(job: Any, progress: Any, plan: dict[str, Any], batch_best: float | None,
             replayed: bool) -> dict[str, Any]:
    spec, infos = job.spec(), job.tasks()
    over = verification.tuning_over(spec, progress, infos)
    verify = verification.is_verify_plan(plan)
    return {"task": plan["task"], "trials": 0 if verify else len(plan["candidates"]),
            "trials_total": progress.trials, "batch_best_us": batch_best,
            "estimated_latency_us": progress.estimated_latency_us(infos), "replayed": replayed,
            "task_rows": progress.task_rows(infos),
            "verify": verify,
            "verified_tasks": verification.verified_tasks(plan),
            "done": over and not verification.due_tasks(spec, progress)}
