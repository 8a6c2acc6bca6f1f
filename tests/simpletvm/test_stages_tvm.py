"""Real TVM: a tiny conv workload tuned through the stages, each stage in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.testing import TUNESCHED
from simpletvm import SimpleTVM, context, verification
from simpletvm.driver import create_job, drive
from simpletvm.executor import StageExecutor, StageRequest
from simpletvm.jobdir import read_json
from simpletvm.spec import JobSpec
from simpletvm.targets import to_tvm

pytestmark = pytest.mark.tvm

CORES = sorted(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def executor() -> StageExecutor:
    return StageExecutor()


def _spec(**overrides) -> JobSpec:
    base = dict(name="conv", target={"kind": "llvm", "num-cores": len(CORES)}, trials=32,
                batch_size=16, model="zoo:conv2d", input_shapes={"x": [1, 16, 16, 16]})
    base.update(overrides)
    return JobSpec(**base)


def test_stages_tune_a_conv_far_faster_than_untuned(tmp_path, executor) -> None:
    job = create_job(tmp_path / "job", _spec())
    # extract in a cold interpreter, through the command line a user or runner would use
    out = subprocess.run([*TUNESCHED, "stage", "extract", str(job.root),
                          "--cores", str(CORES[0])], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["result"]["tasks"] == 1

    outcomes = []
    report = drive(job, executor, cores=CORES, on_stage=lambda n, r, o: outcomes.append((n, o)))
    stages = [n for n, _ in outcomes]
    assert stages[:5] == ["extract", "search", "build", "profile", "learn"]
    assert stages[-2:] == ["compile", "profile"]  # the final benchmark is a profile stage
    pids = [o.pid for _, o in outcomes]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids  # one process per stage
    assert all(o.cores == CORES for _, o in outcomes)
    assert all(o.cpu_s > 0 for n, o in outcomes if n in ("search", "build", "profile"))
    samples = json.loads((job.round_dir(0) / "results.json").read_text())["results"]
    # three samples each (the spread is visible), but one for a candidate whose first was
    # over twice the best median timed before it (the first batch: no best yet)
    best = float("inf")
    for secs in (r["run_secs"] for r in samples if r["run_secs"]):
        assert len(secs) == (1 if secs[0] > 2 * best else 3), (secs, best)
        best = min(best, sorted(secs)[len(secs) // 2])
    assert any(len(r["run_secs"]) == 3 for r in samples if r["run_secs"])

    assert report["trials"] == 32
    # 32 measurements: the cost model is trained but still scores at random (under TVM's 100
    # warm-up samples), so every search sampled without evolving; with 100 it would evolve
    model = context.cost_model(job.cost_model_path, 1)
    assert model.booster is not None and model.data_size == 32 and not context.predicts(model)
    model.data_size = context.WARMUP_SAMPLES
    assert context.predicts(model)
    final = outcomes[-1][1]  # the models were timed inside the final profile stage
    assert final.result["final"] and report["benchmark"]["cores"] == CORES
    assert final.started <= report["benchmark"]["started"] <= report["benchmark"]["finished"] \
        <= final.finished
    assert report["tuned"]["median_us"] * 3 < report["untuned"]["median_us"]
    _check_verification(job, report)
    # the verification's learn says whether it kept another kernel than the search's pick
    # (the scheduler counts these: tunesched_verification_changes_total)
    name, verify_learn = outcomes[-3]
    rows = read_json(job.root / "tasks" / "00" / "verified.json")
    pick = min((r for r in rows["candidates"] if r["search_us"] is not None),
               key=lambda r: r["search_us"])["hash"]
    assert name == "learn" and verify_learn.result["verify_changed"] == int(rows["kept"] != pick)
    assert report["max_abs_diff_vs_untuned"] < 1e-3

    # the records are plain MetaSchedule JSON: stock TVM compiles with them
    records = job.result_dir / "records"
    lines = (records / "00" / "database_tuning_record.json").read_text().splitlines()
    assert len(lines) == 32
    stock = SimpleTVM.from_zoo("conv2d", (1, 16, 16, 16)).target(_spec().target)
    stock.use_records(records).benchmark(repeat=10)
    assert stock.latency.median_us * 3 < stock.untuned_latency.median_us


def _check_verification(job, report) -> None:
    """After its two search rounds the task had one verification round; the compiler's records
    hand out the kept candidate at its verified time."""
    import tvm

    plans = [read_json(d / "candidates.json") for d in sorted((job.root / "rounds").iterdir())]
    verifies = [bool(p.get("verify")) for p in plans]  # two rounds of 16, or a third when
    assert verifies[-1] and not any(verifies[:-1]), verifies  # the search found a duplicate
    searched = {c["hash"] for p in plans[:-1] for c in p["candidates"]}
    verified = [c["hash"] for c in plans[-1]["candidates"]]
    # the six leading candidates, then the task's default schedule: the untuned build's kernel
    assert len(verified) == 7 and set(verified[:6]) <= searched
    assert plans[-1]["candidates"][6]["default"] and verified[6] not in searched
    passes = read_json(job.round_dir(len(plans) - 1) / "results.json")["results"]
    assert [len(r["run_secs"]) for r in passes] == [7] * 7
    summary = read_json(job.root / "tasks" / "00" / "verified.json")
    kept = min(summary["candidates"], key=lambda c: c["verified_us"])
    assert summary["kept"] == kept["hash"]
    default = summary["candidates"][6]
    assert default["default"] and default["verified_us"] > 3 * kept["verified_us"]
    assert summary["kept_default"] is False and report["tasks"][0]["kept_default"] is False
    assert report["tasks"][0]["verified_us"] == kept["verified_us"]
    assert report["curve"][-1]["verify"] and report["curve"][-1]["trials"] == 32
    records = verification.open_records(job.result_dir / "records")
    workload = tvm.ir.load_json((job.root / "tasks" / "00" / "task.json").read_text())
    record = records.query_tuning_record(workload, to_tvm(_spec().target), "main")
    assert [float(s) * 1e6 for s in record.run_secs] == pytest.approx([kept["verified_us"]])


def test_one_verification_round_covers_every_task(tmp_path, executor) -> None:
    """A job with several tasks ends with one verification round, not one per task: one build
    and one profile over every task's leading candidates; each task keeps its own pick."""
    import tvm

    job = create_job(tmp_path / "job", _spec(model="zoo:mlp", input_shapes={"x": [1, 32]},
                                             trials=12, batch_size=4, verify_top=3,
                                             verify_passes=3))
    outcomes = []
    report = drive(job, executor, cores=CORES, on_stage=lambda n, r, o: outcomes.append((n, o)))
    plans = [read_json(d / "candidates.json") for d in sorted((job.root / "rounds").iterdir())]
    assert [bool(p.get("verify")) for p in plans] == [False] * (len(plans) - 1) + [True]
    tasks = len(job.tasks())
    assert tasks >= 2 and plans[-1]["verify"]["tasks"] == list(range(tasks))
    last = plans[-1]["candidates"]
    assert [c["task"] for c in last] == sorted(c["task"] for c in last)  # task by task
    assert {c["task"] for c in last} == set(range(tasks))
    built = read_json(job.round_dir(len(plans) - 1) / "built.json")["built"]
    assert len(built) == len(last) and all(b["error"] is None for b in built)
    # one stage of each kind for the whole verification, after the last search round's learn
    assert [n for n, _ in outcomes][-6:] == ["search", "build", "profile", "learn", "compile",
                                             "profile"]
    records = verification.open_records(job.result_dir / "records")
    for index, info in enumerate(job.tasks()):
        mine = [c["hash"] for c in last if c["task"] == index]
        searched = {c["hash"] for p in plans[:-1] if p["task"] == index for c in p["candidates"]}
        assert 3 <= len(mine) <= 4 and set(mine[:-1]) <= searched  # and its default schedule
        assert [bool(c.get("default")) for c in last if c["task"] == index][-1]
        summary = read_json(job.task_dir(info) / "verified.json")
        assert summary["kept_default"] == (summary["kept"] == mine[-1])
        assert [c["hash"] for c in summary["candidates"]] == mine
        assert all(len(c["passes_us"]) == 3 for c in summary["candidates"])
        kept = min(summary["candidates"], key=lambda c: c["verified_us"])
        assert summary["kept"] == kept["hash"]
        assert report["tasks"][index]["verified_us"] == kept["verified_us"]
        workload = tvm.ir.load_json((job.task_dir(info) / "task.json").read_text())
        record = records.query_tuning_record(workload, to_tvm(_spec().target), "main")
        assert [float(s) * 1e6 for s in record.run_secs] == pytest.approx([kept["verified_us"]])
    assert report["trials"] == 12 and report["curve"][-1]["verify"]


