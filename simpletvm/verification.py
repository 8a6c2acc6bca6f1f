"""Verification: once the search is over, time each task's leading candidates again, together.

A tuning run times each batch once, minutes apart from the others. Within a batch the ranks
hold (Spearman about 0.9 against a quiet re-measurement), but a batch timed in a slow or a
fast minute shifts as a whole, and the least time over all batches, which is what the records
database hands the compiler, is partly the luckiest minute: in one evaluation run, sequential
tuning kept a conv2d kernel 1.6x slower than its best candidate timed alone.

So after the last search round the job gets one more round, for all its tasks at once: each
task's leading candidates are rebuilt (one build over the leased cores) and timed in `passes`
interleaved passes (A B C D, D C B A, ...), each taking one sample of each. A slow moment
lands on all of one pass alike, so each candidate is judged by its time relative to the
others, pass by pass (simpletvm.turns), not by the median of its own samples. One round, not
one per task: a job's tail is then one search, build, profile and learn, however many tasks
it has. The learn stage writes each task's candidates to that task's `verified/` records
database, and every consumer of records (`open_records`) takes a task's verified records over
its search records.

Never worse than not tuning: on a CPU target each task's default schedule (its workload as
extracted, which is what the untuned build runs) is timed in the same passes and kept when it
wins, so a small budget whose candidates are all slower than the default cannot give a model
slower than the untuned one. (On cuda the default schedule is dlight's, applied at compile time
to tasks without records; it is not a trace, so it does not take part.)

Leading candidates: each batch's fastest first, then each batch's second, and so on, each
tier ordered by mean time; the first `top` of them. A batch timed in a slow minute still puts
its best forward, and the candidate the search records would pick is always among them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpletvm import turns
from simpletvm.candidates import task_default_entry
from simpletvm.jobdir import JobDir, Progress, TaskInfo, read_json
from simpletvm.spec import JobSpec
from simpletvm.taskdb import MEASURED, RECORDS
from simpletvm.tuningdb import FAILED_RUN_SECS, RECORD_FILE

VERIFIED = "verified"  # tasks/NN/verified/: a JSONDatabase of the re-timed candidates
SUMMARY = "verified.json"  # tasks/NN/verified.json: what was re-timed, pass by pass
REUSED_TOP = 6  # with verification off, a reused task's leading candidates timed again


def tuning_over(spec: JobSpec, progress: Progress, infos: list[TaskInfo]) -> bool:
    """The search is over: budget spent, every task exhausted, or the latency goal met by
    the whole model, measured (simpletvm.goalcheck)."""
    if progress.trials >= spec.trials or all(t.exhausted for t in progress.tasks):
        return True
    return progress.goal_met


def due_tasks(spec: JobSpec, progress: Progress) -> list[int]:
    """The tasks to verify: not verified yet, with at least two candidates measured and one
    that ran; none when done. With verification off (verify_top 0), still the tasks that took
    in records of earlier jobs: those were timed on another day or another machine of the
    same target key, and are never kept untimed."""
    reused = {int(name) for name in (progress.known or {}).get("lines", {})}
    return [index for index, task in enumerate(progress.tasks)
            if (spec.verify_top or index in reused) and not task.verified
            and task.best_us is not None and task.trials >= 2]


def top_of(spec: JobSpec) -> int:
    """Candidates per task a verification round times again (REUSED_TOP when verification
    is off and only reused records are re-timed)."""
    return spec.verify_top or REUSED_TOP


def is_verify_plan(plan: dict[str, Any]) -> bool:
    return bool(plan.get("verify"))


def _batches(job: JobDir, task: int, progress: Progress) -> list[list[tuple[float, dict]]]:
    """Per search round of `task`: (mean run seconds, candidate entry) of each that ran.

    Read from what the learn stage committed, which travels with the job between hosts (round
    directories do not): the task's records and measured hashes, line for line in commit
    order, cut into batches by the sizes of its rounds in the progress curve. Records a warm
    start took in from earlier jobs are one batch, first: so the best known candidate is
    timed again with the job's own (simpletvm.warmstart)."""
    info = job.tasks()[task]
    task_dir = job.task_dir(info)
    lines = (task_dir / RECORDS).read_text().splitlines() if (task_dir / RECORDS).exists() else []
    hashes = (task_dir / MEASURED).read_text().split() if (task_dir / MEASURED).exists() else []
    sizes, before = [], 0
    for point in progress.curve:
        if point.get("task") == task and not point.get("verify"):  # a warm start's import
            sizes.append(point.get("records", point["trials"] - before))  # counts its trials
        before = point["trials"]  # apart from the records it took in
    batches, start = [], 0
    for size in sizes:
        batch = []
        for line, hash_ in zip(lines[start:start + size], hashes[start:start + size],
                               strict=True):
            trace, run_secs, _, args_info = json.loads(line)[1]
            if max(run_secs) < FAILED_RUN_SECS:
                batch.append((statistics.fmean(run_secs),
                              {"trace": trace, "args_info": args_info, "hash": hash_}))
        batches.append(batch)
        start += size
    return batches


