"""Pausing a stage process: its whole tree stops, its time limit stands still, kill still works.

Real child processes (forked like stage children, with a forked worker like a build's pool).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from scheduler.testing import wait_for
from simpletvm.executor import StageOutcome, StageProcess, StageRequest


def _work(outcome_path: str, steps: int) -> None:
    """A stage stand-in: one forked worker, then `steps` x 0.1 s of wall-clock steps."""
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    worker.start()
    started = time.time()
    for _ in range(steps):
        time.sleep(0.1)
    worker.kill()
    worker.join()
    Path(outcome_path).write_text(json.dumps(StageOutcome(
        "build", "ok", {"steps": steps}, pid=os.getpid(), started=started,
        finished=time.time()).to_dict()))


def _start(steps: int, timeout_s: float | None) -> StageProcess:
    path = os.path.join(tempfile.mkdtemp(), "outcome.json")
    process = multiprocessing.get_context("fork").Process(target=_work, args=(path, steps))
    process.start()
    return StageProcess(process, StageRequest("build", "/nonexistent", timeout_s=timeout_s), path)


def _tree(stage: StageProcess) -> list[psutil.Process]:
    root = psutil.Process(stage.pid)
    wait_for(root.children, 10, "the stage to fork its worker", interval=0.02)
    return [root, *root.children(recursive=True)]


def test_pause_stops_the_whole_tree_and_resume_continues_it() -> None:
    stage = _start(steps=10, timeout_s=None)
    tree = _tree(stage)
    stage.pause()
    assert stage.paused
    assert {p.status() for p in tree} == {psutil.STATUS_STOPPED}
    stage.resume()
    assert not stage.paused
    assert psutil.STATUS_STOPPED not in {p.status() for p in tree}
    outcome = stage.wait()
    assert outcome.ok and outcome.result == {"steps": 10}
    assert len(outcome.paused_at) == len(outcome.resumed_at) == 1
    assert outcome.paused_at[0] <= outcome.resumed_at[0]


def test_paused_time_does_not_count_toward_the_time_limit() -> None:
    # 1.0 s of steps under a 1.5 s limit, paused 1.0 s in the middle: 2 s of wall clock
    stage = _start(steps=10, timeout_s=1.5)
    _tree(stage)
    stage.pause()
    resume_at = time.monotonic() + 1.0
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(stage.wait)
        while time.monotonic() < resume_at:  # the pause itself: what is under test
            time.sleep(0.05)
        stage.resume()
        outcome = waiter.result(timeout=30)
    assert outcome.ok, outcome.error
    assert outcome.finished - outcome.started > 1.5  # it did overrun the limit in wall time
    assert stage.paused_s() >= 0.95


def test_a_stage_still_times_out_when_it_runs_too_long() -> None:
    stage = _start(steps=50, timeout_s=0.5)
    outcome = stage.wait()
    assert outcome.status == "timeout"


def test_kill_ends_a_paused_tree() -> None:
    stage = _start(steps=100, timeout_s=None)
    tree = _tree(stage)
    stage.pause()
    stage.kill()
    _assert_ended(tree)


def test_kill_reaches_the_workers_when_the_parent_dies_first(monkeypatch) -> None:
    # On a loaded box the SIGKILLed parent is gone (its workers reparented) before the killer
    # looks for its children; make that happen every time.
    stage = _start(steps=100, timeout_s=None)
    tree = _tree(stage)
    stage.pause()
    send = psutil.Process.send_signal

    def send_then_lag(proc: psutil.Process, sig: int) -> None:
        send(proc, sig)
        if proc.pid == stage.pid and sig == signal.SIGKILL:
            _wait_ended(proc)

    monkeypatch.setattr(psutil.Process, "send_signal", send_then_lag)
    stage.kill()
    _assert_ended(tree)


def _assert_ended(tree: list[psutil.Process]) -> None:
    """Every process is gone, or a zombie waiting for its reaper (PID 1 in a container may
    never reap it): either way not left stopped, holding its memory, forever."""
    for proc in tree:
        _wait_ended(proc)


def _wait_ended(proc: psutil.Process) -> None:
    wait_for(lambda: _status(proc) in ("gone", psutil.STATUS_ZOMBIE), 10,
             f"pid {proc.pid} to end", interval=0.02)


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return "gone"


def test_pause_returns_once_every_process_of_the_tree_is_seen_stopped() -> None:
    stage = _start(steps=100, timeout_s=None)
    tree = _tree(stage)
    try:
        assert stage.pause() == []  # confirmed
        assert {p.status() for p in tree} == {psutil.STATUS_STOPPED}
    finally:
        stage.kill()


def test_a_process_that_did_not_stop_is_named_and_the_pause_is_not_confirmed(
        monkeypatch, caplog) -> None:
    """A worker the SIGSTOP missed (as one forked past the listing would be): the runner does
    not confirm the pause, and its warning names the worker."""
    from runner.agent import Agent, RunnerConfig
    from runner.hostinfo import HostInfo, ZeroLoad
    from simpletvm import executor
    from simpletvm.fake_executor import SleepExecutor

    stage = _start(steps=100, timeout_s=None)
    tree = _tree(stage)
    worker = tree[1]
    monkeypatch.setattr(executor, "_signal_tree",
                        lambda pid, sig: psutil.Process(pid).send_signal(sig))  # root only
    monkeypatch.setattr(executor, "PAUSE_CONFIRM_S", 0.3)
    agent = Agent(RunnerConfig("127.0.0.1:1", HostInfo("box", [0]), Path(tempfile.mkdtemp()),
                               "r1"), executor=SleepExecutor(), meter=ZeroLoad())
    agent.running["lease-1"] = stage
    try:
        with caplog.at_level("WARNING", logger="runner.agent"):
            assert agent._pause("lease-1", True) is False
        assert f"{worker.pid} {worker.name()}" in caplog.text
        assert worker.status() != psutil.STATUS_STOPPED
    finally:
        stage.kill()