def test_stage_process_is_pinned_to_its_lease(tmp_path, executor) -> None:
    job = create_job(tmp_path / "job", _spec(model="zoo:matmul", input_shapes=None))
    outcome = executor.run(StageRequest("extract", str(job.root), 0, cores=[CORES[-1]]))
    assert outcome.ok, outcome.traceback
    assert outcome.cores == [CORES[-1]]


def test_stage_failure_comes_back_as_data(tmp_path, executor) -> None:
    outcome = executor.run(StageRequest("search", str(tmp_path / "nojob"), 0, cores=CORES))
    assert outcome.status == "error"
    assert "job.json is missing" in outcome.error and "\n" not in outcome.error
    assert "Traceback" in outcome.traceback


def test_learn_retried_after_a_crash_neither_duplicates_nor_loses(tmp_path, executor) -> None:
    job = create_job(tmp_path / "job", _spec(model="zoo:matmul", input_shapes=None, trials=16,
                                             batch_size=8))
    for stage in ("extract", "search", "build", "profile"):
        outcome = executor.run(StageRequest(stage, str(job.root), 0, cores=CORES))
        assert outcome.ok, outcome.traceback
    before = job.progress_path.read_text()
    assert executor.run(StageRequest("learn", str(job.root), 0, cores=CORES)).ok
    records = job.root / "tasks" / "00" / "db" / "database_tuning_record.json"
    assert len(records.read_text().splitlines()) == 8
    # a retry of a committed learn changes nothing ...
    # ... except finishing one that died between progress.json and its cost model's rename
    model = job.cost_model_path
    trained = model.read_bytes()
    model.replace(model.with_name("cost_model.pending.tar"))
    again = executor.run(StageRequest("learn", str(job.root), 0, cores=CORES))
    assert again.ok and again.result["replayed"]
    assert len(records.read_text().splitlines()) == 8 and job.progress().trials == 8
    assert model.read_bytes() == trained and not model.with_name("cost_model.pending.tar").exists()
    # a learn that died after appending records but before committing progress.json
    job.progress_path.write_text(before)
    retried = executor.run(StageRequest("learn", str(job.root), 0, cores=CORES))
    assert retried.ok and not retried.result["replayed"]
    assert len(records.read_text().splitlines()) == 8 and job.progress().trials == 8
    measured = (job.root / "tasks" / "00" / "measured.txt").read_text().split()
    assert len(measured) == len(set(measured)) == 8


