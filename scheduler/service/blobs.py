"""Per-job files kept by the daemon beside its SQLite file, in STATE-blobs/ (for the state file
scheduler.db: scheduler-blobs/):

    scheduler-blobs/JOB/model.onnx        the uploaded model (absent for zoo models)
    scheduler-blobs/JOB/state.tar.gz      the job's latest committed state (after extract and
                                          each learn)
    scheduler-blobs/JOB/model.tar.gz      model/ as the extract stage left it (sent once)
    scheduler-blobs/JOB/result.tar.gz     result/ of the compile stage
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


class BlobStore:
    """Atomic whole-file writes and reads under one root.

    A write is two steps so that the slow one needs no lock: `stage` writes and fsyncs the
    bytes to a new file, `commit` renames it into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(".incoming-*"):  # staged before a crash, never committed
            leftover.unlink(missing_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        return self.root / job_id / name

    def stage(self, data: bytes) -> Path:
        """Write `data` to a new file under the root and fsync it."""
        staged = self.root / f".incoming-{uuid.uuid4().hex}"
        with open(staged, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return staged

    def commit(self, staged: Path, job_id: str, name: str) -> Path:
        """Move a staged file into place, replacing any older one atomically."""
        target = self.path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(target)
        return target

    def put(self, job_id: str, name: str, data: bytes) -> Path:
        return self.commit(self.stage(data), job_id, name)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.path(job_id, name).read_bytes()
        except FileNotFoundError:
            return None

    def has(self, job_id: str, name: str) -> bool:
        return self.path(job_id, name).exists()

    def drop(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)
