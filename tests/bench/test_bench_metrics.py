"""The evaluation bench's arithmetic: interval unions, contended profiling, the lower bound."""

from __future__ import annotations

import pytest
from evaluation.metrics import (
    LowerBound,
    contended_profile_fraction,
    device_busy,
    union_length,
)


def row(job: str, stage: str, start: float, end: float, cpu_s: float = 0.0) -> dict:
    return {"job_id": job, "stage": stage, "granted_at": start, "ended_at": end, "cpu_s": cpu_s}


def test_union_counts_overlaps_once() -> None:
    assert union_length([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert union_length([]) == 0.0


def test_contended_profiling_is_the_share_overlapped_by_other_stages() -> None:
    alone = [row("a", "profile", 0, 4), row("b", "search", 4, 8)]
    assert contended_profile_fraction(alone) == 0.0
    shared = [row("a", "profile", 0, 4), row("b", "search", 3, 8), row("c", "build", 2, 3.5)]
    assert contended_profile_fraction(shared) == pytest.approx(2 / 4)
    # two profiles at once contend with each other
    both = [row("a", "profile", 0, 2), row("b", "profile", 1, 3)]
    assert contended_profile_fraction(both) == pytest.approx(2 / 4)


def test_device_busy_is_profiling_time_over_makespan() -> None:
    spans = [row("a", "profile", 0, 2), row("b", "profile", 1, 3), row("a", "search", 3, 10)]
    assert device_busy(spans, 10.0) == pytest.approx(0.3)


def test_lower_bound_takes_the_largest_of_device_cpu_and_chain() -> None:
    spans = [row("a", "search", 0, 10, cpu_s=18), row("a", "profile", 10, 12, cpu_s=2),
             row("b", "search", 12, 16, cpu_s=8), row("b", "profile", 16, 19, cpu_s=3)]
    bound = LowerBound.of(spans, cores=2)
    assert (bound.device_s, bound.cpu_s, bound.chain_s) == (5, 31, 12)
    assert bound.value == pytest.approx(15.5)  # CPU-bound: 31 core-seconds on 2 cores
    assert LowerBound.of(spans, cores=64).value == 12  # then the longest job decides


def test_regret_is_the_kept_kernel_alone_over_the_best_alone_worst_task() -> None:
    from evaluation.fidelity import Fidelity

    truthful = Fidelity(pairs={0: [(1.0, 1.1, "a"), (2.0, 2.2, "b")],
                               1: [(5.0, 5.0, "c"), (4.0, 4.1, "d")]})
    assert truthful.regret == 1.0
    # task 1: the run's timings picked the candidate that is 1.5x slower alone
    misled = Fidelity(pairs={0: [(1.0, 1.0, "a"), (2.0, 2.0, "b")],
                             1: [(3.0, 6.0, "c"), (4.0, 4.0, "d")]})
    assert misled.regret == 1.5
    # ... unless verification kept the other one
    misled.kept = {0: "a", 1: "d"}
    assert misled.regret == 1.0
    assert Fidelity().regret is None