def test_warm_starts_the_fork_server_before_any_stage() -> None:
    code = ("import psutil\n"
            "from scheduler.testing import wait_for\n"
            "from simpletvm.executor import StageExecutor\n"
            "before = len(psutil.Process().children())\n"
            "StageExecutor().warm()\n"
            "def kids():  # a child just forked shows no command line until its exec is done\n"
            "    lines = [' '.join(k.cmdline()) for k in psutil.Process().children()]\n"
            "    return lines if any('forkserver' in line for line in lines) else None\n"
            "print(before, wait_for(kids, 10, 'the fork server', interval=0.05))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    before, _, kids = out.partition(" ")
    assert before == "0" and "forkserver" in kids and "_preload" in kids, out


def test_stage_children_do_not_rerun_the_launching_script(tmp_path) -> None:
    """A console script (like `tunesched`) as __main__ is not re-imported in every stage child."""
    marker = tmp_path / "imports.txt"
    script = tmp_path / "launcher.py"
    script.write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).open('a').write('imported\\n')\n"
        "from simpletvm.executor import StageExecutor, StageRequest\n"
        "if __name__ == '__main__':\n"
        "    ex = StageExecutor()\n"
        "    for _ in range(3):\n"
        "        out = ex.run(StageRequest('search', '/nonexistent', 0, [0]))\n"
        "        assert out.status == 'error', out\n")
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
    assert marker.read_text().splitlines() == ["imported"]  # the script itself, nothing more


