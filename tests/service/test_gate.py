"""PauseGate: a held profile start goes out exactly once, when its paused stages are stopped."""

from __future__ import annotations

from scheduler.service.gate import PauseGate


def test_start_waits_for_every_paused_stage() -> None:
    gate, sent = PauseGate(timeout_s=5.0), []
    gate.hold("p1", {"a", "b"}, 0.0, lambda: sent.append("p1"))
    gate.stopped("a")
    assert sent == [] and len(gate) == 1
    gate.stopped("b")
    assert sent == ["p1"] and len(gate) == 0
    gate.stopped("b")  # a late duplicate changes nothing
    assert sent == ["p1"]


def test_nothing_to_wait_for_sends_at_once() -> None:
    gate, sent = PauseGate(), []
    gate.hold("p1", set(), 0.0, lambda: sent.append("p1"))
    assert sent == ["p1"] and len(gate) == 0


def test_a_revoked_profile_is_never_sent() -> None:
    gate, sent = PauseGate(), []
    gate.hold("p1", {"a"}, 0.0, lambda: sent.append("p1"))
    gate.drop("p1")
    gate.stopped("a")
    assert sent == [] and gate.overdue(100.0) == []


def test_a_silent_runner_delays_the_profile_only_until_the_timeout() -> None:
    gate, sent = PauseGate(timeout_s=5.0), []
    gate.hold("p1", {"a", "b"}, 10.0, lambda: sent.append("p1"))
    gate.stopped("a")
    assert gate.overdue(14.9) == [] and sent == []
    assert gate.overdue(15.0) == [("p1", {"b"})] and sent == ["p1"]
    gate.stopped("b")
    assert sent == ["p1"]
