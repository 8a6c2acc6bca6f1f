"""Thin gRPC servicers: protobuf in, Daemon calls, protobuf out; errors become status codes."""

from __future__ import annotations

import functools
import io
import logging
import math
import queue
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from proto import jobspec
from proto import tunesched_pb2 as pb
from proto import tunesched_pb2_grpc as pb_grpc
from proto.transport import chunks
from scheduler.service import convert, validation
from scheduler.service.auth import Caller, check_owner
from scheduler.service.daemon import Daemon
from scheduler.service.errors import (
    InvalidRequest,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    one_line,
    status_of,
)
from scheduler.service.links import RunnerLink
from scheduler.service.records import JobRecord
from simpletvm import tuningdb
from simpletvm.spec import SpecError
from simpletvm.targets import parse_target

log = logging.getLogger(__name__)


def _rpc(fn: Callable) -> Callable:
    """Turn ServiceErrors (and anything unexpected) into one-line gRPC statuses."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        except grpc.RpcError:
            raise
        except Exception as exc:
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    return wrapper


class SchedulerServicer(pb_grpc.SchedulerServicer):
    """The client-facing service."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        return self.daemon.config.auth.client(context.invocation_metadata())

    def _owned(self, job_id: str, context: grpc.ServicerContext) -> JobRecord:
        record = self.daemon.get(job_id)
        check_owner(self._caller(context), record.spec.user, job_id)
        return record

    @_rpc
    def SubmitJob(self, request_iterator: Iterator[pb.SubmitJobRequest],
                  context: grpc.ServicerContext) -> pb.JobInfo:
        caller = self._caller(context)
        spec, parts, size = None, [], 0
        for msg in request_iterator:
            if msg.HasField("spec"):
                if spec is not None:
                    raise InvalidRequest("SubmitJob got two specs: send one, then model chunks")
                spec = msg.spec
            else:
                size += len(msg.model_chunk)
                limit = self.daemon.config.max_model_bytes
                if size > limit:
                    raise ResourceExhausted(f"model is over the {limit} byte limit of this "
                                            "scheduler (its --max-model-mb)")
                parts.append(msg.model_chunk)
        if spec is None:
            raise InvalidRequest("SubmitJob needs a spec as its first message")
        model = b"".join(parts)
        user = (spec.user or caller.name) if self.daemon.config.auth.clients_open \
            else caller.name
        try:
            job = jobspec.from_pb(spec).with_(user=user)
        except SpecError as exc:
            raise InvalidRequest(str(exc)) from exc
        validation.check_submission(job, model)
        return convert.job_info(self.daemon.submit(job, model, spec.request_id))

    @_rpc
    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobInfo:
        return convert.job_info(self._owned(request.job_id, context))

    @_rpc
    def ListJobs(self, request: pb.ListJobsRequest,
                 context: grpc.ServicerContext) -> pb.ListJobsResponse:
        caller = self._caller(context)
        return pb.ListJobsResponse(jobs=[convert.job_info(r)
                                         for r in self.daemon.list_jobs(request.state)
                                         if caller.admin or r.spec.user == caller.name])

    @_rpc
    def CancelJob(self, request: pb.CancelJobRequest,
                  context: grpc.ServicerContext) -> pb.JobInfo:
        self._owned(request.job_id, context)
        return convert.job_info(self.daemon.cancel(request.job_id))

    def WatchJob(self, request: pb.WatchJobRequest,
                 context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        try:
            self._owned(request.job_id, context)
            q = self.daemon.subscribe(request.job_id)
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        try:
            while context.is_active():
                try:
                    now, record, message = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                yield pb.JobEvent(time=now, job=convert.job_info(record), message=message)
                if record.terminal:
                    return
        finally:
            self.daemon.unsubscribe(request.job_id, q)

    def FetchResult(self, request: pb.FetchResultRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.FileChunk]:
        try:
            self._owned(request.job_id, context)
            data = self.daemon.result_bundle(request.job_id)
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                content = tar.extractfile(member).read()
                name = member.name.removeprefix("result/")
                for piece in chunks(content):
                    yield pb.FileChunk(path=name, data=piece)

    @_rpc
    def ListRunners(self, request: pb.ListRunnersRequest,
                    context: grpc.ServicerContext) -> pb.ListRunnersResponse:
        self._caller(context)
        return pb.ListRunnersResponse(
            runners=[convert.runner_info(r) for r in self.daemon.runner_rows()])

    @_rpc
    def GetTimeline(self, request: pb.GetTimelineRequest,
                    context: grpc.ServicerContext) -> pb.Timeline:
        caller = self._caller(context)
        owners = {r.job_id: r.spec.user for r in self.daemon.list_jobs()}
        return pb.Timeline(leases=[convert.lease_record(r) for r in self.daemon.timeline()
                                   if caller.admin or owners.get(r.job_id) == caller.name])


    @_rpc
    def RecordStats(self, request: pb.RecordStatsRequest,
                    context: grpc.ServicerContext) -> pb.RecordStatsResponse:
        caller = self._caller(context)
        rows = self.daemon.records.stats()
        return pb.RecordStatsResponse(keys=[
            pb.TargetKeyStats(**row) for row in rows
            if caller.admin or row["scope"] in ("", caller.name)])

    def ExportRecords(self, request: pb.ExportRecordsRequest,
                      context: grpc.ServicerContext) -> Iterator[pb.FileChunk]:
        try:
            caller = self._caller(context)
            prefix = ""
            if request.target_json:
                target = _target(request.target_json)
                prefix = tuningdb.canonical_target(target) + "@"
            db = self.daemon.records.export(self.daemon.config.records_scope_of(caller.name),
                                            prefix)
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        for name, text in tuningdb.database_files(db).items():
            for piece in chunks(text.encode()):
                yield pb.FileChunk(path=name, data=piece)

    @_rpc
    def ImportRecords(self, request_iterator: Iterator[pb.ImportRecordsRequest],
                      context: grpc.ServicerContext) -> pb.ImportRecordsResponse:
        caller = self._caller(context)
        if not (caller.admin or self.daemon.config.auth.clients_open):
            raise PermissionDenied("only admins import records: imported records reach "
                                   "every user's jobs")
        header, files, size = None, {}, 0  # file name -> bytearray
        for msg in request_iterator:
            if msg.HasField("header"):
                header = msg.header
                continue
            size += len(msg.chunk.data)
            if size > self.daemon.config.max_model_bytes:
                raise ResourceExhausted("the records are over this scheduler's upload limit "
                                        "(its --max-model-mb)")
            if msg.chunk.path not in (tuningdb.WORKLOAD_FILE, tuningdb.RECORD_FILE):
                raise InvalidRequest(f"unknown file {msg.chunk.path!r}: send "
                                     f"{tuningdb.WORKLOAD_FILE} and {tuningdb.RECORD_FILE}")
            files.setdefault(msg.chunk.path, bytearray()).extend(msg.chunk.data)
        if header is None:
            raise InvalidRequest("ImportRecords needs a header first (target, device model)")
        if not header.device_model:
            raise InvalidRequest("name the device that timed the records (its CPU or GPU "
                                 "model): records are kept per device model")
        workloads, records, key = self.daemon.import_records(
            caller.name, _target(header.target_json), header.device_model,
            {name: bytes(data) for name, data in files.items()})
        return pb.ImportRecordsResponse(workloads=workloads, records=records, target_key=key)


def _target(text: str) -> dict[str, Any]:
    try:
        return parse_target(text, check_with_tvm=False)
    except SpecError as exc:
        raise InvalidRequest(str(exc)) from exc


class RunnerChannelServicer(pb_grpc.RunnerChannelServicer):
    """Runner connections and job-state transfer."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def Connect(self, request_iterator: Iterator[pb.RunnerMessage],
                context: grpc.ServicerContext) -> Iterator[pb.SchedulerMessage]:
        try:
            self.daemon.config.auth.runner(context.invocation_metadata())
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        if not first.HasField("register"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "the first message on a runner stream must be Register")
        try:
            link = self.daemon.runner_connected(convert.register_dict(first.register))
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        reader = threading.Thread(target=self._read, args=(link, request_iterator),
                                  name=f"runner-{link.runner_id}", daemon=True)
        reader.start()
        yield pb.SchedulerMessage(registered=pb.Registered(
            runner_id=link.runner_id,
            heartbeat_interval_s=self.daemon.config.heartbeat_interval_s))
        # blocks until a message or the None that ends the stream (the reader, link.close and
        # the RPC's end each put one): a thousand idle streams cost no wake-ups
        context.add_callback(lambda: link.outbox.put(None))
        while context.is_active() and link.connected:
            msg = link.outbox.get()
            if msg is None:
                break
            yield msg

    def _read(self, link: RunnerLink, request_iterator: Iterator[pb.RunnerMessage]) -> None:
        try:
            for msg in request_iterator:
                kind = msg.WhichOneof("msg")
                if kind == "heartbeat":
                    hb = msg.heartbeat
                    load = hb.foreign_load if math.isfinite(hb.foreign_load) else 0.0
                    self.daemon.runner_heartbeat(link, min(max(load, 0.0), 1.0),
                                                 tuple(u if math.isfinite(u) else 0.0
                                                       for u in hb.gpu_util),
                                                 tuple(hb.live_leases))
                elif kind == "result":
                    self.daemon.runner_result(
                        link, validation.checked_result(convert.result_dict(msg.result)))
                elif kind == "paused":
                    self.daemon.runner_paused(link, msg.paused.lease_id)
        except grpc.RpcError:
            pass
        except Exception:
            log.exception("runner %s stream failed", link.runner_id)
        finally:
            self.daemon.runner_disconnected(link)
            link.outbox.put(None)

    def FetchBundle(self, request: pb.FetchBundleRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.FileChunk]:
        try:
            self.daemon.config.auth.runner(context.invocation_metadata())
            data, version = self.daemon.job_bundle(request.job_id)
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        for piece in chunks(data):
            yield pb.FileChunk(path=f"v{version}", data=piece)

    def FetchRecords(self, request: pb.FetchRecordsRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.FileChunk]:
        try:
            self.daemon.config.auth.runner(context.invocation_metadata())
            files = self.daemon.known_records(request.job_id, request.lease_id, request.epoch,
                                              list(request.workloads))
        except ServiceError as exc:
            context.abort(status_of(exc), one_line(str(exc)))
        for name, data in files.items():
            for piece in chunks(data):
                yield pb.FileChunk(path=name, data=piece)

    @_rpc
    def UploadBundle(self, request_iterator: Iterator[pb.UploadBundleRequest],
                     context: grpc.ServicerContext) -> pb.UploadBundleResponse:
        self.daemon.config.auth.runner(context.invocation_metadata())
        header, parts = None, []
        for msg in request_iterator:
            if msg.HasField("header"):
                header = msg.header
            else:
                parts.append(msg.chunk.data)
        if header is None:
            raise InvalidRequest("UploadBundle needs a header first")
        data = b"".join(parts)
        self.daemon.store_bundle(header.job_id, header.lease_id, header.epoch, header.kind,
                                 header.state_version, data)
        return pb.UploadBundleResponse(bytes=len(data))
