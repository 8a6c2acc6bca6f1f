"""simpletvm: a small chainable wrapper over TVM, and autotuning cut into stages.

    from simpletvm import SimpleTVM
    SimpleTVM.from_zoo("convnet").target("cpu").tune(trials=64, work_dir="t").benchmark().report()
"""

from simpletvm.api import SimpleTVM
from simpletvm.benchmark import Latency
from simpletvm.errors import (
    JobDirError,
    ModelError,
    SimpleTVMError,
    StageError,
    TargetError,
)
from simpletvm.jobdir import JobDir, JobSpec

__all__ = [
    "JobDir",
    "JobDirError",
    "JobSpec",
    "Latency",
    "ModelError",
    "SimpleTVM",
    "SimpleTVMError",
    "StageError",
    "TargetError",
]
