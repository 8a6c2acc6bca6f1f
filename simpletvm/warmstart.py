"""The warm start: before its first search a job takes in what earlier jobs measured.

The runner asks the scheduler what it knows of the job's workloads on its device (`wanted`,
`receive`: known.json, and a cost model of the target key when there is one). The first search
stage then calls `take_in`, once, before it plans anything:

- each task's known records go first into its records database and measured hashes, as one
  batch (so the search starts from the best known schedules and never proposes them again,
  and the verification round times the best of them again beside the job's own: reused
  kernels are re-timed, not trusted);
- the task counts the trials measured for it so far, the known tasks together up to their part
  of the budget (`apportion`), so a resubmitted model tunes nothing new, a bigger budget tunes
  the difference, and a model's new layers get the budget its known ones do not need;
- the job's cost model starts from the target key's (new shapes start from what similar ones
  taught it) and is trained on the known records.

Written like a learn stage (simpletvm.taskdb), with progress.json as the commit point. A job
submitted with `fresh`, or one that has started already, takes in nothing. TVM loads only
inside `take_in`: the bookkeeping (`count`, `settle`, `reused`) serves the fake stages too.
"""

from __future__ import annotations

import time
from typing import Any

from simpletvm import taskdb
from simpletvm.jobdir import JobDir, Progress, read_json, write_bytes
from simpletvm.tuningdb import KNOWN_COST_MODEL, KNOWN_FILE, Record

MAX_INHERITED_SAMPLES = 4096  # a cost model taken over keeps at most its newest samples


def wanted(job: JobDir) -> bool:
    """Whether the job still has to ask what is known: extracted, not fresh, not started."""
    if job.spec().fresh or (job.root / KNOWN_FILE).exists():
        return False
    return (job.root / "tasks" / "index.json").exists() and job.progress().known is None


def receive(job: JobDir, files: dict[str, bytes]) -> None:
    """Keep what the scheduler sent (known.json first-class, the cost model optional)."""
    if KNOWN_COST_MODEL in files:
        write_bytes(job.root / KNOWN_COST_MODEL, files[KNOWN_COST_MODEL])
    write_bytes(job.root / KNOWN_FILE, files.get(KNOWN_FILE) or b'{"tasks": {}}')


