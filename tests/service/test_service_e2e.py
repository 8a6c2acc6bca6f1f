"""End to end: real daemon, real runner processes, real TVM, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from client.api import Client
from scheduler.testing import RunnerProcess, wait_for
from simpletvm import SimpleTVM

from .conftest import (
    assert_exact_records,
    assert_profiles_ran_alone,
    cli,
    connected_runners,
    start_daemon,
    state_files,
)

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

TARGET = json.dumps({"kind": "llvm", "num-cores": len(os.sched_getaffinity(0))})


def submit(address: str, model: str, trials: int, *extra: str) -> str:
    out = cli("submit", model, "--scheduler", address, "--target", TARGET, "--trials",
              str(trials), "--batch-size", "8", *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_two_jobs_interleave_profiles_alone_and_results_compile(cluster) -> None:
    address, tmp = cluster["address"], cluster["tmp"]
    jobs = [submit(address, "zoo:matmul", 16, "--name", "mm", "--verify-top", "0"),
            submit(address, "zoo:conv2d", 16, "--name", "conv", "--verify-top", "3",
                   "--verify-passes", "2")]
    for job in jobs:
        watched = cli("watch", job, "--scheduler", address)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"{job} done" in watched.stdout
        shown = cli("show", job, "--scheduler", address)
        assert shown.stdout.splitlines()[0] == "done"

    with Client(address) as client:
        leases = client.timeline()
    assert {x["job_id"] for x in leases} == set(jobs)
    assert all(x["outcome"] == "finished" for x in leases)
    # no stage ran on the host while a profile's process ran (others were paused or done)
    assert len([x for x in leases if x["stage"] == "profile"]) >= 2
    assert_profiles_ran_alone(leases)
    # each job's last stage, the final benchmark, is a profile: host-exclusive, run alone
    finals = {}
    for job in jobs:
        mine = sorted((x for x in leases if x["job_id"] == job), key=lambda x: x["granted_at"])
        assert [x["stage"] for x in mine[-2:]] == ["compile", "profile"]
        finals[job] = mine[-1]
        assert finals[job]["exclusivity"] == "host"
    # the stage processes ran inside their leases, pinned to the leased cores
    for x in leases:
        assert x["granted_at"] - 0.5 <= x["child_started"] <= x["child_finished"]
        assert x["child_finished"] <= x["ended_at"] + 0.5
        assert sorted(x["child_cores"]) == sorted(x["cores"])
    # the jobs ran concurrently: their leases interleave in time
    spans = {j: (min(x["granted_at"] for x in leases if x["job_id"] == j),
                 max(x["ended_at"] for x in leases if x["job_id"] == j)) for j in jobs}
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1

    for job, model, shape in ((jobs[0], "matmul", (1, 128)), (jobs[1], "conv2d", None)):
        out_dir = tmp / f"result-{job}"
        got = cli("result", job, "-o", str(out_dir), "--scheduler", address)
        assert got.returncode == 0, got.stderr
        report = json.loads((out_dir / "report.json").read_text())
        assert report["trials"] == 16 and (out_dir / "model.so").exists()
        timed = report["benchmark"]  # within the final profile's lease (one clock: this host)
        assert finals[job]["child_started"] <= timed["started"] <= timed["finished"] \
            <= finals[job]["child_finished"]
        # the submitted verification settings reached the stages: off for mm, 3 x 2 for conv
        verified = out_dir / "records" / "00" / "verified.json"
        if model == "matmul":
            assert not verified.exists() and report["tasks"][0]["verified_us"] is None
        else:
            rows = json.loads(verified.read_text())["candidates"]
            assert [len(r["passes_us"]) for r in rows] == [2, 2, 2, 2]  # and the default
        net = SimpleTVM.from_zoo(model, shape).target(json.loads(TARGET))
        net.use_records(out_dir / "records").benchmark(repeat=5)
        assert net.latency.median_us < net.untuned_latency.median_us


def test_cancel_watch_and_result_through_the_cli(cluster) -> None:
    address = cluster["address"]
    job = submit(address, "zoo:conv2d", 100_000)
    wait_for(lambda: cli("show", job, "--scheduler", address).stdout.startswith("running"),
             120, "the job to start running")
    cancelled = cli("cancel", job, "--scheduler", address)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert cli("show", job, "--scheduler", address).stdout.splitlines()[0] == "cancelled"
    watched = cli("watch", job, "--scheduler", address)
    assert watched.returncode == 1 and f"{job} cancelled" in watched.stdout
    result = cli("result", job, "-o", str(cluster["tmp"] / "r"), "--scheduler", address)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cancelled" in result.stderr
    again = cli("cancel", job, "--scheduler", address)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    # the runners are free again: leases of the cancelled job were all ended
    wait_for(lambda: all(not r.leases for r in Client(address).runners()), 30,
             "the cancelled job's leases to end")


def rounds(tmp: Path, jobs: list[str]) -> dict[str, list]:
    """Each job's committed rounds (round, trials after it, task) and exhausted tasks, as
    its work dir holds them: what a failed trial count is explained by."""
    out = {}
    for job in jobs:
        progress = json.loads((tmp / "work" / "jobs" / job / "progress.json").read_text())
        out[job] = [(c["round"], c["trials"], c["task"]) for c in progress["curve"]]
        out[job].append([i for i, t in enumerate(progress["tasks"]) if t["exhausted"]])
    return out


def test_sigterm_daemon_mid_job_then_restart_finishes_jobs(tmp_path) -> None:
    state = tmp_path / "state" / "s.db"
    daemon = start_daemon(state, tmp_path / "daemon1.log")
    address = daemon.address
    runners = [RunnerProcess(address, f"r{i}", "box", tmp_path / "work",
                             tmp_path / f"runner{i}.log") for i in (1, 2)]
    try:
        wait_for(lambda: connected_runners(address) == 2, 60, "two runners to register")
        jobs = [submit(address, "zoo:matmul", 24), submit(address, "zoo:mlp", 24)]

        def some_progress() -> bool:
            with Client(address) as client:
                return any(client.get(j).trials_done > 0 for j in jobs)

        wait_for(some_progress, 300, "a learn stage to commit")
        assert daemon.stop(signal.SIGTERM) == 0
        daemon = start_daemon(state, tmp_path / "daemon2.log", listen=address)
        with Client(address) as client:
            assert {j.job_id for j in client.jobs()} == set(jobs)
        for job in jobs:
            watched = cli("watch", job, "--scheduler", address)
            assert watched.returncode == 0, watched.stdout + watched.stderr
        with Client(address) as client:
            done = {j: (client.get(j).state, client.get(j).trials_done) for j in jobs}
        assert all(trials == 24 for _, trials in done.values()), (done, rounds(tmp_path, jobs))
        for job in jobs:  # 0 lost, 0 duplicated: every record and measured hash exactly once
            assert_exact_records(address, state, job, 24, tmp_path / f"result-{job}")
    finally:
        for r in runners:
            r.stop()
        daemon.stop()


def test_job_moves_to_another_host_when_its_host_dies(tmp_path) -> None:
    daemon = start_daemon(tmp_path / "state" / "s.db", tmp_path / "daemon.log")
    address = daemon.address
    runners = {h: RunnerProcess(address, f"r-{h}", h, tmp_path / f"work-{h}",
                                tmp_path / f"{h}.log") for h in ("h1", "h2")}
    try:
        wait_for(lambda: connected_runners(address) == 2, 60, "two runners to register")
        job = submit(address, "zoo:matmul", 32)

        def committed_and_running() -> str:
            with Client(address) as client:
                info = client.get(job)
            return info.host_id if info.trials_done >= 8 and info.stage else ""

        first_host = wait_for(committed_and_running, 300, "a committed round")
        victim = runners[first_host]
        os.killpg(victim.proc.pid, signal.SIGKILL)  # the runner and its stage processes
        victim.proc.wait()
        watched = cli("watch", job, "--scheduler", address)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        with Client(address) as client:
            leases = client.timeline()
            info = client.get(job)
        assert info.trials_done == 32 and info.host_id != first_host
        assert {x["host_id"] for x in leases} == {"h1", "h2"}
        assert any(x["outcome"] in ("revoked", "expired") for x in leases)
        # it resumed from its last learn: no extract on the new host, and its first search
        # there is the round after the last learn the first host finished
        moved_leases = [x for x in leases if x["host_id"] == info.host_id]
        learned = [x["round"] for x in leases if x["host_id"] == first_host
                   and x["stage"] == "learn" and x["outcome"] == "finished"]
        assert "extract" not in {x["stage"] for x in moved_leases}
        assert min(x["round"] for x in moved_leases if x["stage"] == "search") == \
            max(learned, default=-1) + 1
        # nothing lost, nothing counted twice: 32 distinct records and measured hashes
        assert_exact_records(address, tmp_path / "state" / "s.db", job, 32, tmp_path / "result")
        # the model went up once, apart from the state; the second host got it with the state
        assert not any(n.startswith("model/") for n in state_files(tmp_path / "state" / "s.db",
                                                                   job))
        assert sorted(state_files(tmp_path / "state" / "s.db", job, "model")) == [
            "model/inputs.json", "model/model.json", "model/model.onnx"]
        moved = tmp_path / f"work-{info.host_id}" / "jobs" / job / "model"
        assert sorted(p.name for p in moved.iterdir()) == ["inputs.json", "model.json",
                                                            "model.onnx"]
    finally:
        for r in runners.values():
            r.stop()
        daemon.stop()