def leading(batches: list[list[tuple[float, dict[str, Any]]]], top: int) -> list[dict[str, Any]]:
    """Each batch's fastest, then each batch's second, ..., each tier by mean time; the first
    `top` distinct candidates, each with its search-time mean as `search_us`."""
    ranked = [sorted(b, key=lambda p: p[0]) for b in batches]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for tier in range(max((len(b) for b in ranked), default=0)):
        for secs, entry in sorted((b[tier] for b in ranked if tier < len(b)),
                                  key=lambda p: p[0]):
            if entry["hash"] not in seen and len(out) < top:
                seen.add(entry["hash"])
                out.append({**entry, "search_us": secs * 1e6})
    return out


def plan(job: JobDir, spec: JobSpec, tasks: list[int], exhausted: list[int],
         default: Callable[[Path], dict[str, Any]] = task_default_entry) -> dict[str, Any]:
    """The verification round of `tasks`: each one's leading candidates (each candidate names
    its task), then, for a CPU target, the task's default schedule (`default(task_dir)`), all
    timed together in interleaved passes."""
    progress = job.progress()
    infos = job.tasks()
    candidates = []
    for task in tasks:
        found = leading(_batches(job, task, progress), top_of(spec))
        if spec.target_kind == "llvm":
            entry = default(job.task_dir(infos[task]))
            found += [] if any(c["hash"] == entry["hash"] for c in found) else [entry]
        candidates += [{**entry, "task": task} for entry in found]
    return {"task": None, "candidates": candidates, "exhausted_tasks": exhausted,
            "verify": {"passes": spec.verify_passes, "tasks": tasks}}


def task_of(plan: dict[str, Any], candidate: dict[str, Any]) -> int:
    """The task a planned candidate belongs to: its own in a verification plan, else the plan's."""
    return int(candidate.get("task", plan["task"]))


def verified_tasks(plan: dict[str, Any]) -> list[int]:
    """The tasks a verification plan verifies (empty for a search plan)."""
    return list(plan["verify"]["tasks"]) if is_verify_plan(plan) else []


def pass_order(count: int, pass_: int) -> list[int]:
    """Positions in the order pass `pass_` times them: forward on even passes, backward on odd."""
    order = list(range(count))
    return order[::-1] if pass_ % 2 else order


def verified_secs(per_pass: list[list[float]]) -> list[float | None]:
    """What one task's verified candidates are recorded at, given each one's per-pass times
    (empty: it did not run): their times pass by pass with the machine's drift taken out
    (simpletvm.turns); None for those that did not run."""
    estimates = turns.in_turns(dict(enumerate(per_pass)))
    return [estimates.get(i) for i in range(len(per_pass))]


def summary(task_dir: Path) -> dict[str, Any] | None:
    """The task's verification summary (`kept` is the hash the compiler will use), if any."""
    path = task_dir / SUMMARY
    return read_json(path) if path.exists() else None


def open_records(root: str | Path) -> Any:
    """Every MetaSchedule records database under `root`, as one database for the compiler: a
    task's `verified/` records win over its search records for the workloads they hold."""
    from tvm.s_tir import meta_schedule as ms

    dirs = sorted({p.parent for p in Path(root).rglob(RECORD_FILE)})
    if not dirs:
        return None
    verified = [ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")
                for d in dirs if d.name == VERIFIED]
    rest = ms.database.UnionDatabase(
        *[ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")
          for d in dirs if d.name != VERIFIED])
    if not verified:
        return rest
    return ms.database.OrderedUnionDatabase(ms.database.UnionDatabase(*verified), rest)
