"""Tuning memory with real TVM stages: a retrained model starts from what its first job
measured and tunes nothing new, and times the reused records again even with verification
off; known records that meet a latency goal, measured on the whole
model, end a job without a search; the exported memory compiles the model with plain TVM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scheduler.core import TERMINAL_JOB_STATES
from scheduler.testing import LocalCluster, wait_for
from simpletvm import SimpleTVM, tasks, verification
from simpletvm.jobdir import JobDir, read_json
from simpletvm.spec import JobSpec
from simpletvm.targets import to_tvm

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

TARGET = {"kind": "llvm", "num-cores": len(os.sched_getaffinity(0))}
SPEC = JobSpec(model="zoo:matmul", target=TARGET, trials=16, batch_size=8, verify_top=3,
               verify_passes=2)


def run(cluster: LocalCluster, spec: JobSpec) -> object:
    job = cluster.client.submit(spec).job_id
    return wait_for(lambda: (lambda i: i if i.state in TERMINAL_JOB_STATES else None)(
        cluster.client.get(job)), 300, f"job {job} to end", interval=0.5)


def test_a_retrained_model_reuses_records_and_the_export_compiles_with_plain_tvm(
        tmp_path: Path) -> None:
    from tvm.s_tir import meta_schedule as ms

    with LocalCluster(tmp_path, {"box": 1}) as cluster:
        first = run(cluster, SPEC)
        assert (first.state, first.trials_done) == ("done", 16), first.error
        again = run(cluster, SPEC)  # the same layers again (a retrained model)
        assert (again.state, again.trials_done) == ("done", 16), again.error
        assert (again.reused_records, again.reused_tasks, again.known_trials) == (16, 1, 16)
        goal = first.tuned_latency_us * 3  # the known records meet it: measured, not summed
        met = run(cluster, SPEC.with_(trials=64, latency_goal_us=goal))
        assert (met.state, met.trials_done, met.known_trials) == ("done", 16, 16), met.error
        off = run(cluster, SPEC.with_(verify_top=0))  # verification off: reused records are
        assert (off.state, off.reused_records) == ("done", 16), off.error  # timed all the same
        exported = tmp_path / "export"
        cluster.client.export_records(exported, json.dumps(TARGET))
        work = cluster.work_dir("box") / "jobs"
    reused, kept = JobDir(work / again.job_id), JobDir(work / first.job_id)
    task = reused.tasks()[0]
    # it measured nothing new: its database is the first job's records, which it re-timed
    assert sorted((reused.task_dir(task) / "measured.txt").read_text().split()) == \
        sorted((kept.task_dir(task) / "measured.txt").read_text().split())
    verified = read_json(reused.task_dir(task) / "verified.json")
    assert len(verified["candidates"]) == 4 and verified["kept"]  # 3 and the default schedule
    assert [c["default"] for c in verified["candidates"]] == [False, False, False, True]
    assert reused.progress().known["records"] == 16
    timed = read_json(JobDir(work / off.job_id).task_dir(task) / "verified.json")
    assert len(timed["candidates"]) == verification.REUSED_TOP + 1 and timed["kept"]
    [check] = JobDir(work / met.job_id).progress().goal_checks  # one goal round, no search
    assert check["met"] and check["measured_us"] <= goal, check
    # plain TVM opens the export and compiles the model with its records
    database = ms.database.JSONDatabase(work_dir=str(exported), module_equality="structural")
    assert len(database.get_all_tuning_records()) == 16
    net = SimpleTVM.from_zoo("matmul").target(TARGET)
    target = to_tvm(TARGET)
    [extracted] = tasks.extract(net.module, TARGET)
    assert database.query_tuning_record(extracted.mod, target, "main") is not None
    executable = ms.relax_integration.compile_relax(database, net.module, target, params=None)
    assert executable is not None