def test_a_replaying_job_measures_the_recorded_candidates_round_by_round(tmp_path,
                                                                          executor) -> None:
    small = dict(model="zoo:matmul", input_shapes=None, trials=16, batch_size=8)
    source = create_job(tmp_path / "source", _spec(**small, seed=1))
    drive(source, executor, cores=CORES)
    # another seed on its own would propose other candidates; the replay proposes the source's
    again = create_job(tmp_path / "again", _spec(**small, seed=2, replay=str(source.root)))
    drive(again, executor, cores=CORES)

    def rounds(job, verify=False):
        plans = [read_json(d / "candidates.json") for d in sorted((job.root / "rounds").iterdir())]
        return [[c["hash"] for c in p["candidates"]] for p in plans
                if bool(p.get("verify")) == verify]

    assert rounds(again) == rounds(source) and [len(r) for r in rounds(source)] == [8, 8]
    # each then verifies its own leading candidates (and the default schedule), by its own
    # timings
    assert [len(r) for r in rounds(again, verify=True)] == [7] == [len(r) for r in
                                                                   rounds(source, verify=True)]
    assert again.progress().trials == source.progress().trials == 16
    missing = create_job(tmp_path / "missing", _spec(**small, replay=str(tmp_path / "nowhere")))
    outcome = executor.run(StageRequest("extract", str(missing.root), 0, cores=CORES))
    assert outcome.ok
    outcome = executor.run(StageRequest("search", str(missing.root), 0, cores=CORES))
    assert not outcome.ok and "nothing to replay" in outcome.error and "nowhere" in outcome.error


def test_tasks_under_the_min_task_share_are_left_untuned(tmp_path, executor) -> None:
    """zoo:mlp's last dense layer (128 -> 10) is about 5% of its FLOPs: with a share of 0.1
    the extract stage marks it done, and the search's budget goes to the other two."""
    job = create_job(tmp_path / "job", _spec(model="zoo:mlp", input_shapes=None, trials=16,
                                              batch_size=8, min_task_share=0.1))
    extract = executor.run(StageRequest("extract", str(job.root), 0, CORES[:1]))
    assert extract.ok, extract.error
    infos, progress = job.tasks(), job.progress()
    share = {i.index: i.weight * i.flops / sum(t.weight * t.flops for t in infos) for i in infos}
    small = sorted(i for i, s in share.items() if s < 0.1)
    assert small and len(small) < len(infos), share
    assert [t.exhausted for t in progress.tasks] == [i in small for i in range(len(infos))]
    assert extract.result["untuned_tasks"] == [infos[i].name for i in small]
    search = executor.run(StageRequest("search", str(job.root), 0, CORES))
    assert search.ok and search.result["task"] not in small, search.result



