"""Stage `profile`: time each built candidate on the device, one at a time; after the compile
stage, the final benchmark of the whole model (simpletvm.stages.compile).

This is the stage that needs its device to itself. Each candidate runs in a forked worker so that
a crashing kernel costs one result, not the stage. A verification round (simpletvm.verification)
times its candidates in several interleaved passes and records each one's per-pass medians.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from simpletvm import goalcheck, verification
from simpletvm.jobdir import read_json, write_json
from simpletvm.pool import Outcome, isolated_map_serial
from simpletvm.stages import compile as final
from simpletvm.stages.base import StageContext
from simpletvm.targets import device_type

PROFILE_TIMEOUT_S = 60.0
# MetaSchedule's LocalRunner takes one sample of at least 100 ms; we take three of at least 35 ms:
# the same time per candidate, and the spread of the samples shows how noisy the device was.
NUMBER, REPEAT, MIN_REPEAT_MS = 3, 3, 35
# A verification pass takes one such sample of each candidate: more passes, spread over time,
# for what three samples in a row cost.
VERIFY_REPEAT = 1
# A search candidate whose first sample is this many times the task's best so far is not timed
# again (AdaTune's early stop, in its simplest form): two more samples could not make it the
# best, whatever the noise of this box (two timings of one model minutes apart differed by up
# to 30%), and most candidates of a task's first batches are that slow.
CLEARLY_SLOWER = 2.0

_INPUTS: list[tuple[str, str, list[Any]]] = []
_REPEAT = [REPEAT]
_BEST = [math.inf]  # the task's best seconds so far: set before the worker forks, then its own


def time_one(artifact: str, device: str, args_info: list[Any], repeat: int = REPEAT,
             cutoff: float = math.inf) -> list[float]:
    """Run seconds of one artifact, as MetaSchedule's LocalRunner measures them: `repeat`
    samples, or only the first when it is over `cutoff` seconds (`adaptive`)."""
    import tvm
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common, run_evaluator_common

    rt_mod = tvm.runtime.load_module(artifact)
    dev = tvm.runtime.device(device, 0)
    fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure", allow_missing=True)
    args = alloc_argument_common(fill, dev, args_info, 1)

    def samples(n: int) -> list[float]:
        config = EvaluatorConfig(number=NUMBER, repeat=n, min_repeat_ms=MIN_REPEAT_MS,
                                 enable_cpu_cache_flush=False)
        return [float(s) for s in run_evaluator_common(rt_mod, dev, config, args)]

    return adaptive(samples, repeat, cutoff)


def adaptive(samples: Callable[[int], list[float]], repeat: int, cutoff: float) -> list[float]:
    """`repeat` samples (`samples(n)` takes n), or the first alone when it is over `cutoff`."""
    if repeat <= 1 or not math.isfinite(cutoff):
        return samples(repeat)
    first = samples(1)
    return first if first[0] > cutoff else first + samples(repeat - 1)


def _time_index(i: int) -> list[float]:
    """In the worker: time candidate i; a search candidate clearly slower than the best so far
    (the task's, then this batch's) gets one sample."""
    if _REPEAT[0] != REPEAT:  # a verification pass: every candidate alike
        return time_one(*_INPUTS[i], repeat=_REPEAT[0])
    out = time_one(*_INPUTS[i], repeat=REPEAT, cutoff=CLEARLY_SLOWER * _BEST[0])
    _BEST[0] = min(_BEST[0], statistics.median(out))
    return out


def pin_to_target(target: dict[str, Any], cores: list[int]) -> list[int]:
    """Run kernels on the target's num-cores of the leased cores (a host-exclusive lease holds
    them all), so a kernel is timed with as many threads as it was tuned for."""
    wanted = int(target.get("num-cores") or 0) if target.get("kind") == "llvm" else 0
    if 0 < wanted < len(cores):
        cores = cores[:wanted]
        os.sched_setaffinity(0, cores)
        os.environ.update(TVM_NUM_THREADS=str(wanted), OMP_NUM_THREADS=str(wanted))
    return cores


def run(ctx: StageContext) -> dict[str, Any]:
    """Write rounds/rNNNN/results.json: run_secs or an error per candidate, plus the time span."""
    target = ctx.job.spec().target
    cores = pin_to_target(target, ctx.cores)
    if final.built(ctx.job):  # after the compile stage: the final benchmark
        return final.measure(ctx, cores)
    plan = read_json(ctx.round_dir / "candidates.json")
    built_json = read_json(ctx.round_dir / "built.json")
    built = built_json["built"]
    device = device_type(target)
    if goalcheck.is_goal_plan(plan):  # the whole model, alone on its device
        started = time.time()
        model = goalcheck.time_model(ctx.job, built_json["model"], device)
        finished = time.time()
        write_json(ctx.round_dir / "results.json", {"results": [], "model": model,
                                                    "started": started, "finished": finished})
        return {"measured": int(model["error"] is None), "errors": int(model["error"] is not None),
                "trials": 0, "goal_check": True, "started": started, "finished": finished,
                "model_us": model["run_secs"][0] * 1e6 if model["run_secs"] else None}
    todo = [i for i, b in enumerate(built) if b["error"] is None]
    _INPUTS[:] = [(built[i]["artifact"], device, plan["candidates"][i]["args_info"]) for i in todo]
    verify = verification.is_verify_plan(plan)
    started = time.time()
    _REPEAT[0] = VERIFY_REPEAT if verify else REPEAT
    best_us = None if verify else ctx.job.progress().tasks[plan["task"]].best_us
    _BEST[0] = best_us * 1e-6 if best_us else math.inf
    if verify:
        outcomes = _time_in_passes(len(todo), int(plan["verify"]["passes"]))
    else:
        outcomes = isolated_map_serial(_time_index, range(len(todo)), PROFILE_TIMEOUT_S)
    finished = time.time()
    _INPUTS.clear()
    results: list[dict[str, Any]] = [{"run_secs": None, "error": b["error"]} for b in built]
    for i, outcome in zip(todo, outcomes, strict=True):
        results[i] = {"run_secs": outcome.value, "error": outcome.error}
    write_json(ctx.round_dir / "results.json",
               {"results": results, "started": started, "finished": finished})
    ok = [min(r["run_secs"]) for r in results if r["run_secs"]]
    summary = {"measured": len(ok), "errors": len(results) - len(ok),
               "batch_best_us": min(ok) * 1e6 if ok else None,
               "one_sample": 0 if verify else sum(
                   len(r["run_secs"] or []) == 1 for r in results),
               "started": started, "finished": finished}
    return {**summary, "trials": 0, "verify": True} if verify else summary


def _time_in_passes(count: int, passes: int) -> list[Outcome]:
    """Time positions 0..count-1 in `passes` passes of alternating order; per position, its
    per-pass medians (or the first error: a candidate that failed is not timed again)."""
    per_pass: list[list[float]] = [[] for _ in range(count)]
    errors: list[str | None] = [None] * count
    for pass_ in range(passes):
        order = [i for i in verification.pass_order(count, pass_) if errors[i] is None]
        for i, outcome in zip(order, isolated_map_serial(_time_index, order, PROFILE_TIMEOUT_S),
                              strict=True):
            if outcome.error is None:
                per_pass[i].append(statistics.median(outcome.value))
            else:
                errors[i] = outcome.error
    return [Outcome(error=e) if e else Outcome(value=v)
            for v, e in zip(per_pass, errors, strict=True)]
