"""Protobuf <-> domain conversions for the servicers and the runner links. Mapping only: the
checks live in `validation`, the job spec's own conversion in `proto/jobspec.py`."""

from __future__ import annotations

import json
from typing import Any

from proto import tunesched_pb2 as pb
from scheduler.core import PauseLease, ResumeLease, StartStage
from scheduler.service.records import JobRecord, LeaseRecord


def start_message(cmd: StartStage, state_version: int, timeout_s: float) -> pb.SchedulerMessage:
    lease = cmd.lease
    return pb.SchedulerMessage(start=pb.StartStage(
        lease=pb.Lease(lease_id=lease.lease_id, epoch=lease.epoch, host_id=lease.host_id,
                       cores=list(lease.core_ids), gpus=list(lease.gpu_ids),
                       memory_mb=int(lease.memory_mb), exclusive=str(lease.exclusive) != "none",
                       expires_at=lease.expiry or 0.0),
        job_id=cmd.job_id, stage_id=cmd.stage_id, stage=cmd.kind, round=cmd.round,
        state_version=state_version, timeout_s=timeout_s))


def revoke_message(lease_id: str, epoch: int, reason: str) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(revoke=pb.RevokeLease(lease_id=lease_id, epoch=epoch,
                                                     reason=reason))


def pause_message(cmd: PauseLease) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(pause=pb.PauseLease(lease_id=cmd.lease_id, epoch=cmd.epoch,
                                                   reason=cmd.reason))


def resume_message(cmd: ResumeLease) -> pb.SchedulerMessage:
    return pb.SchedulerMessage(resume=pb.ResumeLease(lease_id=cmd.lease_id, epoch=cmd.epoch))


def job_info(r: JobRecord) -> pb.JobInfo:
    spec = r.spec
    return pb.JobInfo(
        job_id=r.job_id, name=spec.name, state=r.state, stage=r.stage, round=r.round,
        trials_done=r.trials_done, trial_budget=spec.trials,
        best_latency_us=r.best_latency_us or 0.0, eta_s=r.eta_s, error=r.error,
        host_id=r.host_id, submitted_at=r.submitted_at, finished_at=r.finished_at,
        target_json=json.dumps(spec.target), model=spec.model, priority=spec.priority,
        user=spec.user, untuned_latency_us=r.untuned_us or 0.0,
        tuned_latency_us=r.tuned_us or 0.0, reused_records=r.reused_records,
        reused_tasks=r.reused_tasks, known_trials=r.known_trials, tasks=r.tasks,
        waiting=r.waiting)


def runner_info(row: dict[str, Any]) -> pb.RunnerInfo:
    return pb.RunnerInfo(**row)


def lease_record(lease: LeaseRecord) -> pb.LeaseRecord:
    return pb.LeaseRecord(**lease.to_dict())


def result_dict(msg: pb.StageResult) -> dict[str, Any]:
    """A runner's StageResult as a dict; "result" is the parsed JSON, or None when it does
    not parse (`validation.checked_result` decides what that means)."""
    try:
        result = json.loads(msg.result_json) if msg.result_json else {}
    except (ValueError, RecursionError):  # bad JSON, 4300+ digit numbers, deep nesting
        result = None
    return {"lease_id": msg.lease_id, "epoch": msg.epoch, "job_id": msg.job_id,
            "stage_id": msg.stage_id, "stage": msg.stage, "ok": msg.ok,
            "result": result, "error": msg.error,
            "started": msg.started, "finished": msg.finished, "pid": msg.pid,
            "cores": list(msg.cores), "paused_at": list(msg.paused_at),
            "resumed_at": list(msg.resumed_at)}


def register_dict(msg: pb.Register) -> dict[str, Any]:
    return {"runner_id": msg.runner_id, "host_id": msg.host_id, "cores": list(msg.cores),
            "gpus": list(msg.gpus), "memory_mb": msg.memory_mb,
            "target_kinds": list(msg.target_kinds) or ["llvm"], "cpu_model": msg.cpu_model,
            "gpu_models": list(msg.gpu_models)}
