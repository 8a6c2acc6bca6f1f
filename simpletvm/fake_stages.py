"""Fake stages: what each real stage writes into a job directory, without TVM.

`run_effects(request)` writes what stage `request.stage` writes and returns its result, so the
real runner and daemon code paths (bundle fetch, state upload after extract and learn, result
upload after the final benchmark) run unchanged over them:

    extract   tasks/index.json (one fake task per model), progress.json
    search    takes in known.json (the warm start), rounds/rNNNN/candidates.json;
              {"task", "candidates", "done", "trials_total", reused counts}
    build     rounds/rNNNN/built.json;                {"built", "errors", ...}
    profile   rounds/rNNNN/results.json;              {"measured", "batch_best_us", ...}
    learn     tasks/00/db records, progress.json; {"trials", "trials_total", "done", ...}
    compile   final/built.json;                       {"compile_s"}
    profile   after compile, the final benchmark: result/report.json;
              {"final", "tuned_us", "untuned_us", "speedup"}

Latencies follow `latency_after`, the curve the simulator's MockJob uses too. How long a fake
stage takes is `simpletvm.fake_executor`'s business.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from simpletvm.jobdir import JobDir, Progress, TaskInfo, TaskProgress, read_json, write_json
from simpletvm.tuningdb import KNOWN_FILE, RECORD_FILE, WORKLOAD_FILE, Record
from simpletvm.warmstart import apportion, count, reused, settle

__all__ = ["FINAL_US", "UNTUNED_US", "latency_after", "run_effects"]

UNTUNED_US, FINAL_US = 1000.0, 60.0


def latency_after(trials: int, initial_us: float = UNTUNED_US,
                  final_us: float = FINAL_US) -> float:
    """Best latency (us) found after `trials` measurements: an exponential approach from
    `initial_us` to `final_us`."""
    return final_us + (initial_us - final_us) * math.exp(-trials / 150.0)


def _extract(job: JobDir, round_: int) -> dict[str, Any]:
    if not ((job.root / "tasks" / "index.json").exists() and job.progress_path.exists()):
        spec = job.spec()  # one task per model (and input shapes): its records carry over
        shape = hashlib.sha1(f"{spec.model} {spec.input_shapes}".encode()).hexdigest()[:12]
        job.write_tasks([TaskInfo(0, "fake_dense", 1, 1.0e6, f"fake-{shape}")])
        job.write_progress(Progress(tasks=[TaskProgress()]))
    return {"tasks": 1, "flops": 1.0e6, "task_names": ["fake_dense"]}


def _take_in(job: JobDir, progress: Progress) -> None:
    """The warm start (simpletvm.warmstart) without TVM: known records go first in the task's
    database and count their trials."""
    path = job.root / KNOWN_FILE
    if progress.known is not None or not path.exists():
        return
    known, infos, lines = read_json(path), job.tasks(), {}
    entry = known.get("tasks", {}).get(infos[0].shash)
    if entry and entry.get("records"):
        records = [Record.from_json(r) for r in entry["records"]]
        _append(job, infos[0], records)
        trials = max(entry.get("trials", 0), len(records))
        count(progress, 0, apportion({0: trials}, job.spec().trials, progress)[0],
              len(records), min(r.mean_s for r in records) * 1e6)
        lines[infos[0].dirname] = len(records)
    settle(progress, known.get("target_key", ""), lines, infos)
    job.write_progress(progress)


def _append(job: JobDir, info: TaskInfo, records: list[Record]) -> None:
    """Records in the task's database, as MetaSchedule writes them."""
    db = job.task_dir(info) / "db"
    db.mkdir(parents=True, exist_ok=True)
    if not (db / WORKLOAD_FILE).exists():
        (db / WORKLOAD_FILE).write_text(json.dumps([info.shash, "fake-workload"]) + "\n")
    with open(db / RECORD_FILE, "a") as f:
        f.write("".join(json.dumps([0, r.to_json()]) + "\n" for r in records))


def _search(job: JobDir, round_: int) -> dict[str, Any]:
    _take_in(job, job.progress())
    spec, progress = job.spec(), job.progress()
    done = progress.trials >= spec.trials
    batch = 0 if done else max(1, min(spec.batch_size, spec.trials - progress.trials))
    task = None if done else 0
    write_json(job.round_dir(round_) / "candidates.json", {
        "task": task, "candidates": [{"hash": f"fake-{job.root.name}-{round_}-{i}"}
                                     for i in range(batch)],
        "exhausted_tasks": []})
    return {"task": task, "candidates": batch, "exhausted_tasks": [], "done": done,
            "trials_total": progress.trials, **reused(progress)}


