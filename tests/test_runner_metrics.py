"""A runner's Prometheus metrics: a real runner agent (sleep stages) runs a job through a real
daemon on loopback, and its `/metrics` over HTTP, parsed with prometheus_client's own parser,
counts what ran; a fork server that died and came back; `tunesched runner --metrics`."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from cli.main import cli
from runner.agent import Agent, RunnerConfig
from runner.hostinfo import HostInfo
from runner.metrics import RunnerMetrics, fork_server_pid
from scheduler.service.config import DaemonConfig
from scheduler.testing import TUNESCHED, LocalCluster, connected_runners, wait_for
from simpletvm.executor import StageOutcome, StageRequest
from simpletvm.fake_executor import SleepExecutor, SleepStage
from simpletvm.spec import JobSpec
from simpletvm.tuningdb import cpu_model

MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8, batch_size=4)
SECONDS = {"extract": 0.02, "search": 0.05, "build": 0.05, "profile": 0.05, "learn": 0.02,
           "compile": 0.05}
CPU_S = 0.25  # what each fake stage process says it used
LOAD = 0.125  # the foreign load the runner's meter reports (under the profile threshold)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """(sample name, sorted labels) -> value, from the exposition text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        return samples(reply.read().decode())


class _FixedLoad:
    """A LoadMeter that always measures LOAD."""

    def foreign_load(self) -> float:
        return LOAD

    def close(self) -> None:
        """Nothing announced."""


class _MeasuredStage(SleepStage):
    """A sleep stage whose outcome reports CPU_S CPU seconds, as a real stage process does."""

    def wait(self, timeout: float | None = None) -> StageOutcome:
        outcome = super().wait(timeout)
        outcome.cpu_s = CPU_S
        return outcome


class _Executor(SleepExecutor):
    """Sleep stages that report CPU time; the first search starts only once `go` is set."""

    def __init__(self) -> None:
        super().__init__(SECONDS)
        self.go = threading.Event()

    def start(self, request: StageRequest) -> SleepStage:
        if request.stage == "search":  # its lease is live meanwhile: the runner holds it
            assert self.go.wait(30), "the test never let the search start"
        return _MeasuredStage(request, self.duration(request))


def test_the_runner_serves_counts_of_what_its_stages_did(tmp_path: Path) -> None:
    config = DaemonConfig(tmp_path / "state" / "s.db", heartbeat_interval_s=0.1)
    metrics = RunnerMetrics()
    server, address = metrics.serve("127.0.0.1:0")
    url = f"http://{address}/metrics"
    executor = _Executor()
    try:
        with LocalCluster(tmp_path, {}, config=config) as cluster:
            host = HostInfo("box", [0, 1], memory_mb=65536, cpu_model=cpu_model())
            cluster.add_agent(Agent(RunnerConfig(cluster.address, host, cluster.work_dir("box"),
                                                 "box-r0"),
                                    executor=executor, meter=_FixedLoad(), metrics=metrics))
            client = cluster.client
            wait_for(lambda: connected_runners(client) == 1, 30, "the runner to register",
                     interval=0.05)
            assert scrape(url)[("tunesched_runner_leases", ())] == 0
            job = client.submit(MLP).job_id
            wait_for(lambda: scrape(url)[("tunesched_runner_leases", ())] == 1, 30,
                     "the runner to hold the search's lease", interval=0.05)
            executor.go.set()
            wait_for(lambda: client.get(job).state == "done", 30, "the job to finish",
                     interval=0.05)
            leases = client.timeline()
            got = wait_for(lambda: (s := scrape(url))[("tunesched_runner_foreign_load", ())]
                           == LOAD and s, 30, "a heartbeat's foreign load", interval=0.05)
    finally:
        executor.go.set()
        server.shutdown()
        server.server_close()
    assert leases and all(x["outcome"] == "finished" for x in leases), leases
    ran = Counter(x["stage"] for x in leases)
    counted = {dict(labels)["stage"]: value for (name, labels), value in got.items()
               if name == "tunesched_runner_stages_total"}
    assert counted == ran
    assert {dict(labels)["outcome"] for (name, labels) in got
            if name == "tunesched_runner_stages_total"} == {"ok"}
    for stage, count in ran.items():
        cpu = got[("tunesched_runner_stage_cpu_seconds_total", (("stage", stage),))]
        assert abs(cpu - CPU_S * count) < 1e-9, stage
    assert got[("tunesched_runner_leases", ())] == 0
    assert got[("tunesched_runner_fork_server_restarts_total", ())] == 0  # no fork server
    # no label names a job, a lease or a candidate
    assert {label for (_, labels) in got for label, _ in labels} <= {"stage", "outcome"}


def test_a_fork_server_that_died_and_came_back_counts_as_a_restart() -> None:
    ctx = multiprocessing.get_context("forkserver")  # the executor's kind of fork server
    metrics = RunnerMetrics()

    def run_one() -> None:
        process = ctx.Process(target=os.getpid)
        process.start()
        metrics.fork_server_seen()
        process.join(30)
        assert process.exitcode == 0

    def restarts() -> float:
        return metrics.registry.get_sample_value(
            "tunesched_runner_fork_server_restarts_total")

    run_one()
    run_one()
    first = fork_server_pid()
    assert first is not None and restarts() == 0
    os.kill(first, signal.SIGKILL)  # this process's own fork server, started above
    wait_for(lambda: psutil.Process(first).status() == psutil.STATUS_ZOMBIE, 10,
             "the fork server to die", interval=0.01)
    run_one()
    assert fork_server_pid() not in (None, first)
    assert restarts() == 1
    run_one()
    assert restarts() == 1


def test_a_bad_metrics_address_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["runner", "--work-dir", str(tmp_path), "--gpus", "none",
                                      "--metrics", "bad"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "--metrics" in lines[0] and "HOST:PORT" in lines[0]


def test_tunesched_runner_prints_where_it_serves_metrics(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*TUNESCHED, "runner", "--scheduler", "127.0.0.1:1", "--work-dir", str(tmp_path),
         "--gpus", "none", "--cores", "0", "--metrics", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = ""
        for _ in range(5):  # the runner's own line first, then the metrics one
            line = proc.stdout.readline().decode()
            match = re.search(r"metrics at (\S+)", line)
            if match or not line:
                url = match.group(1) if match else ""
                break
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
        got = scrape(url)
        assert got[("tunesched_runner_leases", ())] == 0
        assert ("tunesched_runner_foreign_load", ()) in got
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the runner and its fork server
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
