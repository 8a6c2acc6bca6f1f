"""A real daemon and real runner agents whose stages sleep (scheduler.testing.LocalCluster with
SleepExecutor stages): fast, no TVM."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.testing import TUNESCHED, LocalCluster, wait_for
from simpletvm.executor import StageRequest
from simpletvm.fake_executor import SleepExecutor, SleepStage
from simpletvm.jobdir import JobDir
from simpletvm.spec import JobSpec

from .conftest import assert_profiles_ran_alone

MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8, batch_size=4)
SECONDS = {"extract": 0.05, "search": 0.1, "build": 0.1, "profile": 0.15, "learn": 0.05,
           "compile": 0.2}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Host "box" with two runners (one shared work dir), host "solo" with one."""
    with LocalCluster(tmp_path, {"box": 2, "solo": 1}, seconds=SECONDS) as fake:
        yield fake


def test_jobs_run_through_the_real_daemon_and_agents(cluster: LocalCluster) -> None:
    client = cluster.client
    jobs = [client.submit(MLP.with_(name=f"j{i}")).job_id for i in range(4)]
    wait_for(lambda: all(client.get(j).state == "done" for j in jobs), 25,
             "four fake jobs to finish", interval=0.1)
    for job in jobs:
        info = client.get(job)
        assert info.trials_done == 8 and info.error == ""
        assert info.tuned_latency_us < info.untuned_latency_us

    leases = client.timeline()
    assert all(x["outcome"] == "finished" for x in leases), leases
    for job in jobs:  # extract, 2 x (search, build, profile, learn), compile, final benchmark
        stages = [x["stage"] for x in leases if x["job_id"] == job]
        assert stages == ["extract", *["search", "build", "profile", "learn"] * 2, "compile",
                          "profile"]
        assert len({x["host_id"] for x in leases if x["job_id"] == job}) == 1
    # a profile (the final benchmark too) ran alone on its host (host-exclusive CPU
    # profiling; others paused)
    assert_profiles_ran_alone(leases)
    # each stage ran inside its lease window, on the leased cores (one clock: same process)
    for x in leases:
        assert x["granted_at"] <= x["child_started"] <= x["child_finished"] <= x["ended_at"]
        assert sorted(x["child_cores"]) == sorted(x["cores"])
    # both hosts were used
    assert {x["host_id"] for x in leases} == {"box", "solo"}


def _slow_search(request: StageRequest) -> float:
    """Job "slow" searches for 1 s, everything else takes SECONDS."""
    slow = request.stage == "search" and JobDir(request.job_dir).spec().name == "slow"
    return 1.0 if slow else SECONDS[request.stage]


def test_a_profile_pauses_the_long_search_beside_it_and_runs_alone(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, {"box": 2}, seconds=_slow_search) as fake:
        client = fake.client
        jobs = [client.submit(MLP.with_(name=name)).job_id for name in ("slow", "quick")]
        wait_for(lambda: all(client.get(j).state == "done" for j in jobs), 30,
                 "two fake jobs to finish", interval=0.1)
        leases = client.timeline()
    assert all(x["outcome"] == "finished" for x in leases), leases
    paused = [x for x in leases if x["paused_at"]]
    assert paused, "no stage was ever paused for a profile"
    for x in paused:
        assert x["stage"] != "profile"
        assert len(x["paused_at"]) == len(x["resumed_at"])  # every pause was undone
        stopped = sum(b - a for a, b in zip(x["paused_at"], x["resumed_at"], strict=True))
        # the stage did not progress while stopped: its run took its time plus the pauses
        ran = x["child_finished"] - x["child_started"]
        slow = x["stage"] == "search" and x["job_id"] == jobs[0]
        assert ran >= (1.0 if slow else SECONDS[x["stage"]]) + stopped - 0.05, x
    # the quick job's profiles paused the slow job's searches
    assert any(x["stage"] == "search" and x["job_id"] == jobs[0] for x in paused)
    assert_profiles_ran_alone(leases)
    # and a profile never waited for a search to drain: it started right after its build
    for p in (x for x in leases if x["stage"] == "profile"):
        build = next(x for x in leases if (x["job_id"], x["round"], x["stage"])
                     == (p["job_id"], p["round"], "build"))
        assert p["granted_at"] - build["ended_at"] < 0.5


