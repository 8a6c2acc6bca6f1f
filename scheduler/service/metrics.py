"""Prometheus metrics of the daemon (prometheus_client), one registry per daemon.

Names follow Prometheus' conventions: the `tunesched_` prefix, base units (seconds), `_total`
counters, `_seconds` histograms, and no job-id or candidate-id labels (a label per job would
grow the series without bound). Counters and histograms are fed by the daemon as it handles
events (`observe`, under its lock); gauges (jobs by state, runners, hosts, records) are read
from its state when scraped (`_StateCollector`).

    tunesched_jobs{state}                              jobs by state
    tunesched_runners_connected, tunesched_hosts_connected
    tunesched_leases_granted_total{stage,target_kind}
    tunesched_lease_grant_latency_seconds              a stage ready (its job submitted, or its
                                                       previous lease ended) to its lease
    tunesched_stage_duration_seconds{stage,target_kind} lease granted to ended, finished stages
    tunesched_paused_seconds_total                     stage time spent paused for a profile
    tunesched_foreign_load_wait_seconds_total          time ready profiles were held back by
                                                       their host's foreign load (per profile)
    tunesched_trials_measured_total                    candidates a learn stage committed
    tunesched_verification_changes_total               tasks whose verification kept another
                                                       kernel than the search's pick
    tunesched_records                                  records in the tuning memory
    tunesched_sqlite_commit_seconds                    one event's transaction
    tunesched_build_info{version,tvm}
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scheduler.core import JobState, StartStage

if TYPE_CHECKING:
    from scheduler.core import SchedulerState
    from scheduler.service.daemon import Daemon
    from scheduler.service.records import LeaseRecord

# stage leases last from a second (learn) to many minutes (a search on a big model)
STAGE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# the daemon's own work: a grant while handling a result, one SQLite commit
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0, 60.0, 300.0)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


class DaemonMetrics:
    """The daemon's metrics and the registry `/metrics` serves."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.granted = Counter("tunesched_leases_granted", "Leases granted.",
                               ["stage", "target_kind"], registry=r)
        self.grant_latency = Histogram(
            "tunesched_lease_grant_latency_seconds", "Seconds from a stage being ready (its job "
            "submitted, or its previous lease ended) to its lease.", buckets=FAST_BUCKETS,
            registry=r)
        self.stage_duration = Histogram(
            "tunesched_stage_duration_seconds", "Seconds from grant to end of finished stages.",
            ["stage", "target_kind"], buckets=STAGE_BUCKETS, registry=r)
        self.paused = Counter("tunesched_paused_seconds", "Seconds stages spent paused so that "
                              "a profile had the host to itself.", registry=r)
        self.foreign_wait = Counter(
            "tunesched_foreign_load_wait_seconds", "Seconds ready profile stages were held back "
            "because their host's foreign load was above the threshold (two profiles held for "
            "a second: 2).", registry=r)
        self.trials = Counter("tunesched_trials_measured", "Candidates measured and committed.",
                              registry=r)
        self.verify_changes = Counter(
            "tunesched_verification_changes", "Tasks whose verification kept another kernel "
            "than the one the search's timings picked.", registry=r)
        self.commit = Histogram("tunesched_sqlite_commit_seconds", "Seconds of one event's "
                                "SQLite transaction.", buckets=FAST_BUCKETS, registry=r)
        Info("tunesched_build", "Versions this daemon runs.", registry=r).info(
            {"version": _version("tunesched"), "tvm": _version("apache-tvm")})
        r.register(_StateCollector(daemon))
        self._last_end: dict[str, float] = {}  # job -> when its latest lease ended
        self._held = 0  # profiles held back by foreign load since `_held_since`
        self._held_since = 0.0

    def core_changed(self, core: SchedulerState, now: float) -> None:
        """After every event the core handled (under the daemon's lock; idle ticks too): the
        time since the previous one counts for each profile foreign load held back through
        it (the core's state only changes at events); then count the profiles held now."""
        if self._held:
            self.foreign_wait.inc(self._held * max(0.0, now - self._held_since))
        self._held_since = now
        policy, threshold = core.policy, core.config.foreign_load_threshold
        # every event passes here: only a host over the threshold can hold a profile back
        self._held = sum(policy.held_by_foreign_load(core, host) for host in core.hosts.values()
                         if host.foreign_load > threshold and host.ready)

    def observe(self, daemon: Daemon, commands: list[Any], leases: list[str], now: float,
                commit_s: float) -> None:
        """After one event (under the daemon's lock): its commit, the leases it ended (ids of
        the lease records it changed) and the leases it granted."""
        self.commit.observe(commit_s)
        for lease_id in leases:
            record = daemon.projection.leases[lease_id]
            if record.live:
                continue
            if record.outcome == "finished" and record.ended_at == now:
                self._ended(daemon, record)
            job = daemon.projection.jobs.get(record.job_id)
            if job is None or job.terminal:  # no lease will follow: nothing to remember
                self._last_end.pop(record.job_id, None)
            else:
                self._last_end[record.job_id] = max(self._last_end.get(record.job_id, 0.0),
                                                    record.ended_at)
        for command in commands:
            if isinstance(command, StartStage):
                job = daemon.projection.jobs.get(command.job_id)
                kind = job.spec.target_kind if job is not None else "unknown"
                self.granted.labels(command.kind, kind).inc()
                ready = self._last_end.get(command.job_id, job.submitted_at if job else now)
                self.grant_latency.observe(max(0.0, now - ready))

    def _ended(self, daemon: Daemon, record: LeaseRecord) -> None:
        job = daemon.projection.jobs.get(record.job_id)
        kind = job.spec.target_kind if job is not None else "unknown"
        self.stage_duration.labels(record.stage, kind).observe(
            max(0.0, record.ended_at - record.granted_at))
        self.paused.inc(sum(max(0.0, b - a) for a, b in zip(record.paused_at, record.resumed_at,
                                                             strict=False)))

    def stage_result(self, stage: str, result: dict[str, Any]) -> None:
        """What a finished stage's result says: trials committed, verification changes."""
        if stage == "learn":
            self.trials.inc(max(0, int(result.get("trials") or 0)))
            self.verify_changes.inc(max(0, int(result.get("verify_changed") or 0)))


class _StateCollector(Collector):
    """Gauges read from the daemon's state at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[GaugeMetricFamily]:
        daemon = self.daemon
        with daemon.lock:
            states = {str(state): 0 for state in JobState}
            for record in daemon.projection.jobs.values():
                states[record.state] = states.get(record.state, 0) + 1
            links = [daemon.links.get(rid) for rid in daemon.core.runners]
            connected = [link for link in links if link is not None and link.connected]
        jobs = GaugeMetricFamily("tunesched_jobs", "Jobs by state.", labels=["state"])
        for state, count in sorted(states.items()):
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily("tunesched_runners_connected", "Runners connected.",
                                value=len(connected))
        yield GaugeMetricFamily("tunesched_hosts_connected", "Hosts with a runner connected.",
                                value=len({link.host_id for link in connected}))
        records = sum(row["records"] for row in daemon.records.stats())
        yield GaugeMetricFamily("tunesched_records", "Records in the tuning memory.",
                                value=records)
