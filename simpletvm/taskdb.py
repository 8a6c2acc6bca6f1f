"""A task's committed measurements: its records database, the structural hashes of what was
measured, and the job's cost model, written by one writer at a time (the learn stage, and the
warm start before any learn) with progress.json as the commit point.

Appends past the sizes progress.json recorded were written by a writer that died before
committing: `truncate_uncommitted` cuts them, so a retry neither duplicates records nor loses
any. A trained cost model waits in `pending_model` until after the commit point, and
`install_pending_model` puts it in place (idempotent: a retry finishes a commit that died).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletvm.jobdir import JobDir
from simpletvm.tuningdb import FAILED_RUN_SECS, RECORD_FILE

RECORDS = "db/" + RECORD_FILE  # tasks/NN/db/...: the search records, one line per candidate
MEASURED = "measured.txt"  # tasks/NN/measured.txt: their structural hashes, line for line


def truncate_uncommitted(task_dir: Path, committed: dict[str, int]) -> None:
    """Cut what a writer that died before writing progress.json appended."""
    for name in (RECORDS, MEASURED):
        path, limit = task_dir / name, committed.get(name, 0)  # never committed: nothing kept
        if path.exists() and path.stat().st_size > limit:
            with open(path, "r+b") as f:
                f.truncate(limit)


def committed_sizes(task_dir: Path) -> dict[str, int]:
    """What progress.json records as committed for the task, after an append."""
    return {name: (task_dir / name).stat().st_size for name in (RECORDS, MEASURED)}


def append(job: JobDir, task_dir: Path, task_name: str, entries: list[dict[str, Any]],
           results: list[dict[str, Any]], threads: int) -> tuple[Any, list[Any], list[Any]]:
    """Append measured candidates (entries: trace, args_info, hash; results: run_secs, error)
    to the task's database and measured hashes; (tune context, candidates, runner results)
    for the cost model's update."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    from simpletvm import context
    from simpletvm.candidates import to_measure_candidate

    workload = tvm.ir.load_json((task_dir / "task.json").read_text())
    tctx = context.tune_context(workload, job.spec().target, task_name, seed=0,
                                num_threads=threads)
    cands = [to_measure_candidate(workload, e) for e in entries]
    db = context.database(task_dir)
    wl = db.commit_workload(workload)
    for cand, res in zip(cands, results, strict=True):
        run_secs = res["run_secs"] or [FAILED_RUN_SECS]
        db.commit_tuning_record(ms.database.TuningRecord(
            cand.sch.trace, wl, [float(s) for s in run_secs], tctx.target, cand.args_info))
    with open(task_dir / MEASURED, "a") as f:
        f.write("".join(e["hash"] + "\n" for e in entries))
    return tctx, cands, [RunnerResult(r["run_secs"], r["error"]) for r in results]


def pending_model(job: JobDir) -> Path:
    """Where a trained cost model waits for its commit point."""
    return job.cost_model_path.with_name("cost_model.pending.tar")


def install_pending_model(job: JobDir) -> None:
    """After the commit point: the trained cost model takes its place."""
    pending = pending_model(job)
    if pending.exists():
        pending.replace(job.cost_model_path)
