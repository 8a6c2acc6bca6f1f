"""Run a function over items in forked worker processes, surviving crashes and hangs.

Workers are forked from the calling stage process, which already imported TVM: no worker pays
the import again (the stock LocalBuilder starts fresh interpreters on every call). A worker that
dies or overruns its timeout costs only the item it was working on.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, TimeoutError, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from simpletvm.errors import last_line


@dataclass
class Outcome:
    """The result of one item: `value` when it worked, else `error` (one line) and `detail`."""

    value: Any = None
    error: str | None = None
    detail: str = ""


def _call(fn: Callable[[int], Any], index: int) -> Outcome:
    try:
        return Outcome(value=fn(index))
    except Exception as exc:
        return Outcome(error=f"{type(exc).__name__}: {last_line(exc)}",
                       detail=traceback.format_exc())


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


def _kill(pool: ProcessPoolExecutor) -> None:
    for proc in list((pool._processes or {}).values()):  # no public API to kill a stuck worker
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def isolated_map(fn: Callable[[int], Any], count: int, workers: int,
                 timeout: float) -> list[Outcome]:
    """`fn(i)` for i in range(count), in `workers` forked processes; one Outcome per item.

    `fn` must be reachable after fork (a module-level function over module-level inputs). When a
    worker crashes or the batch overruns, the unfinished items are retried one at a time, each
    with its own timeout, so exactly the offending items fail.
    """
    width = max(1, min(workers, count))
    if width == 1:
        return isolated_map_serial(fn, range(count), timeout)
    results: list[Outcome | None] = [None] * count
    pool = _new_pool(width)
    futures = [pool.submit(_call, fn, i) for i in range(count)]
    wait(futures, timeout=timeout * -(-count // width) + 5)
    for i, fut in enumerate(futures):
        if fut.done() and not isinstance(fut.exception(), BrokenProcessPool):
            results[i] = fut.result()
    rest = [i for i, r in enumerate(results) if r is None]
    if rest:
        _kill(pool)
        for i, outcome in zip(rest, isolated_map_serial(fn, rest, timeout), strict=True):
            results[i] = outcome
    else:
        pool.shutdown()
    return [r for r in results if r is not None]


def isolated_map_serial(fn: Callable[[int], Any], indices: Iterable[int],
                        timeout: float) -> list[Outcome]:
    """`fn(i)` for each index, one at a time in one forked worker, each with its own timeout."""
    results: list[Outcome] = []
    pool = _new_pool(1)
    for i in indices:
        fut = pool.submit(_call, fn, i)
        try:
            results.append(fut.result(timeout=timeout))
        except (BrokenProcessPool, TimeoutError) as exc:
            kind = "timed out" if isinstance(exc, TimeoutError) else "crashed"
            results.append(Outcome(error=f"worker {kind} on this item (timeout {timeout:g} s)"))
            _kill(pool)
            pool = _new_pool(1)
    pool.shutdown()
    return results
