"""Stage `extract`: model -> fused Relax module -> tuning tasks on disk."""

from __future__ import annotations

from typing import Any

from simpletvm import models, tasks, zoo
from simpletvm.candidates import shash
from simpletvm.jobdir import Progress, TaskInfo, TaskProgress
from simpletvm.stages.base import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    """Import the model (once), extract its tasks, write tasks/ and a fresh progress.json."""
    import tvm

    job = ctx.job
    spec = job.spec()
    if (job.root / "tasks" / "index.json").exists() and job.progress_path.exists():
        infos = job.tasks()  # already extracted (a retry or a resumed job): keep the progress
        return _summary(infos)
    if not job.onnx_path.exists() and not job.model_path.exists() \
            and spec.model.startswith("zoo:"):  # a zoo model is made where it runs
        job.write_onnx(zoo.model_bytes(spec.model, spec.input_shapes))
    if job.onnx_path.exists() and not job.model_path.exists():
        onnx_model = models.read_onnx(job.onnx_path)
        models.save_module(models.import_onnx(onnx_model, spec.input_shapes), job.model_path)
    mod = models.load_module(job.model_path)
    found = tasks.extract(mod, spec.target)
    infos = []
    for index, task in enumerate(found):
        info = TaskInfo(index, task.name, task.weight, task.flops, shash(task.mod))
        task_dir = job.task_dir(info)
        task_dir.mkdir(parents=True, exist_ok=True)
        (task_dir / "task.json").write_text(tvm.ir.save_json(task.mod))
        infos.append(info)
    job.write_tasks(infos)
    small = negligible(infos, spec.min_task_share)
    job.write_progress(Progress(tasks=[TaskProgress(exhausted=i in small) for i in range(
        len(infos))]))
    return {**_summary(infos), "untuned_tasks": [infos[i].name for i in sorted(small)]}


def negligible(infos: list[TaskInfo], min_share: float) -> set[int]:
    """The tasks whose weight x FLOPs is under `min_share` of the model's: not worth trials."""
    total = sum(i.weight * i.flops for i in infos)
    return {i.index for i in infos if total and i.weight * i.flops < min_share * total}


def _summary(infos: list[TaskInfo]) -> dict[str, Any]:
    return {"tasks": len(infos), "flops": sum(i.flops * i.weight for i in infos),
            "task_names": [i.name for i in infos]}