def test_chameleon_sampling_measures_one_new_candidate_per_cluster(tmp_path, executor) -> None:
    """The search proposes four batches, clusters them by their per-store features and keeps
    at most a batch of new ones, one per cluster; the plan says how many it weighed."""
    job = create_job(tmp_path / "job", _spec(model="zoo:matmul", input_shapes=None, trials=16,
                                              batch_size=8, sampling="chameleon"))
    for stage in ("extract", "search", "build"):
        outcome = executor.run(StageRequest(stage, str(job.root), 0, cores=CORES))
        assert outcome.ok, outcome.traceback
        if stage == "search":
            search = outcome.result
    plan = read_json(job.round_dir(0) / "candidates.json")
    hashes = [c["hash"] for c in plan["candidates"]]
    assert 1 <= search["candidates"] == len(hashes) == len(set(hashes)) <= 8, search
    assert search["proposed"] >= search["new"] >= len(hashes) <= search["clusters"], search
    assert plan["clusters"] == search["clusters"] and search["sampling_s"] >= 0
    assert outcome.result["built"] == len(hashes)  # each entry replays onto the workload


CUDA_TARGET = {"kind": "cuda", "arch": "sm_80", "max_threads_per_block": 1024,
               "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
               "host": {"kind": "llvm"}}


def test_a_cuda_job_extracts_searches_and_builds_without_a_gpu(tmp_path, executor) -> None:
    """The stages of a cuda job that need no GPU run here (no driver), each under a lease
    without GPUs, so with no GPU visible. Profile and the final benchmark need a GPU and a TVM
    built with CUDA: not tested anywhere yet."""
    job = create_job(tmp_path / "job", _spec(model="zoo:matmul", input_shapes=None,
                                             target=CUDA_TARGET, trials=8, batch_size=4))
    outcomes = {}
    for stage in ("extract", "search", "build"):
        outcome = executor.run(StageRequest(stage, str(job.root), 0, cores=CORES, gpus=[]))
        assert outcome.ok, outcome.traceback
        assert outcome.cuda_env["CUDA_VISIBLE_DEVICES"] == ""
        outcomes[stage] = outcome.result
    assert outcomes["extract"]["tasks"] == 1
    assert outcomes["search"]["candidates"] == 4
    assert outcomes["build"] == {"built": 4, "errors": 0, "hash_mismatches": 0}
    for built in read_json(job.round_dir(0) / "built.json")["built"]:
        module = Path(built["artifact"]).read_bytes()
        # a CUDA kernel, as source: this TVM has no CUDA runtime (docs/design.md section 3)
        assert b"__global__" in module


def test_a_kept_default_schedule_is_what_the_compiler_gets(tmp_path) -> None:
    """The default schedule's record, fastest in a verified database, is the one the compiler's
    query hands out, and it leaves the workload as it was (a record with an empty trace would
    be left out of MetaSchedule's top-k, so the untuned kernel could never be kept)."""
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from simpletvm import tasks
    from simpletvm.candidates import default_entry, replay, to_measure_candidate

    target = _spec().target
    (task,) = tasks.extract(SimpleTVM.from_zoo("matmul").module, target)
    tuned = tvm.s_tir.Schedule(task.mod)
    block = tuned.get_child_blocks(tuned.get_sblock("root"))[0]
    tuned.parallel(tuned.get_loops(block)[0])
    tuned_entry = {"trace": tuned.trace.as_json(), "args_info": default_entry(task.mod)[
        "args_info"]}
    db = ms.database.JSONDatabase(work_dir=str(tmp_path), module_equality="structural")
    wl = db.commit_workload(task.mod)
    for entry, secs in ((tuned_entry, 2e-6), (default_entry(task.mod), 1e-6)):
        cand = to_measure_candidate(task.mod, entry)
        db.commit_tuning_record(ms.database.TuningRecord(cand.sch.trace, wl, [secs],
                                                         to_tvm(target), cand.args_info))
    record = db.query_tuning_record(task.mod, to_tvm(target), "main")
    assert [float(s) for s in record.run_secs] == [1e-6]
    kept = replay(task.mod, json.loads(json.dumps(record.trace.as_json(), default=int)))
    assert tvm_ffi.structural_equal(kept.mod, task.mod)
    assert not tvm_ffi.structural_equal(tuned.mod, task.mod)

