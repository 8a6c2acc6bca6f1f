"""Times taken in turns: the machine's drift between turns cancels, a lone spike does not decide."""

from __future__ import annotations

import statistics

import pytest

from simpletvm.turns import in_turns


def test_a_spike_in_a_slow_turn_does_not_reverse_the_order() -> None:
    # a is truly 10% faster than b; turns 1-3 run 50% slow for both, and a is hit once more in
    # turn 3 (a lone spike), which moves a's own median above b's
    a = [100.0, 150.0, 150.0, 150.0, 100.0]
    b = [110.0, 165.0, 165.0, 110.0, 110.0]
    assert statistics.median(a) > statistics.median(b)
    est = in_turns({"a": a, "b": b})
    assert est["a"] < est["b"]
    assert est["b"] / est["a"] == pytest.approx(1.1)


def test_drift_that_hits_every_turn_alike_leaves_the_ratios_exact() -> None:
    drift = [1.0, 1.3, 0.8, 1.6, 1.1, 0.9, 1.2]
    true = {"x": 50.0, "y": 60.0, "z": 80.0}
    est = in_turns({k: [t * d for d in drift] for k, t in true.items()})
    assert est["y"] / est["x"] == pytest.approx(1.2)
    assert est["z"] / est["x"] == pytest.approx(1.6)
    # scaled back to a time by the median turn: drift 1.1 here
    assert est["x"] == pytest.approx(50.0 * 1.1)


def test_one_key_gets_its_median_and_missing_samples_are_left_out() -> None:
    assert in_turns({"a": [3.0, 1.0, 9.0, 2.0, 1.5], "b": []}) == {"a": pytest.approx(2.0)}
    assert in_turns({}) == {}
    # only the turns every key has count
    est = in_turns({"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0]})
    assert est["b"] / est["a"] == pytest.approx(2.0)
