"""Stage `compile`: build the whole model with the tuning records, and the final benchmark.

The compile stage only builds: the tuned model (result/model.so, what the user gets) and the
untuned one (final/untuned.so), and copies the records out (result/records). Timing them is
the final benchmark, which runs as the job's last profile stage (`benchmark`, called by
`simpletvm.stages.profile`): a profile owns its device, so the numbers in report.json are
taken with nothing else running there, on the cores (or GPU) the target names.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from simpletvm import benchmark, models, verification
from simpletvm.intrinsics import ensure_intrinsics
from simpletvm.jobdir import JobDir, read_json, write_json
from simpletvm.stages.base import StageContext
from simpletvm.targets import device_type, to_tvm

BUILT = "built.json"  # in final/: what the compile stage built, for the final benchmark


def run(ctx: StageContext) -> dict[str, Any]:
    """Write result/model.so, result/records/NN/*.json and final/ (untuned.so, built.json)."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    job, spec = ctx.job, ctx.job.spec()
    ensure_intrinsics(spec.target["kind"])
    mod = models.load_module(job.model_path)
    target = to_tvm(spec.target)
    records = verification.open_records(job.root / "tasks")
    if records is None:
        records = ms.database.MemoryDatabase()
    t0 = time.perf_counter()
    tuned = ms.relax_integration.compile_relax(records, mod, target, params=None)
    compile_s = time.perf_counter() - t0
    untuned = relax.build(mod, target=target)
    job.result_dir.mkdir(parents=True, exist_ok=True)
    job.final_dir.mkdir(parents=True, exist_ok=True)
    tuned.export_library(str(job.result_dir / "model.so"))
    untuned.export_library(str(job.final_dir / "untuned.so"))
    _copy_records(job, job.tasks())
    (job.result_dir / "report.json").unlink(missing_ok=True)  # a compile again: time it again
    write_json(job.final_dir / BUILT, {"compile_s": compile_s})
    return {"compile_s": compile_s}


def built(job: JobDir) -> bool:
    """Whether the compile stage has built the job's final models (so that a profile stage
    is the final benchmark)."""
    return (job.final_dir / BUILT).exists()


def measure(ctx: StageContext, cores: list[int]) -> dict[str, Any]:
    """The final benchmark: time the tuned and untuned models (alone on the device: this runs
    under the job's profile lease, pinned to `cores`) and write result/report.json."""
    import tvm

    job, spec = ctx.job, ctx.job.spec()
    ensure_intrinsics(spec.target["kind"])
    infos, progress = job.tasks(), job.progress()
    specs = models.load_input_specs(job.model_path)
    device = device_type(spec.target)
    started = time.time()
    tuned_lat, tuned_out = benchmark.measure(
        tvm.runtime.load_module(str(job.result_dir / "model.so")), specs, device)
    untuned_lat, untuned_out = benchmark.measure(
        tvm.runtime.load_module(str(job.final_dir / "untuned.so")), specs, device)
    finished = time.time()
    max_err = max(float(np.abs(a - b).max()) for a, b in zip(tuned_out, untuned_out, strict=True))
    report = {
        "name": spec.name, "model": spec.model, "target": spec.target,
        "trials": progress.trials, "trial_budget": spec.trials, "rounds": progress.rounds,
        "untuned": untuned_lat.to_dict(), "tuned": tuned_lat.to_dict(),
        "speedup": untuned_lat.median_us / tuned_lat.median_us,
        "max_abs_diff_vs_untuned": max_err,
        "compile_s": read_json(job.final_dir / BUILT)["compile_s"],
        "benchmark": {"cores": cores, "gpus": ctx.gpus, "started": started,
                      "finished": finished},
        "tasks": [{"name": i.name, "weight": i.weight, "flops": i.flops,
                   "trials": t.trials, "best_us": t.best_us, "verified_us": t.verified_us,
                   "kept_default": bool((verification.summary(job.task_dir(i)) or {})
                                        .get("kept_default"))}
                  for i, t in zip(infos, progress.tasks, strict=True)],
        "curve": progress.curve, "inputs": [s.to_dict() for s in specs],
        "known": progress.known, "goal_checks": progress.goal_checks,
        "tvm_version": tvm.__version__,
    }
    write_json(job.result_dir / "report.json", report)
    return {"final": True, "trials": 0, "tuned_us": tuned_lat.median_us,
            "untuned_us": untuned_lat.median_us, "speedup": report["speedup"],
            "max_abs_diff": max_err, "started": started, "finished": finished}


def _copy_records(job: JobDir, infos: list[Any]) -> None:
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
