"""Stage `search`: pick the next task and propose a batch of new candidates with the cost model.

The evolutionary search keeps its set of measured schedules in memory only, so a fresh process
would re-propose them: the more a task has measured, the more of a search's best picks are
schedules measured in earlier rounds (seeded from the database, they score well). So the search
is asked for the batch plus as many as were measured (at most MAX_ASK), and the first `batch`
whose structural hash is not in the task's measured.txt are kept, in the order proposed; only
when fewer than half a batch are new is it told about them and asked again. (Asked for the
batch alone, a conv task with 95 measurements took two 25-s searches per round for one new
candidate: docs/design.md.)

With `sampling` "chameleon" (simpletvm.sampling) the search is asked for POOL batches more, its
distinct proposals (measured or not, at most POOL batches of new ones) are clustered by their
cost-model features, and one new candidate per cluster is kept: at most the batch, fewer when
the proposals bunch up. The plan records how many were proposed and clustered.

A job with `replay` set (an evaluation device) still searches, then measures the candidates the
job at that directory measured in the same round instead, so two ways of running one job can be
compared without search luck.

Once the search is over (budget spent, goal met, every task exhausted) the stage plans one
verification round for all the job's tasks instead (simpletvm.verification), then reports done.
When the estimate meets the latency goal it plans a goal round first (simpletvm.goalcheck).
A job's first search first takes in what earlier jobs measured (simpletvm.warmstart).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from simpletvm import allocation, context, goalcheck, sampling, verification, warmstart
from simpletvm.candidates import shash, to_entry
from simpletvm.errors import JobDirError
from simpletvm.jobdir import JobDir, Progress, TaskInfo, read_json, write_json
from simpletvm.spec import JobSpec
from simpletvm.stages.base import StageContext

MAX_ATTEMPTS = 4
MAX_ASK = 512  # candidates one search is asked for at most (TVM's population size)
POOL = 4  # chameleon sampling: batches of new candidates clustered for one batch
SAMPLING_KEYS = ("proposed", "new", "clusters", "sampling_s")  # what chameleon sampling adds


def next_task(progress: Progress, spec: JobSpec, infos: list[TaskInfo],
              skip: frozenset[int] = frozenset()) -> tuple[int, int] | None:
    """(task, batch) of the next search round (simpletvm.allocation); None when the budget is
    spent or every task not in `skip` is exhausted."""
    total = sum(i.weight * i.flops for i in infos)
    shares = [i.weight * i.flops / total if total else 1.0 for i in infos]
    tasks = allocation.views(shares, [i.weight for i in infos],
                             [t.exhausted for t in progress.tasks], progress.curve)
    return allocation.choose(tasks, spec.batch_size, spec.trials - progress.trials, skip)


def _measured(path: Any) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def _propose(ctx: StageContext, spec: JobSpec, index: int,
             batch: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Up to `batch` new candidates of task `index`, and what it took: "attempts", how many
    times the evolutionary search ran for them (it runs again while most of what it proposes
    was measured already); with chameleon sampling also "proposed", "new", "clusters" and
    "sampling_s" (the seconds features and clustering took)."""
    import tvm
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    job = ctx.job
    info = job.tasks()[index]
    task_dir = job.task_dir(info)
    workload = tvm.ir.load_json((task_dir / "task.json").read_text())
    model = context.cost_model(job.cost_model_path, ctx.threads)
    seed = spec.seed * 100_003 + ctx.round + 1
    tctx = context.tune_context(workload, spec.target, info.name, seed=seed,
                                num_threads=ctx.threads, evolve=context.predicts(model))
    seen = _measured(task_dir / "measured.txt")
    chameleon = spec.sampling == "chameleon"
    # a fresh search does not know what earlier rounds measured (TVM's loop keeps that in the
    # search's state), and its best picks are mostly those: ask for as many more as were
    # measured, so that one search yields a batch of new ones (see the module's docstring)
    ask = (POOL if chameleon else 1) * batch + len(seen)
    tctx.pre_tuning(max_trials=1 << 30, num_trials_per_iter=min(ask, MAX_ASK),
                    design_spaces=tctx.generate_design_space(),
                    database=context.database(task_dir), cost_model=model)

    def propose() -> list[Any]:
        return list(tctx.generate_measure_candidates() or [])

    def mark_measured(proposed: list[Any]) -> None:  # so the next call proposes others
        tctx.notify_runner_results(proposed, [RunnerResult([1.0], None)] * len(proposed))

    def hash_of(cand: Any) -> str:
        return shash(cand.sch.mod)

    if chameleon:
        pool, new, attempts = candidate_pool(propose, mark_measured, hash_of, seen,
                                             max(1, batch // 2), POOL * batch)
        started = time.perf_counter()
        features = model.extractor.extract_from(tctx, pool) if any(new) else []
        chosen, clusters = _clustered(features, new, batch, seed)
        out = [to_entry(pool[i]) for i in chosen]
        stats = {"attempts": attempts, "proposed": len(pool), "new": sum(new),
                 "clusters": clusters, "sampling_s": round(time.perf_counter() - started, 3)}
    else:
        out, attempts = fresh_candidates(propose, mark_measured, to_entry, seen, batch,
                                         hash_of=hash_of)
        stats = {"attempts": attempts}
    tctx.post_tuning()
    return out, stats


def _clustered(features: list[Any], new: list[bool], batch: int,
               seed: int) -> tuple[list[int], int]:
    """The pool's indices to measure (one new candidate per cluster of `features`, TVM tensors
    of per-store features) and the number of clusters; a candidate whose features are not
    finite is never picked."""
    if not features:
        return [], 0
    rows = sampling.vectors([x.numpy() for x in features])
    finite = np.isfinite(rows).all(axis=1)
    rows[~finite] = 0.0
    groups = sampling.clusters(rows, batch, seed)
    return sampling.representatives(groups, list(np.asarray(new) & finite)), len(groups)


def candidate_pool(propose: Callable[[], list[Any]], mark_measured: Callable[[list[Any]], None],
                   hash_of: Callable[[Any], str], seen: set[str], enough: int, limit: int,
                   ) -> tuple[list[Any], list[bool], int]:
    """What chameleon sampling clusters: the distinct candidates `propose` gives and whether
    each is new (its hash not in `seen`), asking again (after `mark_measured`) while fewer than
    `enough` are new, at most MAX_ATTEMPTS times; new ones past the first `limit` are left out.
    Measured ones stay in: they show where the search's proposals bunch (sampling's docstring).
    And how many times it asked."""
    pool: list[Any] = []
    new: list[bool] = []
    keys: set[str] = set()
    attempts = fresh_ones = 0
    for attempts in range(1, MAX_ATTEMPTS + 1):  # noqa: B007  (the count is returned)
        proposed = propose()
        if not proposed:
            break
        for cand in proposed:
            key = hash_of(cand)
            fresh = key not in seen
            if key in keys or (fresh and fresh_ones >= limit):
                continue
            keys.add(key)
            pool.append(cand)
            new.append(fresh)
            fresh_ones += fresh
        if fresh_ones >= enough:
            break
        mark_measured(proposed)
    return pool, new, attempts


def fresh_candidates(propose: Callable[[], list[Any]], mark_measured: Callable[[list[Any]], None],
                     entry_of: Callable[[Any], dict[str, Any]], seen: set[str],
                     batch: int, hash_of: Callable[[Any], str] | None = None,
                     ) -> tuple[list[dict[str, Any]], int]:
    """Up to `batch` entries whose hash is not in `seen`, in the order proposed, asking
    `propose` again (after `mark_measured`) while fewer than half a batch (at least one) are
    new; and how many times it asked. At most MAX_ATTEMPTS asks: an empty list means the search
    has nothing new. `hash_of` (default: the entry's) spares making entries of the rest."""
    hash_of = hash_of or (lambda cand: entry_of(cand)["hash"])
    pool, new, attempts = candidate_pool(propose, mark_measured, hash_of, seen,
                                         max(1, batch // 2), batch)  # a batch of one asks again
    return [entry_of(cand) for cand, fresh in zip(pool, new, strict=True) if fresh], attempts


def replayed(source: str, round_: int) -> dict[str, Any]:
    """Round `round_` of the job at `source` as this round's plan; past its last round: done
    (JobDirError when `source` has no first round)."""
    path = JobDir(source).round_dir(round_) / "candidates.json"
    if not path.exists():
        if round_ == 0:
            raise JobDirError(f"nothing to replay: {path} is missing (replay must name the "
                              "directory of a job that has tuned)")
        return {"task": None, "candidates": [], "exhausted_tasks": []}
    plan = read_json(path)
    if verification.is_verify_plan(plan):  # its search is over; this job verifies its own
        return {"task": None, "candidates": [], "exhausted_tasks": []}
    return {k: plan[k] for k in ("task", "candidates", "exhausted_tasks")}


def run(ctx: StageContext) -> dict[str, Any]:
    """Write rounds/rNNNN/candidates.json; report the task, the count and whether tuning is done."""
    job = ctx.job
    warmstart.take_in(job, ctx.threads)  # the first search: what earlier jobs measured
    spec, progress = job.spec(), job.progress()
    plan: dict[str, Any] = {"task": None, "candidates": [], "exhausted_tasks": []}
    infos = job.tasks()
    if not verification.tuning_over(spec, progress, infos):
        if goalcheck.due(spec, progress, infos):  # the estimate meets the goal: measure
            plan = goalcheck.plan(spec, progress, infos, [])
        else:
            plan = _search(ctx, spec, progress)
            if spec.replay:
                plan = replayed(spec.replay, ctx.round)
    if plan["task"] is None and not goalcheck.is_goal_plan(plan):
        due = verification.due_tasks(spec, progress)
        if due:
            plan = verification.plan(job, spec, due, plan["exhausted_tasks"])
    write_json(ctx.round_dir / "candidates.json", plan)
    verify, goal = verification.is_verify_plan(plan), goalcheck.is_goal_plan(plan)
    return {"task": plan["task"], "candidates": len(plan["candidates"]),
            "exhausted_tasks": plan["exhausted_tasks"], "verify": verify, "goal_check": goal,
            "verified_tasks": verification.verified_tasks(plan),
            "done": plan["task"] is None and not verify and not goal,
            "trials_total": progress.trials, "attempts": plan.get("attempts", 0),
            **{k: plan[k] for k in SAMPLING_KEYS if k in plan},
            "estimated_latency_us": progress.estimated_latency_us(infos),
            **warmstart.reused(progress)}


def _search(ctx: StageContext, spec: JobSpec, progress: Progress) -> dict[str, Any]:
    exhausted: list[int] = []
    infos = ctx.job.tasks()
    choice, found, attempts = next_task(progress, spec, infos), [], 0
    stats: dict[str, Any] = {}
    while choice is not None:
        found, stats = _propose(ctx, spec, *choice)
        attempts += stats["attempts"]
        if found:
            break
        exhausted.append(choice[0])
        choice = next_task(progress, spec, infos, frozenset(exhausted))
    return {"task": choice[0] if choice else None, "candidates": found,
            "exhausted_tasks": exhausted, **stats, "attempts": attempts}
