"""The pure parts of verification: which candidates, in which order, and when it is due."""

from __future__ import annotations

import pytest

from simpletvm import goalcheck, verification
from simpletvm.jobdir import Progress, TaskInfo, TaskProgress
from simpletvm.spec import JobSpec


def _entry(name: str) -> dict[str, str]:
    return {"hash": name, "trace": [], "args_info": []}


def _batch(*timed: tuple[float, str]) -> list[tuple[float, dict[str, str]]]:
    return [(secs, _entry(name)) for secs, name in timed]


def test_leading_candidates_give_every_batch_its_best_first() -> None:
    fast_minute = _batch((1.0, "a"), (1.1, "b"), (1.2, "c"), (1.3, "d"))
    slow_minute = _batch((2.0, "e"), (2.5, "f"))  # its best may truly be the fastest
    middle = _batch((1.5, "g"), (1.05, "a"))  # re-proposed "a" counts once
    picked = verification.leading([fast_minute, slow_minute, middle], top=4)
    # tier 1: each batch's fastest by time ("a" once), then tier 2: each batch's second
    assert [c["hash"] for c in picked] == ["a", "e", "b", "g"]
    assert picked[0]["search_us"] == 1e6 and picked[0]["trace"] == []
    # the search's own pick (least time overall) always leads
    assert verification.leading([slow_minute, fast_minute], top=1)[0]["hash"] == "a"
    assert verification.leading([], top=4) == []
    assert [c["hash"] for c in verification.leading([slow_minute], top=9)] == ["e", "f"]


def test_passes_alternate_their_order() -> None:
    assert [verification.pass_order(3, p) for p in range(3)] == [[0, 1, 2], [2, 1, 0], [0, 1, 2]]
    # recorded times: pass by pass relative to the others (a slow pass is ignored); None when
    # a candidate did not run
    secs = verification.verified_secs([[3.0, 1.0, 9.0], [], [6.0, 2.0, 18.0]])
    assert secs[1] is None and secs[2] / secs[0] == pytest.approx(2.0)


def _spec(**kw) -> JobSpec:
    return JobSpec(**{"name": "j", "target": {"kind": "llvm"}, "trials": 32, **kw})


def test_verification_follows_the_search_for_all_tasks_at_once() -> None:
    infos = [TaskInfo(i, f"t{i}", 1, 1.0, str(i)) for i in range(4)]
    progress = Progress(trials=16, tasks=[TaskProgress(trials=8, best_us=5.0),
                                          TaskProgress(trials=8, best_us=9.0),
                                          TaskProgress(trials=0),
                                          TaskProgress(trials=3, best_us=2.0)])
    assert not verification.tuning_over(_spec(), progress, infos)
    assert verification.tuning_over(_spec(latency_goal_us=100.0), progress, infos) is False  # t2
    progress.tasks[2] = TaskProgress(trials=1, best_us=1.0, exhausted=True)
    goal = _spec(latency_goal_us=18.0)  # the estimate (17) meets it: a measurement decides
    assert not verification.tuning_over(goal, progress, infos)
    assert goalcheck.due(goal, progress, infos)
    plan = goalcheck.plan(goal, progress, infos, [])
    goalcheck.record(progress, 5, plan, {"run_secs": [17.5e-6], "error": None})
    assert verification.tuning_over(goal, progress, infos) and not goalcheck.due(
        goal, progress, infos)
    progress.goal_checks.clear()
    progress.trials = 32
    assert verification.tuning_over(_spec(), progress, infos)
    # one round for every task with something to choose from (t2: one candidate, nothing to pick)
    assert verification.due_tasks(_spec(), progress) == [0, 1, 3]
    progress.tasks[0].verified, progress.tasks[0].verified_us = True, 7.0
    progress.tasks[1].verified = True  # nothing ran in its round: verified all the same
    assert verification.due_tasks(_spec(), progress) == [3]
    progress.tasks[3].verified = True
    assert verification.due_tasks(_spec(), progress) == []
    assert progress.estimated_latency_us(infos) == 7.0 + 9.0 + 1.0 + 2.0  # verified where verified
    fresh = Progress(trials=32, tasks=[TaskProgress(trials=8, best_us=5.0)])
    assert verification.due_tasks(_spec(verify_top=0), fresh) == []  # off
    assert verification.due_tasks(_spec(), fresh) == [0]
    # off, but records of earlier jobs were taken in for task 1: they are timed again
    reused = Progress(trials=32, tasks=[TaskProgress(trials=8, best_us=5.0),
                                        TaskProgress(trials=24, best_us=3.0)],
                      known={"target_key": "k", "lines": {"01": 16}, "records": 16,
                             "tasks": 1, "trials": 24})
    assert verification.due_tasks(_spec(verify_top=0), reused) == [1]
    assert verification.top_of(_spec(verify_top=0)) == verification.REUSED_TOP
    assert verification.top_of(_spec(verify_top=3)) == 3


