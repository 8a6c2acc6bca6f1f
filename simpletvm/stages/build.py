"""Stage `build`: compile each candidate of the round to a shared library, in parallel.

A search round's candidates are all of the plan's task; a verification round's name their own;
a goal round builds the whole model (simpletvm.goalcheck).

Workers are forked from this process after TVM is imported, one per leased core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletvm import goalcheck, verification
from simpletvm.candidates import replay, shash
from simpletvm.jobdir import read_json, write_json
from simpletvm.pool import isolated_map
from simpletvm.stages.base import StageContext
from simpletvm.targets import to_tvm

BUILD_TIMEOUT_S = 120.0

# (module, tvm target, output path) per candidate; set before forking so workers inherit it
_INPUTS: list[tuple[Any, Any, Path]] = []


def compile_one(mod: Any, target: Any, out: Path) -> str:
    """MetaSchedule's default build, exported as a shared library (linked here, not at profile)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    tvm_build(mod, target=target).export_library(str(out))
    return str(out)


def _build_index(i: int) -> str:
    return compile_one(*_INPUTS[i])


def run(ctx: StageContext) -> dict[str, Any]:
    """Write rounds/rNNNN/built.json (artifact path or error per candidate) and art/*.so."""
    import tvm

    job = ctx.job
    plan = read_json(ctx.round_dir / "candidates.json")
    if goalcheck.is_goal_plan(plan):  # the whole model, with the job's records
        art = ctx.round_dir / "art"
        art.mkdir(parents=True, exist_ok=True)
        model = goalcheck.build(job, art / "model.so")
        write_json(ctx.round_dir / "built.json", {"built": [], "model": model})
        return {"built": int(model["error"] is None), "errors": int(model["error"] is not None),
                "hash_mismatches": 0, "goal_check": True}
    built: list[dict[str, Any]] = []
    mismatched = 0
    if plan["candidates"]:
        tasks = [verification.task_of(plan, c) for c in plan["candidates"]]
        infos = job.tasks()
        workloads = {t: tvm.ir.load_json((job.task_dir(infos[t]) / "task.json").read_text())
                     for t in set(tasks)}
        target = to_tvm(job.spec().target)
        art = ctx.round_dir / "art"
        art.mkdir(parents=True, exist_ok=True)
        mods = [replay(workloads[t], c["trace"]).mod
                for t, c in zip(tasks, plan["candidates"], strict=True)]
        hashes = [c["hash"] for c in plan["candidates"]]
        mismatched = sum(shash(m) != h for m, h in zip(mods, hashes, strict=True))
        _INPUTS[:] = [(m, target, art / f"{i:03d}.so") for i, m in enumerate(mods)]
        outcomes = isolated_map(_build_index, len(mods), ctx.threads, BUILD_TIMEOUT_S)
        _INPUTS.clear()
        built = [{"artifact": o.value, "error": o.error} for o in outcomes]
    write_json(ctx.round_dir / "built.json", {"built": built})
    return {"built": sum(b["error"] is None for b in built),
            "errors": sum(b["error"] is not None for b in built), "hash_mismatches": mismatched}
