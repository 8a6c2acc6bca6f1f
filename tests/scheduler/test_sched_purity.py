"""The core and the simulator stay pure: no gRPC, SQLite, TVM or clock."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"grpc", "sqlite3", "_sqlite3", "tvm", "tvm_ffi", "time", "datetime", "asyncio",
             "socket", "threading"}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", ["scheduler", "scheduler.core", "scheduler.sim"])
def test_import_pulls_in_no_io_or_clock_modules(package: str) -> None:
    dump = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    bare = _modules_after(dump)
    loaded = _modules_after(f"import {package}; {dump}")
    added = {m.split(".")[0] for m in loaded - bare}
    # logging imports threading, which a bare interpreter has not loaded; allow just that
    assert not (added & FORBIDDEN) - {"threading"}, added & FORBIDDEN
    assert "time" in bare or "time" not in loaded  # documents: `time` is preloaded by CPython


@pytest.mark.parametrize("folder", ["core", "sim"])
def test_sources_import_no_io_or_clock_modules(folder: str) -> None:
    bad = []
    for path in sorted((ROOT / "scheduler" / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad


def test_scheduler_package_is_import_light() -> None:
    dump = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    loaded = _modules_after(f"import scheduler; {dump}")
    assert not any(m.startswith(("scheduler.core", "scheduler.sim", "grpc")) for m in loaded)