def test_plan_reads_batches_from_the_committed_records_not_round_directories(tmp_path) -> None:
    """Two tasks, rounds interleaved; the records travel with the job, round dirs do not."""
    import json

    from simpletvm.jobdir import JobDir

    job = JobDir(tmp_path)
    job.write_spec(_spec())
    job.write_tasks([TaskInfo(0, "t0", 1, 1.0, "0"), TaskInfo(1, "t1", 1, 1.0, "1")])
    committed = {0: [("a", [2.0]), ("b", [1.0, 1.2]), ("x", [1e10])],  # round 0
                 1: [("c", [5.0])]}                                      # round 1
    later = [("d", [3.0]), ("e", [2.5])]                                # round 2, task 0
    for task, rows in ((0, committed[0] + later), (1, committed[1])):
        task_dir = tmp_path / "tasks" / f"{task:02d}"
        (task_dir / "db").mkdir(parents=True)
        (task_dir / "db" / "database_tuning_record.json").write_text("".join(
            json.dumps([0, [[["trace", h]], secs, {"kind": "llvm"}, [["TENSOR", "f", [1]]]]])
            + "\n" for h, secs in rows))
        (task_dir / "measured.txt").write_text("".join(h + "\n" for h, _ in rows))
    curve = [{"round": 0, "task": 0, "trials": 3}, {"round": 1, "task": 1, "trials": 4},
             {"round": 2, "task": 0, "trials": 6}, {"round": 3, "task": 1, "trials": 6,
                                                     "verify": True}]
    job.write_progress(Progress(trials=6, tasks=[TaskProgress(5, 1.1), TaskProgress(1, 5.0)],
                                curve=curve))
    def default(task_dir):  # the task's untransformed schedule; task 1's was measured as "c"
        return {"hash": "c" if task_dir.name == "01" else f"default-{task_dir.name}",
                "trace": [[], []], "args_info": [], "default": True}

    plan = verification.plan(job, _spec(verify_top=4), [0, 1], exhausted=[], default=default)
    # task 0: batch winners first (b from round 0, e from round 2), then seconds; x failed to
    # run; then its default schedule. Then task 1's one candidate, which is its default: not
    # timed twice. One round, each candidate naming its task
    assert [(c["hash"], c["task"]) for c in plan["candidates"]] == [
        ("b", 0), ("e", 0), ("a", 0), ("d", 0), ("default-00", 0), ("c", 1)]
    assert plan["candidates"][0]["trace"] == [["trace", "b"]]
    assert plan["candidates"][0]["args_info"] == [["TENSOR", "f", [1]]]
    assert plan["candidates"][0]["search_us"] == 1.1e6
    assert plan["candidates"][4]["default"] and "default" not in plan["candidates"][5]
    assert plan["task"] is None and plan["verify"] == {"passes": 7, "tasks": [0, 1]}
    assert verification.is_verify_plan(plan) and verification.verified_tasks(plan) == [0, 1]
    assert [verification.task_of(plan, c) for c in plan["candidates"]] == [0, 0, 0, 0, 0, 1]
    search = {"task": 1, "candidates": [{"hash": "z"}], "exhausted_tasks": []}
    assert verification.task_of(search, search["candidates"][0]) == 1
    assert verification.verified_tasks(search) == []
    two = verification.plan(job, _spec(verify_top=2), [0], exhausted=[], default=default)
    assert [c["hash"] for c in two["candidates"]] == ["b", "e", "default-00"]
    cuda = verification.plan(job, _spec(verify_top=2, target={"kind": "cuda"}), [0],
                             exhausted=[], default=default)
    assert [c["hash"] for c in cuda["candidates"]] == ["b", "e"]  # dlight's default: no trace


def test_a_missed_goal_is_checked_again_once_the_estimate_is_better() -> None:
    infos = [TaskInfo(0, "t0", 1, 1.0, "0")]
    progress = Progress(trials=8, tasks=[TaskProgress(trials=8, best_us=17.0)])
    goal = _spec(latency_goal_us=18.0)
    assert goalcheck.due(goal, progress, infos)
    check = goalcheck.record(progress, 1, goalcheck.plan(goal, progress, infos, []),
                             {"run_secs": [21e-6], "error": None})
    assert (check["measured_us"], check["met"], check["estimate_us"]) == (21.0, False, 17.0)
    assert not verification.tuning_over(goal, progress, infos)  # tuning goes on
    assert not goalcheck.due(goal, progress, infos)
    progress.tasks[0].best_us = 16.5  # 3% better: not yet
    assert not goalcheck.due(goal, progress, infos)
    progress.tasks[0].best_us = 15.0
    assert goalcheck.due(goal, progress, infos)
    broken = goalcheck.record(progress, 2, goalcheck.plan(goal, progress, infos, []),
                              {"run_secs": None, "error": "TVMError: no"})
    assert not broken["met"] and broken["error"] == "TVMError: no"
    assert not goalcheck.due(_spec(), progress, infos)  # no goal: never
