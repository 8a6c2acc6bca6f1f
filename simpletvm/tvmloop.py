"""Tuning with TVM's own loop (`ms.tune_tasks`) in one process: the scheduler-less baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from simpletvm.intrinsics import ensure_intrinsics
from simpletvm.targets import TargetSpec, num_cores, to_tvm
from simpletvm.tasks import fuse


def fast_build(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's default build without `import tvm.s_tir.tensor_intrin` (~14 s per worker).

    Only for targets that need no tensorize intrinsics beyond what the worker registers.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def make_builder(kind: str, workers: int) -> Any:
    """"local": TVM's stock LocalBuilder; "fast": the same without the per-call intrinsic import."""
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    if kind == "local":
        return LocalBuilder(max_workers=workers)
    if kind == "fast":
        return LocalBuilder(max_workers=workers, f_build=fast_build)
    raise ValueError(f"unknown builder {kind!r}: use 'local' or 'fast'")


def tune(mod: Any, target: TargetSpec, work_dir: str | Path, trials: int, batch_size: int = 32,
         seed: int = 0, builder: str = "fast",
         max_trials_per_task: int | None = None) -> tuple[Any, float]:
    """Tune every task of `mod` with `ms.tune_tasks`; returns (JSONDatabase, tuning seconds)."""
    ensure_intrinsics(target["kind"])
    from tvm.s_tir import meta_schedule as ms

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tgt = to_tvm(target)
    threads = num_cores(target)
    extracted = ms.relax_integration.extract_tasks(fuse(mod, target), tgt)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted, str(work_dir), strategy="evolutionary", num_threads=threads, seed=seed)
    started = time.perf_counter()
    database = ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir),
        max_trials_global=trials, max_trials_per_task=max_trials_per_task,
        num_trials_per_iter=batch_size, builder=make_builder(builder, threads),
        runner=ms.runner.LocalRunner(), cost_model=ms.cost_model.XGBModel(
            extractor="per-store-feature", num_tuning_cores=threads, adaptive_training=True))
    return database, time.perf_counter() - started
