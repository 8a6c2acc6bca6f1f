"""Forked worker pools: results in order, and crashes or hangs cost only their own item."""

from __future__ import annotations

import os
import time

from simpletvm.pool import isolated_map, isolated_map_serial


def _work(i: int) -> int:
    if i == 3:
        os._exit(7)  # a crashing candidate (segfault stand-in)
    if i == 5:
        raise RuntimeError("bad candidate\nsecond line")
    if i == 6:
        time.sleep(60)  # a hanging candidate
    return i * i


def test_parallel_map_isolates_crash_error_and_hang() -> None:
    outcomes = isolated_map(_work, 8, workers=2, timeout=2.0)
    assert [o.value for o in outcomes] == [0, 1, 4, None, 16, None, None, 49]
    assert "crashed" in outcomes[3].error
    assert outcomes[5].error == "RuntimeError: second line"
    assert "RuntimeError" in outcomes[5].detail
    assert "timed out" in outcomes[6].error


def test_serial_map_keeps_going_after_a_crash() -> None:
    outcomes = isolated_map_serial(_work, [2, 3, 4], timeout=5.0)
    assert [o.value for o in outcomes] == [4, None, 16]
    assert outcomes[1].error.startswith("worker crashed")
