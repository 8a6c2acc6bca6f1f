"""Tuning with TVM's own loop (`ms.tune_tasks`) in one process: the scheduler-less baseline."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from simpletvm.context import tune_context
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
         seed: int = 0, builder: str = "fast", max_trials_per_task: int | None = None,
         memory: str | Path | None = None) -> tuple[Any, float, int]:
    """Tune every task of `mod` with `ms.tune_tasks`; returns (JSONDatabase, tuning seconds,
    trials known before). With `memory`, the records of earlier runs of this target on this
    machine (`memory_dir`) seed the search and count toward `trials`; new ones go there too."""
    ensure_intrinsics(target["kind"])
    from tvm.s_tir import meta_schedule as ms

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tgt = to_tvm(target)
    threads = num_cores(target)
    extracted = ms.relax_integration.extract_tasks(fuse(mod, target), tgt)
    database: Any = "json"
    known = 0
    if memory is not None:
        folder = memory_dir(memory, target)
        database = ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")
        known = sum(len(database.get_top_k(database.commit_workload(t.dispatched[0]), 1 << 30))
                    for t in extracted)
    contexts, weights = tune_contexts(extracted, target, threads, seed)
    started = time.perf_counter()
    if trials > known:
        database = ms.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir),
            max_trials_global=trials - known, max_trials_per_task=max_trials_per_task,
            num_trials_per_iter=batch_size, builder=make_builder(builder, threads),
            runner=ms.runner.LocalRunner(), database=database, cost_model=ms.cost_model.XGBModel(
                extractor="per-store-feature", num_tuning_cores=threads,
                adaptive_training=True))
    return database, time.perf_counter() - started, known


def tune_contexts(extracted: list[Any], target: TargetSpec, threads: int,
                  seed: int | None) -> tuple[list[Any], list[float]]:
    """TuneContexts and weights of the extracted tasks, as TVM's
    `extracted_tasks_to_tune_contexts` makes them but without its per-task log files: that
    helper reconfigures the process's logging (`logging.config.dictConfig`, which closes every
    named handler) and fails when a non-propagating TVM logger holds an unnamed handler, as
    pytest's log capture adds."""
    from tvm.s_tir.meta_schedule.utils import fork_seed

    contexts, weights = [], []
    for task, rand_state in zip(extracted, fork_seed(seed, n=len(extracted)), strict=True):
        if task.mod.attrs.get("tirx.is_scheduled", False):
            continue  # scheduled by hand: nothing to tune
        contexts.append(tune_context(task.dispatched[0], target, task.task_name, rand_state,
                                     threads))
        weights.append(task.weight)
    return contexts, weights


def memory_dir(root: str | Path, target: TargetSpec) -> Path:
    """The JSON database under `root` that holds a target's records on this machine (one
    folder per target key: simpletvm.tuningdb), created when missing."""
    from simpletvm.tuningdb import cpu_model, device_model, gpu_models, target_key

    key = target_key(target, device_model(target["kind"], cpu_model(), gpu_models()))
    folder = Path(root) / hashlib.sha1(key.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "target_key.txt").write_text(key + "\n")
    return folder