def _build(job: JobDir, round_: int) -> dict[str, Any]:
    plan = read_json(job.round_dir(round_) / "candidates.json")
    built = [{"artifact": f"fake-{i:03d}.so", "error": None}
             for i in range(len(plan["candidates"]))]
    write_json(job.round_dir(round_) / "built.json", {"built": built})
    return {"built": len(built), "errors": 0, "hash_mismatches": 0}


def _profile(job: JobDir, round_: int) -> dict[str, Any]:
    if (job.final_dir / "built.json").exists():
        return _final_benchmark(job)
    built = read_json(job.round_dir(round_) / "built.json")["built"]
    best_s = latency_after(job.progress().trials + len(built)) * 1e-6
    now = time.time()
    results = [{"run_secs": [best_s * (1.0 + 0.01 * i)], "error": None}
               for i in range(len(built))]
    write_json(job.round_dir(round_) / "results.json",
               {"results": results, "started": now, "finished": now})
    return {"measured": len(results), "errors": 0,
            "batch_best_us": best_s * 1e6 if results else None, "started": now,
            "finished": now}


def _learn(job: JobDir, round_: int) -> dict[str, Any]:
    spec, progress = job.spec(), job.progress()
    plan = read_json(job.round_dir(round_) / "candidates.json")
    plan_id = f"{round_}:fake"
    n = len(plan["candidates"])
    batch_best = None
    replayed = any(c.get("plan") == plan_id for c in progress.curve)  # a retried learn
    if not replayed:
        if n:
            results = read_json(job.round_dir(round_) / "results.json")["results"]
            batch_best = min(min(r["run_secs"]) for r in results) * 1e6
            _append(job, job.tasks()[0], [
                Record([["fake", c["hash"]]], r["run_secs"], spec.target, [])
                for c, r in zip(plan["candidates"], results, strict=True)])
            task = progress.tasks[0]
            task.trials += n
            task.best_us = batch_best if task.best_us is None else min(task.best_us, batch_best)
            progress.trials += n
        progress.rounds = round_ + 1
        progress.curve.append({"round": round_, "plan": plan_id, "time": time.time(),
                               "trials": progress.trials, "task": plan["task"],
                               "batch_best_us": batch_best,
                               "estimated_latency_us": progress.tasks[0].best_us})
        job.write_progress(progress)
    estimate = progress.tasks[0].best_us
    return {"task": plan["task"], "trials": n, "trials_total": progress.trials,
            "batch_best_us": batch_best, "estimated_latency_us": estimate,
            "task_rows": progress.task_rows(job.tasks()),
            "replayed": replayed, "done": progress.trials >= spec.trials}


def _compile(job: JobDir, round_: int) -> dict[str, Any]:
    progress = job.progress()
    tuned = progress.tasks[0].best_us if progress.tasks and progress.tasks[0].best_us \
        else UNTUNED_US
    (job.result_dir / "report.json").unlink(missing_ok=True)
    write_json(job.final_dir / "built.json", {"compile_s": 0.0, "tuned_us": tuned})
    return {"compile_s": 0.0}


def _final_benchmark(job: JobDir) -> dict[str, Any]:
    spec, progress = job.spec(), job.progress()
    tuned = read_json(job.final_dir / "built.json")["tuned_us"]
    report = {"name": spec.name, "model": spec.model, "target": spec.target,
              "trials": progress.trials, "trial_budget": spec.trials,
              "rounds": progress.rounds, "untuned": {"median_us": UNTUNED_US},
              "tuned": {"median_us": tuned}, "speedup": UNTUNED_US / tuned,
              "max_abs_diff_vs_untuned": 0.0, "curve": progress.curve, "fake": True}
    write_json(job.result_dir / "report.json", report)
    return {"final": True, "trials": 0, "tuned_us": tuned, "untuned_us": UNTUNED_US,
            "speedup": UNTUNED_US / tuned, "max_abs_diff": 0.0}


EFFECTS: Mapping[str, Callable[[JobDir, int], dict[str, Any]]] = {
    "extract": _extract, "search": _search, "build": _build, "profile": _profile,
    "learn": _learn, "compile": _compile}


def run_effects(stage: str, job_dir: str, round_: int) -> dict[str, Any]:
    """Write what `stage` writes into the job directory; return its result."""
    effect = EFFECTS.get(stage)
    if effect is None:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(EFFECTS)}")
    return effect(JobDir(job_dir), round_)
