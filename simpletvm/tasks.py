"""Fusion and task extraction: a Relax model becomes MetaSchedule tuning tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simpletvm.targets import TargetSpec, to_tvm


@dataclass
class Task:
    """One tuning task: a fused PrimFunc workload with its weight (occurrences) and FLOPs."""

    name: str
    weight: int
    flops: float
    mod: Any  # tvm.IRModule holding the workload as "main"


def fuse(mod: Any, target: TargetSpec) -> Any:
    """The fusion passes `compile_relax` applies, so task keys match the database at compile."""
    import tvm
    from tvm import relax

    tgt = to_tvm(target)
    seq = tvm.transform.Sequential([
        *relax.pipeline.library_dispatch_passes(tgt),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ])
    with tgt, tvm.transform.PassContext(opt_level=3):
        return seq(mod)


def extract(mod: Any, target: TargetSpec) -> list[Task]:
    """The tuning tasks of a (not yet fused) Relax module."""
    import tvm.s_tir.analysis
    from tvm.s_tir import meta_schedule as ms

    extracted = ms.relax_integration.extract_tasks(fuse(mod, target), to_tvm(target))
    tasks = []
    for task in extracted:
        workload = task.dispatched[0]
        flops = float(tvm.s_tir.analysis.estimate_tir_flops(workload))
        tasks.append(Task(task.task_name, int(task.weight), flops, workload))
    return tasks
