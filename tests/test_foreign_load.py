"""Foreign load: host CPU that no tunesched runner on the host explains. Real processes: a
"runner" that announces itself (as every runner agent's LoadMeter does) and burns CPU in a
forked stage child does not count as foreign for another runner's meter; the same burn in a
process no runner announced does."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.hostinfo import LoadMeter
from scheduler.testing import wait_for


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _runner(registry: str, ready: multiprocessing.Event, stop: multiprocessing.Event,
            announce: bool) -> None:
    """Another runner agent on this host (announced, if `announce`): its stage, a forked
    child, keeps one core busy until `stop`."""
    meter = LoadMeter(Path(registry)) if announce else None
    stage = multiprocessing.get_context("fork").Process(target=_burn, args=(120,))
    stage.start()
    ready.set()
    stop.wait(120)
    stage.kill()
    stage.join()
    if meter is not None:
        meter.close()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "runners"


@contextlib.contextmanager
def _other_runner(registry: Path, announce: bool) -> Iterator[None]:
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_runner, args=(str(registry), ready, stop, announce))
    proc.start()
    try:
        assert ready.wait(30)
        yield
    finally:
        stop.set()
        proc.join(30)


def _measure(registry: str, seconds: float, out: multiprocessing.Queue) -> None:
    """This runner (a sibling of the other one, as two runner agents on a host are): the
    foreign load its meter sees over `seconds`, the interval a heartbeat measures over."""
    meter = LoadMeter(Path(registry))
    meter.foreign_load()  # start the interval now
    time.sleep(seconds)
    out.put(meter.foreign_load())
    meter.close()


def _foreign_load_beside(registry: Path, announce: bool) -> float:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with _other_runner(registry, announce):
        proc = ctx.Process(target=_measure, args=(str(registry), 1.0, out))
        proc.start()
        load = out.get(timeout=30)
        proc.join(30)
    return load


def test_another_runners_stages_on_the_host_are_not_foreign(registry: Path) -> None:
    load = _foreign_load_beside(registry, announce=True)
    assert load < 0.15, load  # one of the host's cores was busy, all of it a runner's
    assert not any(registry.iterdir())  # both meters took their announcements back


def test_a_process_no_runner_announced_is_foreign(registry: Path) -> None:
    load = _foreign_load_beside(registry, announce=False)
    assert load > 0.6 / len(os.sched_getaffinity(0)), load  # one busy core of the host's


def test_a_dead_runners_announcement_is_ignored_and_removed(registry: Path) -> None:
    meter = LoadMeter(registry)
    try:
        stale = registry / "999999999-1.0"  # no such process
        stale.write_text("")
        meter.foreign_load()
        wait_for(lambda: not stale.exists(), 5, "the stale announcement to be removed")
    finally:
        meter.close()
