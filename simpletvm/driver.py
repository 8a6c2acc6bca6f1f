"""Drive a job's stages to completion without a scheduler, each stage in its own process.

This is the scheduler-less stage loop (the daemon makes the same sequence of calls, one lease at
a time): extract, then rounds of search -> build -> profile -> learn until the budget is spent,
the latency goal is met or the search runs dry, then compile.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpletvm import zoo
from simpletvm.errors import StageError
from simpletvm.executor import Executor, StageOutcome, StageRequest
from simpletvm.jobdir import JobDir, read_json
from simpletvm.spec import JobSpec

ProgressFn = Callable[[str, int, StageOutcome], None]


def create_job(root: str | Path, spec: JobSpec, onnx_bytes: bytes | None = None,
               relax_mod: Any = None) -> JobDir:
    """A fresh job directory holding the spec and the model (ONNX bytes, a Relax module or zoo)."""
    from simpletvm import models

    job = JobDir(root)
    if job.root.exists():
        shutil.rmtree(job.root)
    job.root.mkdir(parents=True)
    if relax_mod is not None:
        models.save_module(relax_mod, job.model_path)
    else:
        if onnx_bytes is None:
            onnx_bytes = zoo.model_bytes(spec.model, spec.input_shapes)
        models.read_onnx(onnx_bytes)  # fail early on a bad model
        job.write_onnx(onnx_bytes)
    job.write_spec(spec)
    return job


def run_checked(executor: Executor, request: StageRequest) -> dict[str, Any]:
    """Run a stage; StageError (with the child's traceback) if it did not succeed."""
    outcome = executor.run(request)
    if not outcome.ok:
        raise StageError(request.stage, outcome.error or outcome.status, outcome.traceback)
    return outcome.result


def drive(job: JobDir, executor: Executor, cores: list[int] | None = None,
          on_stage: ProgressFn | None = None) -> dict[str, Any]:
    """Run every stage of the job in order; return the compile report."""

    def stage(name: str, round_: int = 0) -> dict[str, Any]:
        request = StageRequest(name, str(job.root), round_, cores)
        outcome = executor.run(request)
        if on_stage:
            on_stage(name, round_, outcome)
        if not outcome.ok:
            raise StageError(name, outcome.error or outcome.status, outcome.traceback)
        return outcome.result

    stage("extract")
    round_ = job.progress().rounds
    while True:
        if stage("search", round_)["done"]:
            break
        stage("build", round_)
        stage("profile", round_)
        learned = stage("learn", round_)
        round_ += 1
        if learned["done"]:
            break
    stage("compile")
    stage("profile", round_)  # the final benchmark
    return read_json(job.result_dir / "report.json")
