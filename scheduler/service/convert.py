"""Protobuf <-> domain conversions for the servicers and the daemon. No logic lives here."""

from __future__ import annotations

import io
import json
import math
import tarfile
from typing import Any

from proto import tunesched_pb2 as pb
from scheduler.core import PauseLease, ResumeLease, RevokeLease, StartStage
from scheduler.service.records import JobRecord


def start_message(cmd: StartStage, state_version: int, timeout_s: float) -> pb.SchedulerMessage:
    lease = cmd.lease
    return pb.SchedulerMessage(start=pb.StartStage(
        lease=pb.Lease(lease_id=lease.lease_id, epoch=lease.epoch, host_id=lease.host_id,
                       cores=list(lease.core_ids), gpus=list(lease.gpu_ids),
                       memory_mb=int(lease.memory_mb), exclusive=str(lease.exclusive) != "none",
                       expires_at=lease.expiry or 0.0),
        job_id=cmd.job_id, stage_id=cmd.stage_id, stage=cmd.kind, round=cmd.round,
        state_version=state_version, timeout_s=timeout_s))


def revoke_message(cmd: RevokeLease, epoch: int) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(revoke=pb.RevokeLease(lease_id=cmd.lease_id, epoch=epoch,
                                                     reason=cmd.reason))


def pause_message(cmd: PauseLease) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(pause=pb.PauseLease(lease_id=cmd.lease_id, epoch=cmd.epoch,
                                                   reason=cmd.reason))


def resume_message(cmd: ResumeLease) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(resume=pb.ResumeLease(lease_id=cmd.lease_id, epoch=cmd.epoch))


def job_info(r: JobRecord) -> pb.JobInfo:
    return pb.JobInfo(
        job_id=r.job_id, name=r.name, state=r.state, stage=r.stage, round=r.round,
        trials_done=r.trials_done, trial_budget=r.trials,
        best_latency_us=r.best_latency_us or 0.0, eta_s=r.eta_s(), error=r.error,
        host_id=r.host_id, submitted_at=r.submitted_at, finished_at=r.finished_at,
        target_json=json.dumps(r.target), model=r.model, priority=r.priority, user=r.user,
        untuned_latency_us=r.untuned_us or 0.0, tuned_latency_us=r.tuned_us or 0.0)


def runner_info(row: dict[str, Any]) -> pb.RunnerInfo:
    return pb.RunnerInfo(**row)


def lease_record(rec: dict[str, Any]) -> pb.LeaseRecord:
    fields = set(pb.LeaseRecord.DESCRIPTOR.fields_by_name)
    return pb.LeaseRecord(**{k: v for k, v in rec.items() if k in fields})


COUNT_KEYS = ("trials", "measured", "trials_total")
LATENCY_KEYS = ("best_latency_us", "estimated_latency_us", "tuned_us", "untuned_us")


def malformed_result(result: dict[str, Any]) -> str:
    """Why a stage result's numbers cannot be used ("" when they can): the core and the job
    records do arithmetic on them, so a runner must not smuggle in strings, NaN or negatives."""
    for key in COUNT_KEYS:
        value = result.get(key)
        if key in result and not (isinstance(value, int) and not isinstance(value, bool)
                                  and 0 <= value < 2**31):
            return f"result key {key!r} must be a count, got {str(value)[:40]!r}"
    for key in LATENCY_KEYS:
        value = result.get(key)
        if value is not None and not (isinstance(value, (int, float))
                                      and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            return f"result key {key!r} must be a latency in microseconds, got {str(value)[:40]!r}"
    return ""


def result_dict(msg: pb.StageResult) -> dict[str, Any]:
    """A runner's StageResult as the daemon's dict; a result whose JSON or numbers are
    malformed becomes a failed stage saying so (retried like any failure)."""
    ok, error = msg.ok, msg.error
    try:
        result = json.loads(msg.result_json) if msg.result_json else {}
    except (ValueError, RecursionError):  # bad JSON, 4300+ digit numbers, deep nesting
        result = {}
    result = result if isinstance(result, dict) else {}
    why = malformed_result(result) if ok else ""
    if why:
        ok, error, result = False, f"runner sent a malformed result: {why}", {}
    return {"lease_id": msg.lease_id, "epoch": msg.epoch, "job_id": msg.job_id,
            "stage_id": msg.stage_id, "stage": msg.stage, "ok": ok,
            "result": result, "error": error,
            "started": msg.started, "finished": msg.finished, "pid": msg.pid,
            "cores": list(msg.cores), "paused_at": list(msg.paused_at),
            "resumed_at": list(msg.resumed_at)}


def register_dict(msg: pb.Register) -> dict[str, Any]:
    return {"runner_id": msg.runner_id, "host_id": msg.host_id, "cores": list(msg.cores),
            "gpus": list(msg.gpus), "memory_mb": msg.memory_mb,
            "target_kinds": list(msg.target_kinds) or ["llvm"]}


def initial_bundle(record: JobRecord, model: bytes | None) -> bytes:
    """job.json plus the model: what extract needs on a runner that has never seen the job."""
    if model is None:
        from simpletvm.driver import zoo_bytes

        model = zoo_bytes(record.model, record.input_shapes)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("job.json", json.dumps(record.job_spec()).encode()),
                           ("model/model.onnx", model)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CHUNK = 1 << 20


def chunks(data: bytes, path: str = "") -> list[pb.FileChunk]:
    """Split bytes into FileChunk messages of at most 1 MiB."""
    return [pb.FileChunk(path=path, data=data[i:i + CHUNK])
            for i in range(0, max(len(data), 1), CHUNK)]
