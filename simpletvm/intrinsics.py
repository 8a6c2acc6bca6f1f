"""Import only the tensor intrinsics a target needs.

`import tvm.s_tir.tensor_intrin` costs 14-24 s in every fresh process (10-17 s of it the CUDA
intrinsics), and both `TuneContext` and the stock builder import it. For CPU targets we register a
package stub and import only the CPU intrinsic modules; for GPU targets we import the GPU ones too.
Call `ensure_intrinsics` before anything creates a `TuneContext`.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

_CPU_MODULES = ("x86", "arm_cpu")
_GPU_MODULES = {"cuda": ("cuda",), "rocm": ("rocm",), "metal": ("metal",)}
_PKG = "tvm.s_tir.tensor_intrin"


def _stub_package() -> types.ModuleType:
    import tvm.s_tir

    if _PKG in sys.modules:
        return sys.modules[_PKG]
    stub = types.ModuleType(_PKG)
    stub.__path__ = [os.path.join(os.path.dirname(tvm.s_tir.__file__), "tensor_intrin")]
    sys.modules[_PKG] = stub
    tvm.s_tir.tensor_intrin = stub
    return stub


def ensure_intrinsics(target_kind: str) -> None:
    """Register the tensor intrinsics for `target_kind` ("llvm", "cuda", ...) in this process."""
    _stub_package()
    for name in _CPU_MODULES + _GPU_MODULES.get(target_kind, ()):
        importlib.import_module(f"{_PKG}.{name}")
