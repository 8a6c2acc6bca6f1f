"""Stage `compile`: build the whole model with the tuning records, benchmark it, write results."""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from simpletvm import benchmark, models, verification
from simpletvm.intrinsics import ensure_intrinsics
from simpletvm.jobdir import write_json
from simpletvm.stages.base import StageContext
from simpletvm.targets import device_type, to_tvm


def run(ctx: StageContext) -> dict[str, Any]:
    """Write result/model.so, result/records/NN/*.json and result/report.json."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    job, spec = ctx.job, ctx.job.spec()
    ensure_intrinsics(spec.target["kind"])
    infos, progress = job.tasks(), job.progress()
    mod = models.load_module(job.model_path)
    specs = models.load_input_specs(job.model_path)
    target = to_tvm(spec.target)
    records = verification.open_records(job.root / "tasks")
    if records is None:
        records = ms.database.MemoryDatabase()
    t0 = time.perf_counter()
    tuned = ms.relax_integration.compile_relax(records, mod, target, params=None)
    compile_s = time.perf_counter() - t0
    untuned = relax.build(mod, target=target)
    out = job.result_dir
    out.mkdir(parents=True, exist_ok=True)
    tuned.export_library(str(out / "model.so"))
    device = device_type(spec.target)
    tuned_lat, tuned_out = benchmark.measure(tuned, specs, device)
    untuned_lat, untuned_out = benchmark.measure(untuned, specs, device)
    max_err = max(float(np.abs(a - b).max()) for a, b in zip(tuned_out, untuned_out, strict=True))
    _copy_records(job, infos)
    report = {
        "name": spec.name, "model": spec.model, "target": spec.target,
        "trials": progress.trials, "trial_budget": spec.trials, "rounds": progress.rounds,
        "untuned": untuned_lat.to_dict(), "tuned": tuned_lat.to_dict(),
        "speedup": untuned_lat.median_us / tuned_lat.median_us,
        "max_abs_diff_vs_untuned": max_err, "compile_s": compile_s,
        "tasks": [{"name": i.name, "weight": i.weight, "flops": i.flops,
                   "trials": t.trials, "best_us": t.best_us, "verified_us": t.verified_us}
                  for i, t in zip(infos, progress.tasks, strict=True)],
        "curve": progress.curve, "inputs": [s.to_dict() for s in specs],
        "known": progress.known, "goal_checks": progress.goal_checks,
        "tvm_version": tvm.__version__,
    }
    write_json(out / "report.json", report)
    return {"tuned_us": tuned_lat.median_us, "untuned_us": untuned_lat.median_us,
            "speedup": report["speedup"], "max_abs_diff": max_err}


def _copy_records(job: Any, infos: list[Any]) -> None:
    """Plain MetaSchedule JSON databases, one folder per task, usable with stock TVM; a verified
    task's re-timed candidates in its verified/ subfolder (with verified.json), which
    `SimpleTVM.use_records` prefers."""
    for info in infos:
        src, out = job.task_dir(info), job.result_dir / "records" / info.dirname
        if (src / "db").exists():
            shutil.copytree(src / "db", out, dirs_exist_ok=True)
        if (src / verification.VERIFIED).exists():
            shutil.copytree(src / verification.VERIFIED, out / verification.VERIFIED,
                            dirs_exist_ok=True)
            shutil.copy2(src / verification.SUMMARY, out / verification.SUMMARY)
