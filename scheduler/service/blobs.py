"""Per-job files kept by the daemon beside its SQLite file.

    blobs/JOB/model.onnx        the uploaded model (absent for zoo models)
    blobs/JOB/state.tar.gz      the job's latest committed state (after extract / each learn)
    blobs/JOB/result.tar.gz     result/ of the compile stage
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class BlobStore:
    """Atomic whole-file writes and reads under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        return self.root / job_id / name

    def put(self, job_id: str, name: str, data: bytes) -> Path:
        target = self.path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(target)
        return target

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.path(job_id, name).read_bytes()
        except FileNotFoundError:
            return None

    def has(self, job_id: str, name: str) -> bool:
        return self.path(job_id, name).exists()

    def drop(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)