def apportion(known: dict[int, int], budget: int, progress: Progress) -> dict[int, int]:
    """Per task, the known trials it counts toward the budget: all of them, but together no
    more than the known tasks' part of the budget (budget x known tasks / tasks to tune),
    shared out in proportion. A resubmitted model tunes nothing, twice the budget tunes the
    difference, and a model that shares layers with a tuned one still spends its budget on
    its own layers (counted in full, a heavily tuned shared layer would leave them nothing)."""
    total = sum(known.values())
    tuned = sum(not t.exhausted for t in progress.tasks) or 1
    credit = min(total, -(-budget * len(known) // tuned))
    if not total or credit == total:
        return dict(known)
    counted = {task: trials * credit // total for task, trials in known.items()}
    for task in sorted(known, key=lambda t: -known[t])[:credit - sum(counted.values())]:
        counted[task] += 1  # the rounding, to the tasks known best
    return counted


def reused(progress: Progress) -> dict[str, int]:
    """What the warm start took in (empty before it, or when it took in nothing)."""
    known = progress.known or {}
    if not known.get("records"):
        return {}
    return {"reused_records": known["records"], "reused_tasks": known["tasks"],
            "known_trials": known["trials"]}


def take_in(job: JobDir, threads: int) -> None:
    """Take in known.json if there is one and nothing was taken in yet (see the module
    docstring)."""
    path = job.root / KNOWN_FILE
    if not path.exists():
        return
    progress = job.progress()
    if progress.known is not None:
        return
    known = read_json(path)
    infos = job.tasks()
    entries_of = {i.index: e for i in infos
                  if (e := known.get("tasks", {}).get(i.shash)) and e.get("records")}
    counted = apportion({i: max(int(e.get("trials", 0)), len(e["records"]))
                         for i, e in entries_of.items()}, job.spec().trials, progress)
    model = _starting_model(job, threads)
    lines: dict[str, int] = {}
    for info in infos:
        entry = entries_of.get(info.index)
        if entry is None:
            continue
        task_dir = job.task_dir(info)
        taskdb.truncate_uncommitted(task_dir, progress.committed_bytes.get(info.dirname, {}))
        entries, results, best = _candidates(task_dir, entry["records"])
        tctx, cands, runner_results = taskdb.append(job, task_dir, info.name, entries,
                                                    results, threads)
        model.update(tctx, cands, runner_results)
        progress.committed_bytes[info.dirname] = taskdb.committed_sizes(task_dir)
        lines[info.dirname] = len(entries)
        count(progress, info.index, counted[info.index], len(entries), best)
    settle(progress, known.get("target_key", ""), lines, infos)
    if lines or (job.root / KNOWN_COST_MODEL).exists():  # trained on them, or taken over
        progress.cost_model_trained_size = model.last_train_size
        model.save(str(taskdb.pending_model(job)))
    job.write_progress(progress)  # the commit point
    taskdb.install_pending_model(job)


def _starting_model(job: JobDir, threads: int) -> Any:
    """The job's cost model to train on the known records: its own if it has one, else the
    target key's (its newest samples), else a new one."""
    from simpletvm import context

    inherited = job.root / KNOWN_COST_MODEL
    if not job.cost_model_path.exists() and inherited.exists():
        model = context.cost_model(inherited, threads)
        while model.data and model.data_size > MAX_INHERITED_SAMPLES:
            _, group = model.data.popitem(last=False)
            model.data_size -= len(group.costs)
        model.last_train_size = 0  # train on the known records and this data at once
        return model
    return context.cost_model(job.cost_model_path, threads)


def _candidates(task_dir: Any, records: list[Any]) -> tuple[list[dict], list[dict], float]:
    """Known records as candidate entries (with the structural hash the search dedups by),
    their measured times, and the best mean time in us."""
    import tvm

    from simpletvm.candidates import replay, shash, trace_to_json

    workload = tvm.ir.load_json((task_dir / "task.json").read_text())
    entries, results, best = [], [], float("inf")
    for raw in records:
        record = Record.from_json(raw)
        sch = replay(workload, record.trace)
        entries.append({"trace": trace_to_json(sch.trace), "args_info": record.args_info,
                        "hash": shash(sch.mod)})
        results.append({"run_secs": record.run_secs, "error": None})
        best = min(best, record.mean_s * 1e6)
    return entries, results, best


def count(progress: Progress, task: int, trials: int, records: int, best_us: float) -> None:
    """The task's trials and best time count what earlier jobs measured; the curve marks the
    records taken in as one batch of the task (simpletvm.verification reads it)."""
    state = progress.tasks[task]
    state.trials += trials
    progress.trials += trials
    if best_us < float("inf") and (state.best_us is None or best_us < state.best_us):
        state.best_us = best_us
    progress.curve.append({"round": -1, "time": time.time(), "trials": progress.trials,
                           "task": task, "records": records, "import": True,
                           "batch_best_us": best_us if best_us < float("inf") else None})



def settle(progress: Progress, target_key: str, lines: dict[str, int], infos: list[Any]) -> None:
    """Mark the warm start done (whatever it took in) and put the model's estimate after it
    on the curve."""
    progress.known = {"target_key": target_key, "lines": lines,
                      "records": sum(lines.values()), "tasks": len(lines),
                      "trials": progress.trials}
    if lines:
        progress.curve.append({"round": -1, "time": time.time(), "trials": progress.trials,
                               "task": None, "import": True,
                               "estimated_latency_us": progress.estimated_latency_us(infos)})
