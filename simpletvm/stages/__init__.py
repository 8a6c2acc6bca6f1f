"""The decomposed tuning stages. Each runs alone from the job directory on disk.

    extract  model -> fused module -> tasks
    search   pick a task, propose the next batch with the cost model     (update-model, part 1)
    build    compile the batch, in parallel over the leased cores
    profile  time the batch on the device (needs the device exclusively)
    learn    commit records, update the cost model and progress          (update-model, part 2)
    compile  build the whole model with the records (tuned and untuned)
    profile  once more, last: the final benchmark of both models, report.json

`run_stage` runs one in the current process; `tunesched stage` runs one in a fresh process;
`simpletvm.executor` runs one in a pinned child forked from a warm process.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from simpletvm.errors import SimpleTVMError
from simpletvm.jobdir import JobDir
from simpletvm.stages.base import StageContext

STAGES = ("extract", "search", "build", "profile", "learn", "compile")


def run_stage(stage: str, job_dir: str | Path, round_: int = 0, cores: list[int] | None = None,
              gpus: list[int] | None = None) -> dict[str, Any]:
    """Run one stage in this process and return its summary dict."""
    if stage not in STAGES:
        raise SimpleTVMError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    module = importlib.import_module(f"simpletvm.stages.{stage}")
    ctx = StageContext(JobDir(job_dir), round_, list(cores) if cores else [0], list(gpus or []))
    return module.run(ctx)


__all__ = ["STAGES", "StageContext", "run_stage"]
