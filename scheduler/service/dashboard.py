"""The dashboard's read model: what each page and JSON route shows a caller, built from a
consistent view of the daemon's records (`View`, taken under its lock). Pure: no HTTP here.

A caller sees their own jobs (an admin, or an open daemon's caller, sees every job). Leases of
a job the caller may not see still occupy the Gantt and the runners' tables, since the
resources are shared, but carry no job id, name or user.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from scheduler.service.auth import Caller
from scheduler.service.records import JobRecord

HIDDEN = "another user's job"


@dataclass
class View:
    """Copies of the daemon's records at one moment: jobs by id, leases (as dicts, oldest
    first) and runner rows (`Daemon.runner_rows`)."""

    now: float
    jobs: dict[str, JobRecord]
    leases: list[dict[str, Any]]
    runners: list[dict[str, Any]]


class Views:
    """`View`s of one daemon, taken under its lock. A lease record that has ended no longer
    changes, so its dict is made once and reused: a timeline of thousands of leases holds the
    daemon's lock for the live ones only."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self._ended: dict[str, dict[str, Any]] = {}

    def take(self, since: float = 0.0, job_id: str = "") -> View:
        """Every job, the leases live or ended after `since` (only `job_id`'s when given),
        every runner."""
        daemon, ended = self.daemon, self._ended
        with daemon.lock:
            jobs = {key: record.copy() for key, record in daemon.projection.jobs.items()}
            leases = []
            for lease in daemon.projection.leases.values():
                if (lease.live or lease.ended_at >= since) and (not job_id
                                                                or lease.job_id == job_id):
                    if lease.live:
                        leases.append(lease.to_dict())
                    else:
                        if lease.lease_id not in ended:
                            ended[lease.lease_id] = lease.to_dict()
                        leases.append(ended[lease.lease_id])
            runners = daemon.runner_rows()
            now = daemon.config.clock()
        if len(ended) > 2 * len(daemon.projection.leases):  # leases the daemon dropped
            self._ended = {k: v for k, v in ended.items() if k in daemon.projection.leases}
        leases.sort(key=lambda x: x["granted_at"])
        return View(now, jobs, leases, runners)


def can_see(caller: Caller, record: JobRecord | None) -> bool:
    return record is not None and (caller.admin or record.spec.user == caller.name)


def job_summary(record: JobRecord) -> dict[str, Any]:
    """A row of the jobs table (and of `GET /api/jobs`)."""
    spec = record.spec
    return {"job_id": record.job_id, "name": spec.name, "user": spec.user, "model": spec.model,
            "target": spec.target, "priority": spec.priority, "state": record.state,
            "stage": record.stage, "round": record.round, "trials_done": record.trials_done,
            "trial_budget": spec.trials, "best_latency_us": record.best_latency_us,
            "latency_goal_us": spec.latency_goal_us, "untuned_us": record.untuned_us,
            "tuned_us": record.tuned_us, "eta_s": record.eta_s, "host_id": record.host_id,
            "submitted_at": record.submitted_at, "finished_at": record.finished_at,
            "tasks": record.tasks, "reused_records": record.reused_records,
            "reused_tasks": record.reused_tasks, "waiting": record.waiting,
            "error": record.error}


def jobs(view: View, caller: Caller) -> list[dict[str, Any]]:
    """The jobs the caller may see, newest first."""
    rows = [job_summary(r) for r in view.jobs.values() if can_see(caller, r)]
    return sorted(rows, key=lambda r: r["submitted_at"], reverse=True)


def lease_row(lease: dict[str, Any], view: View, caller: Caller) -> dict[str, Any]:
    """A lease as the caller may see it: "label" names its job, or says it is hidden."""
    record = view.jobs.get(lease["job_id"])
    mine = can_see(caller, record)
    resumed = lease["resumed_at"]
    pauses = [[a, resumed[i] if i < len(resumed) else 0.0]  # 0: still paused
              for i, a in enumerate(lease["paused_at"])]
    return {"lease_id": lease["lease_id"], "job_id": lease["job_id"] if mine else "",
            "label": (record.spec.name or record.job_id) if mine and record else HIDDEN,
            "stage": lease["stage"], "round": lease["round"], "host_id": lease["host_id"],
            "runner_id": lease["runner_id"], "cores": lease["cores"], "gpus": lease["gpus"],
            "exclusive": lease["exclusive"], "granted_at": lease["granted_at"],
            "ended_at": lease["ended_at"], "outcome": lease["outcome"],
            "paused": pauses}


def timeline(view: View, caller: Caller) -> list[dict[str, Any]]:
    return [lease_row(lease, view, caller) for lease in view.leases]


def job_detail(view: View, record: JobRecord, caller: Caller) -> dict[str, Any]:
    """A job page: its summary, best-latency curve, task table and leases."""
    return {**job_summary(record), "curve": record.curve, "task_rows": record.task_rows,
            "leases": [lease_row(x, view, caller) for x in view.leases
                       if x["job_id"] == record.job_id]}


def runners(view: View, caller: Caller) -> dict[str, Any]:
    """Runners with their live leases, and hosts: cores, GPUs, foreign load, live leases."""
    live = {x["lease_id"]: x for x in view.leases if not x["ended_at"]}
    rows = []
    for runner in view.runners:
        leases = [lease_row(live[i], view, caller) for i in runner["leases"] if i in live]
        rows.append({**runner, "leases": leases})
    hosts: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "runners": 0, "connected": 0, "cores": set(), "gpus": set(), "foreign_load": 0.0,
        "leases": 0})
    for row in rows:
        host = hosts[row["host_id"]]
        host["runners"] += 1
        host["connected"] += row["connected"]
        host["cores"] |= set(row["cores"])
        host["gpus"] |= set(row["gpus"])
        host["foreign_load"] = max(host["foreign_load"], row["foreign_load"])
        host["leases"] += len(row["leases"])
    return {"runners": rows, "hosts": [
        {"host_id": h, **v, "cores": sorted(v["cores"]), "gpus": sorted(v["gpus"])}
        for h, v in sorted(hosts.items())]}

