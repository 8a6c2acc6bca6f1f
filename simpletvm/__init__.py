"""simpletvm: a small chainable wrapper over TVM, and autotuning cut into stages.

    from simpletvm import SimpleTVM
    SimpleTVM.from_zoo("convnet").target("cpu").tune(trials=64, work_dir="t").benchmark().report()

The names below load on first use, so that `import simpletvm.spec` (or `.jobdir`, `.bundle`,
`.zoo`) stays free of numpy, onnx and TVM: the scheduler's daemon and core import those.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimpleTVM": "simpletvm.api",
    "Latency": "simpletvm.benchmark",
    "JobDir": "simpletvm.jobdir",
    "JobSpec": "simpletvm.spec",
    "SimpleTVMError": "simpletvm.errors",
    "ModelError": "simpletvm.errors",
    "SpecError": "simpletvm.errors",
    "TargetError": "simpletvm.errors",
    "JobDirError": "simpletvm.errors",
    "StageError": "simpletvm.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simpletvm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
