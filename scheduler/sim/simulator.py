"""A discrete-event simulator that drives the real core with MockJobs and a simulated clock.

Stages progress at rate 1/slowdown: on a host whose leased cores plus foreign load exceed its
cores (only the `shared` policy or foreign load get there) CPU stages slow down by that load
factor, and profiles sharing a GPU slow down by the number sharing it. A profile counts as
contended if anything else ran on its device meanwhile (for llvm: on its host, or foreign load).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import replace

from ..core.commands import (
    JobStateChanged,
    MoveJob,
    PauseLease,
    ResultRejected,
    ResumeLease,
    RevokeLease,
    StartStage,
)
from ..core.demands import StageKind
from ..core.events import (
    Event,
    HeartbeatReceived,
    JobSubmitted,
    RunnerLost,
    RunnerRegistered,
    StageFailed,
    StageFinished,
)
from ..core.jobs import TERMINAL_JOB_STATES, JobState
from ..core.policies import Policy
from ..core.state import SchedulerState
from .metrics import BusyMeter, SimResult, lower_bound
from .mockjob import FakeStageExecutor, StageOutcome
from .scenarios import HostSpec, Scenario

__all__ = ["Simulator"]

logger = logging.getLogger(__name__)

_TERMINAL = frozenset(str(s) for s in TERMINAL_JOB_STATES)

# Kinds of entries in the simulator's event heap, in tie-break order at equal times.
_RUNNER, _LOAD, _DONE, _SUBMIT, _HEARTBEAT, _LOST, _DETECTED = range(7)


class _Run:
    """A stage running in the simulation."""

    __slots__ = (
        "contended",
        "cpu_cores",
        "host",
        "last",
        "outcome",
        "profile",
        "rate",
        "remaining",
        "start",
        "version",
    )

    def __init__(self, start: StartStage, host: _Host, outcome: StageOutcome, now: float):
        self.start = start
        self.host = host
        self.outcome = outcome
        self.remaining = outcome.seconds
        self.rate = 1.0
        self.last = now
        self.version = 0
        self.cpu_cores = len(start.lease.core_ids)
        self.profile = start.kind == StageKind.PROFILE
        self.contended = False


class _Host:
    """Simulated load and meters of one host."""

    __slots__ = (
        "cpu_cores",
        "cpu_meter",
        "foreign",
        "gpu_count",
        "gpu_meters",
        "gpu_shared",
        "host_meter",
        "host_profiles",
        "runs",
        "slow",
        "spec",
    )

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.runs: dict[str, _Run] = {}
        self.cpu_cores = 0
        self.gpu_count: dict[int, int] = {}
        self.gpu_shared = 0  # GPUs with more than one profile on them
        self.foreign = 0.0
        self.slow = False
        self.cpu_meter = BusyMeter()
        self.gpu_meters = {g: BusyMeter() for g in range(spec.gpus)}
        self.host_meter = BusyMeter()
        self.host_profiles = 0

    def load(self) -> float:
        """Leased cores plus foreign load, over cores."""
        return self.cpu_cores / self.spec.cores + self.foreign

    def slowdown(self, run: _Run) -> float:
        """How many times slower than alone `run` progresses now."""
        gpus = run.start.lease.gpu_ids
        if run.profile and gpus:
            return float(max(self.gpu_count[g] for g in gpus))
        return max(1.0, self.load())

    def contends(self, profile: _Run, other: _Run | None) -> bool:
        """Whether `other` (or foreign load, if None) disturbs `profile`'s measurement."""
        gpus = profile.start.lease.gpu_ids
        if gpus:
            return (other is not None and other.profile
                    and bool(set(gpus) & set(other.start.lease.gpu_ids))) or self.load() > 1.0
        return other is not None or self.foreign > 0.0


