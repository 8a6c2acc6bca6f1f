"""Build 32 candidates: our build stage (forked warm workers) vs one by one in-process vs stock.

    python bench/bench_build.py [--model conv2d] [--candidates 32]

The goal: the build stage, with its process start and worker forks, within 1.5x of compiling
the same candidates one by one in an already-warm process (no per-call import), and far below
TVM's stock LocalBuilder, which starts fresh workers (and imports the intrinsics) on every call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simpletvm.candidates import replay
from simpletvm.driver import create_job, run_checked
from simpletvm.executor import StageExecutor, StageRequest
from simpletvm.jobdir import read_json
from simpletvm.spec import JobSpec
from simpletvm.targets import to_tvm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="conv2d")
    parser.add_argument("--candidates", type=int, default=32)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    target = {"kind": "llvm", "num-cores": len(cores)}
    root = Path(tempfile.mkdtemp(prefix="bench-build-"))
    job = create_job(root / "job", JobSpec(name="b", target=target, trials=args.candidates,
                                           batch_size=args.candidates, model=f"zoo:{args.model}"))
    executor = StageExecutor()
    run_checked(executor, StageRequest("extract", str(job.root), 0, cores))
    found = run_checked(executor, StageRequest("search", str(job.root), 0, cores))["candidates"]

    t0 = time.perf_counter()
    run_checked(executor, StageRequest("build", str(job.root), 0, cores))
    stage_s = time.perf_counter() - t0

    import tvm

    from simpletvm.intrinsics import ensure_intrinsics
    from simpletvm.stages.build import compile_one

    ensure_intrinsics("llvm")
    plan = read_json(job.round_dir(0) / "candidates.json")
    workload = tvm.ir.load_json((job.root / "tasks" / "00" / "task.json").read_text())
    mods = [replay(workload, c["trace"]).mod for c in plan["candidates"]]
    tgt = to_tvm(target)
    compile_one(mods[0], tgt, root / "warm.so")  # warm this process's code paths
    t0 = time.perf_counter()
    for i, mod in enumerate(mods):
        compile_one(mod, tgt, root / f"inproc-{i}.so")
    inproc_s = time.perf_counter() - t0

    from tvm.s_tir.meta_schedule.builder import BuilderInput, LocalBuilder

    builder = LocalBuilder(max_workers=len(cores))
    t0 = time.perf_counter()
    results = builder.build([BuilderInput(m, tgt) for m in mods])
    stock_s = time.perf_counter() - t0
    errors = sum(r.error_msg is not None for r in results)
    shutil.rmtree(root, ignore_errors=True)

    table = Table(title=f"build {found} candidates of {args.model} on {len(cores)} cores")
    for col in ("way", "seconds", "ratio to in-process one by one"):
        table.add_column(col)
    table.add_row("in-process, one by one (warm, reference)", f"{inproc_s:.2f}", "1.00")
    table.add_row(f"build stage: own process, {len(cores)} forked workers", f"{stage_s:.2f}",
                  f"{stage_s / inproc_s:.2f}")
    table.add_row(f"TVM stock LocalBuilder ({errors} errors)", f"{stock_s:.2f}",
                  f"{stock_s / inproc_s:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
