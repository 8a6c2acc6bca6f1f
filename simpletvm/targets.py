"""Targets: preset names, JSON strings or dicts, validated into TVM's JSON-dict form."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from simpletvm.errors import TargetError
from simpletvm.spec import TARGET_HELP as _HELP
from simpletvm.spec import check_target

TargetSpec = dict[str, Any]


def _cuda_arch() -> str:
    """The compute capability of GPU 0 as "sm_XY", or sm_80 when no driver answers."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.split()
            if out:
                return "sm_" + out[0].replace(".", "")
        except (subprocess.SubprocessError, OSError):
            pass
    return "sm_80"


def preset(name: str, resolve: bool = True) -> TargetSpec:
    """The target dict behind a preset name ("cpu"/"llvm" or "cuda"/"gpu"); without
    `resolve`, "cpu" names no num-cores (every core of the host it runs on: `on_host`)."""
    if name in ("cpu", "llvm"):
        return {"kind": "llvm", "num-cores": os.cpu_count() or 1} if resolve else {"kind": "llvm"}
    if name in ("cuda", "gpu"):
        return {
            "kind": "cuda",
            "arch": _cuda_arch(),
            "max_threads_per_block": 1024,
            "max_shared_memory_per_block": 49152,
            "thread_warp_size": 32,
            "host": {"kind": "llvm"},
        }
    raise TargetError(f"unknown target {name!r}: {_HELP}")


def parse_target(spec: str | TargetSpec, check_with_tvm: bool = True,
                 resolve: bool = True) -> TargetSpec:
    """A validated target dict from a preset name, a JSON string or a dict.

    `check_with_tvm=False` checks the form only (for processes that do not load TVM).
    `resolve=False` leaves an llvm target without num-cores ("cpu" included) as it is, for a
    job submitted to the scheduler: it runs on all the cores of the runner that takes it
    (`on_host`), not on this machine's.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if not text.startswith("{"):
            return preset(text, resolve)
        try:
            spec = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also 4300+ digit numbers, deep nesting
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise TargetError(f"target is not valid JSON ({why}): {_HELP}") from exc
    spec = check_target(spec)
    if resolve:
        spec = on_host(spec, os.cpu_count() or 1)
    if check_with_tvm:
        to_tvm(spec)
    return spec


def on_host(spec: TargetSpec, cores: int) -> TargetSpec:
    """`spec` as it runs on a host of `cores` cores: an llvm target that names no num-cores
    takes them all; any other target is returned as it is."""
    if spec["kind"] == "llvm" and "num-cores" not in spec:
        return {**spec, "num-cores": cores}
    return spec


def to_tvm(spec: TargetSpec) -> Any:
    """A `tvm.target.Target` for a target dict; TargetError when TVM rejects it."""
    import tvm

    try:
        return tvm.target.Target(spec)
    except Exception as exc:  # TVM raises several error types for bad targets
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise TargetError(f"target {json.dumps(spec)} rejected by TVM: {first}: {_HELP}") from exc


def device_type(spec: TargetSpec) -> str:
    """The runtime device type ("cpu" or "cuda") that profiles this target."""
    return "cpu" if spec["kind"] == "llvm" else spec["kind"]


def num_cores(spec: TargetSpec) -> int:
    """Cores the target is tuned for (GPU targets: 1 host thread)."""
    return int(spec.get("num-cores", 1)) if spec["kind"] == "llvm" else 1