class Simulator:
    """Runs one scenario under one policy through a real SchedulerState."""

    def __init__(self, scenario: Scenario, policy: str | Policy | None = None, *,
                 check_invariants: bool = False, record: bool = False,
                 loss_detect_s: float = 30.0, max_time: float = 1e9,
                 timer: Callable[[], float] | None = None) -> None:
        """check_invariants: validate_state() after every event. record: keep (now, event)
        in `trace`. timer: a real clock (e.g. time.perf_counter) to measure the time spent
        inside the core; the simulator itself never reads one."""
        self.scenario = scenario
        config = scenario.config
        if isinstance(policy, str):
            config = replace(config, policy=policy)
        self.state = SchedulerState(config, policy if isinstance(policy, Policy) else None)
        self.check_invariants = check_invariants
        self.trace: list[tuple[float, Event]] | None = [] if record else None
        self.loss_detect_s = loss_detect_s
        self.max_time = max_time
        self.mocks = {m.job_id: m for m in scenario.jobs}
        self.executor = FakeStageExecutor(self.mocks)
        self.hosts = {h.host_id: _Host(h) for h in scenario.hosts}
        self.offers = {rid: (h, cores, gpus) for h in scenario.hosts
                       for rid, cores, gpus in h.runner_offers()}
        self.dead: set[str] = set()
        self.runs: dict[str, _Run] = {}
        self.paused: dict[str, _Run] = {}  # stopped for a host-exclusive profile
        self.now = 0.0
        self.finished_at: dict[str, float] = {}
        self.outcomes: dict[str, str] = {}
        self.profiles = self.contended = self.rejected = self.moves = 0
        self.on_command: Callable[[float, object], None] | None = None
        self.timer = timer
        self.core_seconds = 0.0
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0

    # ---------------------------------------------------------------- event queue

    def _push(self, when: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, kind, self._seq, payload))

    def _seed_events(self) -> None:
        sc = self.scenario
        for rid in self.offers:
            self._push(0.0, _RUNNER, rid)
            if sc.heartbeat_s:
                self._push(sc.heartbeat_s, _HEARTBEAT, rid)
        for mock in sc.jobs:
            self._push(mock.arrival, _SUBMIT, mock)
        for t, host_id, load in sc.load_changes:
            self._push(t, _LOAD, (host_id, load))
        for t, rid in sc.runner_losses:
            self._push(t, _LOST, rid)
        for t, rid in sc.runner_returns:
            self._push(t, _RUNNER, rid)

    def run(self) -> SimResult:
        """Run until every job is done, failed or cancelled (or nothing can happen)."""
        self._seed_events()
        total = len(self.scenario.jobs)
        heap = self._heap
        while heap and len(self.finished_at) < total:
            when, kind, _, payload = heapq.heappop(heap)
            if when > self.max_time:
                break
            self.now = when
            self._dispatch(kind, payload)
        if len(self.finished_at) < total:
            logger.warning("simulation of %s stopped with %d of %d jobs unfinished",
                           self.scenario.name, total - len(self.finished_at), total)
        return self.result()

    def _dispatch(self, kind: int, payload: object) -> None:
        if kind == _DONE:
            lease_id, version = payload
            run = self.runs.get(lease_id)
            if run is not None and run.version == version:
                self._complete(run)
        elif kind == _SUBMIT:
            self._deliver(JobSubmitted(payload.spec, cause=f"submit-{payload.job_id}"))
        elif kind == _HEARTBEAT:
            self._heartbeat(payload)
        elif kind == _RUNNER:
            self._register(payload)
        elif kind == _LOAD:
            self._set_load(*payload)
        elif kind == _LOST:
            self._lose(payload)
        elif kind == _DETECTED:
            self._deliver(RunnerLost(payload, cause=f"lost-{payload}"))

    def _deliver(self, event: Event) -> None:
        if self.trace is not None:
            self.trace.append((self.now, event))
        if self.timer is None:
            commands = self.state.handle(event, self.now)
        else:
            started = self.timer()
            commands = self.state.handle(event, self.now)
            self.core_seconds += self.timer() - started
        if self.check_invariants:
            self.state.validate_state()
        for command in commands:
            self._execute(command)

    # ---------------------------------------------------------------- runners

    def _register(self, runner_id: str) -> None:
        spec, cores, gpus = self.offers[runner_id]
        self.dead.discard(runner_id)
        self._deliver(RunnerRegistered(runner_id, spec.host_id, cores, gpus, spec.memory_mb,
                                       spec.target_kinds, cause=f"register-{runner_id}"))

    def _heartbeat(self, runner_id: str) -> None:
        if runner_id not in self.dead:
            host = self.hosts[self.offers[runner_id][0].host_id]
            self._deliver(HeartbeatReceived(runner_id, host.foreign, cause=f"hb-{runner_id}"))
        if len(self.finished_at) < len(self.scenario.jobs):
            self._push(self.now + self.scenario.heartbeat_s, _HEARTBEAT, runner_id)

    def _set_load(self, host_id: str, load: float) -> None:
        host = self.hosts[host_id]
        self._reflow(host)
        host.foreign = load
        self._reflow(host)
        for run in host.runs.values():
            if run.profile and host.contends(run, None):
                run.contended = True
        for rid, _, _ in host.spec.runner_offers():
            if rid not in self.dead:
                self._deliver(HeartbeatReceived(rid, load, cause=f"load-{host_id}"))

    def _lose(self, runner_id: str) -> None:
        """The runner dies silently: its stages vanish; the core hears of it later."""
        self.dead.add(runner_id)
        for run in [r for r in self.runs.values() if r.start.runner_id == runner_id]:
            self._stop(run)
        self._push(self.now + self.loss_detect_s, _DETECTED, runner_id)

    # ---------------------------------------------------------------- stages

    def _execute(self, command: object) -> None:
        if self.on_command is not None:
            self.on_command(self.now, command)
        if isinstance(command, StartStage):
            self._start(command)
        elif isinstance(command, RevokeLease):
            run = self.runs.get(command.lease_id)
            if run is not None:
                self._stop(run)
        elif isinstance(command, PauseLease):
            run = self.runs.get(command.lease_id)
            if run is not None and command.lease_id not in self.paused:
                self._pause(run)
        elif isinstance(command, ResumeLease):
            run = self.paused.get(command.lease_id)
            if run is not None:
                self._resume(run)
        elif isinstance(command, JobStateChanged):
            if command.new in _TERMINAL:
                self.finished_at[command.job_id] = self.now
                self.outcomes[command.job_id] = command.new
        elif isinstance(command, ResultRejected):
            self.rejected += 1
        elif isinstance(command, MoveJob):
            self.moves += 1

    def _start(self, start: StartStage) -> None:
        if start.runner_id in self.dead:
            return  # granted to a runner that died unnoticed: it never runs, the lease expires
        host = self.hosts[start.lease.host_id]
        run = _Run(start, host, self.executor.run(start), self.now)
        self._reflow(host)
        for other in host.runs.values():
            if other.profile and host.contends(other, run):
                other.contended = True
            if run.profile and host.contends(run, other):
                run.contended = True
        self.runs[start.lease.lease_id] = run
        host.runs[start.lease.lease_id] = run
        self._account(host, run, +1)
        if run.profile and host.contends(run, None):
            run.contended = True
        self._push(self.now + run.remaining, _DONE, (start.lease.lease_id, 0))
        self._reflow(host)

    def _pause(self, run: _Run) -> None:
        """Freeze `run` (SIGSTOP): its progress so far is kept, it loads nothing."""
        host = run.host
        self._reflow(host)
        lease_id = run.start.lease.lease_id
        run.remaining -= (self.now - run.last) * run.rate
        run.last = self.now
        run.version += 1  # its pending completion is void
        del host.runs[lease_id]
        self.paused[lease_id] = run
        self._account(host, run, -1)
        self._reflow(host)

    def _resume(self, run: _Run) -> None:
        host = run.host
        self._reflow(host)
        lease_id = run.start.lease.lease_id
        del self.paused[lease_id]
        host.runs[lease_id] = run
        self._account(host, run, +1)
        run.last, run.rate = self.now, 1.0 / host.slowdown(run)
        run.version += 1
        self._push(self.now + max(run.remaining, 0.0) / run.rate, _DONE, (lease_id, run.version))
        self._reflow(host)

    def _stop(self, run: _Run) -> None:
        lease_id = run.start.lease.lease_id
        if self.paused.pop(lease_id, None) is not None:
            del self.runs[lease_id]
            return
        host = run.host
        self._reflow(host)
        del self.runs[run.start.lease.lease_id]
        del host.runs[run.start.lease.lease_id]
        self._account(host, run, -1)
        self._reflow(host)

    def _complete(self, run: _Run) -> None:
        self._stop(run)
        start, outcome = run.start, run.outcome
        lease = start.lease
        if run.profile:
            self.profiles += 1
            self.contended += run.contended
        if outcome.error is None:
            event: Event = StageFinished(lease.lease_id, lease.epoch, start.job_id,
                                         start.stage_id, outcome.result,
                                         cause=f"done-{lease.lease_id}")
        else:
            event = StageFailed(lease.lease_id, lease.epoch, start.job_id, start.stage_id,
                                outcome.error, cause=f"fail-{lease.lease_id}")
        self._deliver(event)

    def _account(self, host: _Host, run: _Run, sign: int) -> None:
        now = self.now
        host.cpu_cores += sign * run.cpu_cores
        host.cpu_meter.set(now, min(host.cpu_cores, host.spec.cores))
        if not run.profile:
            return
        gpus = run.start.lease.gpu_ids
        for g in gpus:
            n = host.gpu_count.get(g, 0) + sign
            host.gpu_count[g] = n
            if (n > 1) != (n - sign > 1):
                host.gpu_shared += 1 if n > 1 else -1
            host.gpu_meters[g].set(now, 1.0 if n else 0.0)
        if not gpus:
            host.host_profiles += sign
            host.host_meter.set(now, 1.0 if host.host_profiles else 0.0)

    def _reflow(self, host: _Host) -> None:
        """Bring every run on `host` up to now and re-time it if its speed changed."""
        slow = (host.cpu_cores / host.spec.cores + host.foreign > 1.0) or host.gpu_shared > 0
        if not slow and not host.slow:
            return
        now = self.now
        for lease_id, run in host.runs.items():
            run.remaining -= (now - run.last) * run.rate
            run.last = now
            rate = 1.0 / host.slowdown(run)
            if rate != run.rate:
                run.rate = rate
                run.version += 1
                self._push(now + max(run.remaining, 0.0) / rate, _DONE, (lease_id, run.version))
        host.slow = slow

    # ---------------------------------------------------------------- results

    def result(self) -> SimResult:
        """Metrics of the run so far."""
        sc = self.scenario
        end = max(self.finished_at.values(), default=self.now)
        completion = [self.finished_at[m.job_id] - m.arrival for m in sc.jobs
                      if self.outcomes.get(m.job_id) == JobState.DONE]
        devices = sum(h.spec.gpus for h in self.hosts.values() if "cuda" in h.spec.target_kinds)
        devices += sum(1 for h in self.hosts.values() if "llvm" in h.spec.target_kinds)
        device_s = sum(m.total(end) for h in self.hosts.values() for m in h.gpu_meters.values())
        device_s += sum(h.host_meter.total(end) for h in self.hosts.values())
        cores = sum(h.spec.cores for h in self.hosts.values())
        cpu_s = sum(h.cpu_meter.total(end) for h in self.hosts.values())
        outcomes = list(self.outcomes.values())
        span = max(end, 1e-9)
        return SimResult(
            scenario=sc.name, policy=self.state.policy.name, jobs=len(sc.jobs),
            hosts=len(sc.hosts), done=outcomes.count(JobState.DONE),
            failed=outcomes.count(JobState.FAILED),
            cancelled=outcomes.count(JobState.CANCELLED), makespan=end,
            lower_bound=lower_bound(sc.hosts, sc.jobs).value,
            mean_completion=sum(completion) / len(completion) if completion else float("nan"),
            device_busy=device_s / (max(devices, 1) * span), cpu_busy=cpu_s / (cores * span),
            contended_profiles=self.contended / self.profiles if self.profiles else 0.0,
            decisions=self.state.events_handled, leases=self.state.leases_granted,
            rejected_results=self.rejected, moves=self.moves, core_seconds=self.core_seconds,
        )