def test_cancel_revokes_the_lease_and_kills_the_sleeping_stage(tmp_path: Path) -> None:
    started: list[SleepStage] = []

    class Recording(SleepExecutor):
        def start(self, request: StageRequest) -> SleepStage:
            stage = super().start(request)
            started.append(stage)
            return stage

    with LocalCluster(tmp_path, {"box": 1}, seconds={**SECONDS, "search": 60.0}) as fake:
        fake.agents[0].executor = Recording({**SECONDS, "search": 60.0})
        job = fake.client.submit(MLP).job_id
        wait_for(lambda: any(s.request.stage == "search" for s in started), 10,
                 "the search stage to start", interval=0.05)
        search = next(s for s in started if s.request.stage == "search")
        assert fake.client.cancel(job).state == "cancelled"
        wait_for(lambda: search.outcome is not None, 5, "the killed stage to return",
                 interval=0.05)
        assert search.outcome.status == "crashed"
        assert search.outcome.finished - search.started < 5
        assert not (JobDir(search.request.job_dir).round_dir(0) / "built.json").exists()
        leases = fake.client.timeline()
        assert [x["outcome"] for x in leases if x["stage"] == "search"] == ["revoked"]


def test_sleep_stages_write_what_the_real_ones_do(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    job.write_spec(JobSpec(name="m", trials=6, batch_size=4))
    executor = SleepExecutor(lambda request: 0.0)  # every stage takes 0 s

    def run(stage: str, round_: int = 0) -> dict:
        outcome = executor.run(StageRequest(stage, str(job.root), round_, [0, 1]))
        assert outcome.ok, outcome.error
        assert outcome.cores == [0, 1] and outcome.started <= outcome.finished
        return outcome.result

    assert run("extract")["tasks"] == 1 and len(job.tasks()) == 1
    assert run("search") == {"task": 0, "candidates": 4, "exhausted_tasks": [], "done": False,
                             "trials_total": 0}
    assert run("build")["built"] == 4 and run("profile")["measured"] == 4
    first = run("learn")
    assert (first["trials"], first["trials_total"], first["done"]) == (4, 4, False)
    assert job.progress().rounds == 1
    assert run("search", 1)["candidates"] == 2  # what is left of the budget
    run("build", 1)
    run("profile", 1)
    last = run("learn", 1)
    assert (last["trials_total"], last["done"]) == (6, True)
    assert run("learn", 1)["replayed"] and job.progress().trials == 6  # a retry: no double count
    assert run("compile") == {"compile_s": 0.0} and not (job.result_dir / "report.json").exists()
    report = run("profile", 1)  # after compile: the final benchmark
    assert report["final"] and report["speedup"] > 1 and (job.result_dir / "report.json").exists()


def test_a_sleep_stage_honours_kill_and_timeout(tmp_path: Path) -> None:
    request = StageRequest("search", str(tmp_path / "none"), 0, [0])
    stage = SleepExecutor({"search": 60.0}).start(request)
    stage.kill()
    t0 = time.monotonic()
    outcome = stage.wait()
    assert outcome.status == "crashed" and time.monotonic() - t0 < 1 and stage.done()
    request.timeout_s = 0.05
    outcome = SleepExecutor({"search": 60.0}).run(request)
    assert outcome.status == "timeout" and "timeout" in outcome.error


def test_a_job_no_runner_can_run_says_why_it_waits(tmp_path: Path) -> None:
    """num-cores 64 on 2-core runners: submit warns, `jobs` and `show` say why it waits, the
    jobs behind it run, and it can be cancelled."""
    from click.testing import CliRunner

    from cli.main import cli

    with LocalCluster(tmp_path, {"box": 1}, seconds=SECONDS) as fake:
        scheduler = ["--scheduler", fake.address]
        big = CliRunner().invoke(cli, ["submit", "zoo:mlp", "--trials", "8", "--name", "big",
                                       "--target", '{"kind": "llvm", "num-cores": 64}',
                                       *scheduler])
        assert big.exit_code == 0, big.output
        why = "no runner offers 64 cores (the target's num-cores); the largest llvm runner offers 2"
        assert f"warning: no registered runner can run this job ({why})" in big.stderr
        big_id = big.stdout.split()[-1]
        small = fake.client.submit(MLP.with_(name="small")).job_id
        wait_for(lambda: fake.client.get(small).state == "done", 25, "the small job to finish",
                 interval=0.1)
        shown = CliRunner().invoke(cli, ["show", big_id, *scheduler])
        assert shown.stdout.splitlines()[0] == "queued" and f"waits     {why}" in shown.stdout
        listed = CliRunner().invoke(cli, ["jobs", *scheduler]).stdout.splitlines()
        row = next(i for i, line in enumerate(listed) if line.startswith(big_id))
        assert listed[row + 1].split() == ["waits:", *why.split()]
        watch = subprocess.Popen([*TUNESCHED, "watch", big_id, *scheduler], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert watch.stdout.readline().strip() == f"{big_id} waits: {why}"
        assert fake.client.cancel(big_id).state == "cancelled"
        assert watch.wait(30) == 1 and f"{big_id} cancelled" in watch.stdout.read()
        assert fake.client.get(big_id).waiting == ""
        assert not any(x["job_id"] == big_id for x in fake.client.timeline())  # never ran
