"""Job state as one archive: what moves between a runner's job directory and the scheduler.

"state" holds everything a job needs to resume on another host from its last learn stage but
the model: spec, tasks, record databases, measured hashes, cost model, progress. "model" holds
model/ (the ONNX and the imported module), which never changes after the extract stage: it is
sent once, after extract, rather than again after every learn (for a model of 5 MB of
weights, 12 MB a round). A job moving to another host gets both, `merge`d. "result" holds what
a finished job yields: result/ (model.so, report.json, records/). Before its extract a job has
only its `initial` bundle: job.json and the uploaded model, if any (the extract stage makes a
zoo model itself).
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from pathlib import Path

from simpletvm.errors import JobDirError, last_line
from simpletvm.jobdir import JobDir, unwritable
from simpletvm.spec import JobSpec

KINDS = ("state", "model", "result")


def _members(job: JobDir, kind: str) -> list[Path]:
    root = job.root
    if kind == "result":
        return sorted(p for p in (root / "result").rglob("*") if p.is_file())
    if kind == "model":
        return sorted(p for p in (root / "model").glob("*") if p.is_file())
    files = [job.spec_path, job.progress_path, job.cost_model_path]
    files += [p for p in (root / "tasks").rglob("*")
              if p.is_file() and ".tmp" not in str(p.relative_to(root))]  # half-written
    return [p for p in files if p.exists()]


def pack(job: JobDir, kind: str) -> bytes:
    """A gzipped tar of the job's `kind` files, paths relative to the job directory."""
    if kind not in KINDS:
        raise JobDirError(f"unknown bundle kind {kind!r}: use one of {', '.join(KINDS)}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for path in _members(job, kind):
            tar.add(path, arcname=str(path.relative_to(job.root)))
    return buf.getvalue()


def initial(spec: JobSpec, model: bytes | None) -> bytes:
    """The bundle of a job no stage has run for: job.json, and model/model.onnx if uploaded."""
    files = {"job.json": json.dumps(spec.to_dict()).encode()}
    if model is not None:
        files["model/model.onnx"] = model
    return _tar(files)


def merge(*bundles: bytes) -> bytes:
    """One bundle holding the members of all (verified) `bundles`; a later one's member wins."""
    files: dict[str, bytes] = {}
    for data in bundles:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    files[member.name] = tar.extractfile(member).read()
    return _tar(files)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> list[str]:
    """Extract a bundle into `dest` (created); returns the member names. Rejects unsafe paths.
    A write that fails (disk full, read-only or missing directory) is named as such."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:  # what pack() writes
            names = tar.getnames()
            tar.extractall(dest, filter="data")  # refuses absolute paths, .., links outside
    except OSError as exc:
        if exc.errno is None:  # gzip's BadGzipFile: the bundle, not our disk
            raise _corrupt(exc) from exc
        raise unwritable(dest, exc) from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise _corrupt(exc) from exc
    return names


def verify(data: bytes) -> list[str]:
    """The member names of a bundle that `unpack` would accept, read to the end without
    writing anything; JobDirError (one line) for a corrupt, truncated or unsafe one."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                tarfile.data_filter(member, "/bundle")  # the check extractall(filter=) makes
                stream = tar.extractfile(member) if member.isfile() else None
                while stream is not None and stream.read(1 << 20):
                    pass
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise _corrupt(exc) from exc
    return [m.name for m in members]


def _corrupt(exc: BaseException) -> JobDirError:
    return JobDirError(f"job bundle is corrupt or unsafe ({last_line(exc) or type(exc).__name__})"
                       ": send a gzipped tar as bundle.pack makes it")
