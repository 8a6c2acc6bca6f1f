"""The client library over the Scheduler gRPC service; errors become ClientError lines.

    with Client("127.0.0.1:50051") as client:
        name, data = read_model("model.onnx")       # or ("zoo:mlp", b"")
        job = client.submit(JobSpec(model=name, target={"kind": "llvm", "num-cores": 2},
                                    trials=64), data)
        for event in client.watch(job.job_id): ...
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from proto import jobspec
from proto import tunesched_pb2 as pb
from proto import tunesched_pb2_grpc as pb_grpc
from proto.transport import chunks, metadata, open_channel
from simpletvm.spec import JobSpec
from simpletvm.tuningdb import RECORD_FILE, WORKLOAD_FILE

DEFAULT_ADDRESS = "127.0.0.1:50051"


class ClientError(Exception):
    """One line for the user: what went wrong talking to the scheduler."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


def read_model(source: str) -> tuple[str, bytes]:
    """(the spec's model name, the bytes to upload) for "zoo:NAME" or a path to an .onnx file."""
    if source.startswith("zoo:"):
        return source, b""
    path = Path(source)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read model {source}: {exc.strerror}") from None


def _translate(exc: grpc.RpcError, address: str) -> ClientError:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and "ssl" in (exc.details() or "").lower():
        return ClientError(f"TLS handshake with {address} failed: check --tls-ca", code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ClientError(f"cannot reach the scheduler at {address}: start it with "
                           "`tunesched scheduler` or pass --scheduler HOST:PORT", code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(f"the scheduler at {address} did not answer in time", code)
    return ClientError(exc.details() or code.name, code)


class Client:
    """Calls to one scheduler."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0,
                 token: str | None = None, tls_ca: bytes | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = metadata(token)
        self.channel = open_channel(address, tls_ca)
        self.stub = pb_grpc.SchedulerStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout,
                                              metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None

    def submit(self, spec: JobSpec, model: bytes = b"",
               request_id: str | None = None) -> pb.JobInfo:
        """Submit the job `spec` asks for, uploading `model` (ONNX bytes; none for a zoo
        model). The channel retries an unreachable scheduler; the request id makes a retry
        return the same job."""
        wire = jobspec.to_pb(spec, request_id or uuid.uuid4().hex)

        def messages() -> Iterator[pb.SubmitJobRequest]:
            yield pb.SubmitJobRequest(spec=wire)
            if model:
                for piece in chunks(model):
                    yield pb.SubmitJobRequest(model_chunk=piece)

        try:
            return self.stub.SubmitJob(messages(), timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None

    def get(self, job_id: str) -> pb.JobInfo:
        return self._call("GetJob", pb.GetJobRequest(job_id=job_id))

    def jobs(self, state: str = "") -> list[pb.JobInfo]:
        return list(self._call("ListJobs", pb.ListJobsRequest(state=state)).jobs)

    def cancel(self, job_id: str) -> pb.JobInfo:
        return self._call("CancelJob", pb.CancelJobRequest(job_id=job_id))

    def runners(self) -> list[pb.RunnerInfo]:
        return list(self._call("ListRunners", pb.ListRunnersRequest()).runners)

    def timeline(self) -> list[dict[str, Any]]:
        from google.protobuf.json_format import MessageToDict

        leases = self._call("GetTimeline", pb.GetTimelineRequest()).leases
        return [MessageToDict(x, preserving_proto_field_name=True,
                              always_print_fields_with_no_presence=True) for x in leases]

    def watch(self, job_id: str) -> Iterator[pb.JobEvent]:
        try:
            yield from self.stub.WatchJob(pb.WatchJobRequest(job_id=job_id),
                                          metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None

    def record_stats(self) -> list[pb.TargetKeyStats]:
        return list(self._call("RecordStats", pb.RecordStatsRequest()).keys)

    def export_records(self, out_dir: Path, target_json: str = "") -> list[Path]:
        """The scheduler's records (of one target, or all) as a MetaSchedule JSON database in
        `out_dir`."""
        return self._write_stream(self.stub.ExportRecords(
            pb.ExportRecordsRequest(target_json=target_json), timeout=self.timeout * 10,
            metadata=self.metadata), out_dir)

    def import_records(self, db_dir: Path, target_json: str,
                       device_model: str) -> pb.ImportRecordsResponse:
        """Send the JSON database in `db_dir`: records of `target_json` timed on a
        `device_model`."""
        files = {}
        for name in (WORKLOAD_FILE, RECORD_FILE):
            try:
                files[name] = (db_dir / name).read_bytes()
            except OSError as exc:
                raise ClientError(f"cannot read {db_dir / name}: {exc.strerror}") from None

        def messages() -> Iterator[pb.ImportRecordsRequest]:
            yield pb.ImportRecordsRequest(header=pb.ImportHeader(
                target_json=target_json, device_model=device_model))
            for name, data in files.items():
                for piece in chunks(data):
                    yield pb.ImportRecordsRequest(chunk=pb.FileChunk(path=name, data=piece))

        return self._call("ImportRecords", messages())

    def fetch_result(self, job_id: str, out_dir: Path) -> list[Path]:
        """Write the job's result files (records/, model.so, report.json) under out_dir."""
        return self._write_stream(self.stub.FetchResult(
            pb.FetchResultRequest(job_id=job_id), timeout=self.timeout * 10,
            metadata=self.metadata), out_dir)

    def _write_stream(self, stream: Iterator[pb.FileChunk], out_dir: Path) -> list[Path]:
        """Write a stream of file chunks under `out_dir` (never outside it)."""
        files: dict[str, bytearray] = {}
        try:
            for chunk in stream:
                files.setdefault(chunk.path, bytearray()).extend(chunk.data)
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None
        written = []
        root = out_dir.resolve()
        for name, data in files.items():
            target = (root / name).resolve()
            if root not in target.parents:
                raise ClientError(f"refusing result path outside {out_dir}: {name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(data))
            written.append(target)
        return written
