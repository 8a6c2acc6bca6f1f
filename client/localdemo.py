"""`tunesched demo` without a daemon: two zoo models tuned through the stages, one after another.

Each stage runs in its own pinned process forked from a warm server; progress is live.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.format import report_lines, us
from simpletvm.driver import create_job, drive
from simpletvm.executor import StageExecutor
from simpletvm.jobdir import JobSpec
from simpletvm.plots import plot_curves

DEMO_MODELS = (("zoo:mlp", None), ("zoo:convnet", None))


def run_demo(out: Path, trials: int) -> None:
    console = Console()
    shutil.rmtree(out / "jobs", ignore_errors=True)
    cores = sorted(os.sched_getaffinity(0))
    target = {"kind": "llvm", "num-cores": len(cores)}
    executor = StageExecutor()
    reports, curves = [], {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("trials  best {task.fields[best]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        for model, shapes in DEMO_MODELS:
            name = model.removeprefix("zoo:")
            job = create_job(out / "jobs" / name, JobSpec(
                name=name, target=target, trials=trials, batch_size=16, model=model,
                input_shapes=shapes))
            task = bar.add_task(f"{name:<8} extract", total=trials, best="-")

            def on_stage(stage: str, _round: int, outcome, task=task, name=name) -> None:
                result = outcome.result
                if stage == "learn":
                    bar.update(task, completed=result["trials_total"],
                               best=us(result["estimated_latency_us"]))
                bar.update(task, description=f"{name:<8} {stage}")

            report = drive(job, executor, cores=cores, on_stage=on_stage)
            bar.update(task, description=f"{name:<8} done")
            reports.append(report)
            curves[name] = report["curve"]
    for report in reports:
        for line in report_lines(report):
            console.print(line, highlight=False)
    png = plot_curves(curves, out / "tuning-curves.png", "demo: best latency over time")
    console.print(f"wrote {png}")
