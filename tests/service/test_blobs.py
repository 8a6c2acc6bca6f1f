"""The daemon's blob files: staged and fsynced apart from the rename that makes them visible."""

from __future__ import annotations

from pathlib import Path

from scheduler.service.blobs import BlobStore


def test_a_staged_blob_is_invisible_until_committed_and_replaces_atomically(
        tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.put("job-1", "state.tar.gz", b"v1")
    staged = blobs.stage(b"v2")
    assert blobs.get("job-1", "state.tar.gz") == b"v1"
    assert blobs.commit(staged, "job-1", "state.tar.gz") == blobs.path("job-1", "state.tar.gz")
    assert blobs.get("job-1", "state.tar.gz") == b"v2" and not staged.exists()
    assert blobs.get("job-1", "result.tar.gz") is None and not blobs.has("job-2", "x")


def test_files_staged_before_a_crash_are_removed_at_the_next_start(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.put("job-1", "model.onnx", b"model")
    orphan = blobs.stage(b"never committed")
    BlobStore(tmp_path / "blobs")
    assert not orphan.exists() and blobs.get("job-1", "model.onnx") == b"model"
