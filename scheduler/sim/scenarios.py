"""Scenarios: hosts, jobs and disturbances for the simulator, built from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from ..core.config import SchedulerConfig
from .mockjob import CPU_HOST_TIMES, GPU_HOST_TIMES, MockJob, StageTimes, mock_spec

__all__ = [
    "HostSpec",
    "Scenario",
    "cpu_hosts_scenario",
    "gpu_host_scenario",
    "huge_scenario",
    "mixed_scenario",
    "small_host_scenario",
]


@dataclass(frozen=True, slots=True)
class HostSpec:
    """A simulated host. With runners > 1 its cores (and GPUs) are split between the runners."""

    host_id: str
    cores: int
    gpus: int = 0
    memory_mb: int = 65536
    target_kinds: tuple[str, ...] = ("llvm",)
    runners: int = 1

    def runner_offers(self) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        """(runner id, core ids, GPU ids) for each runner."""
        out = []
        for i in range(self.runners):
            cores = tuple(range(i, self.cores, self.runners))
            gpus = tuple(range(i, self.gpus, self.runners))
            out.append((f"{self.host_id}-r{i}", cores, gpus))
        return out


@dataclass
class Scenario:
    """Everything one simulation run needs besides the policy.

    load_changes: (time, host id, foreign load) the host's runners report at once.
    runner_losses: (time, runner id); runner_returns: (time, runner id) re-registers it.
    heartbeat_s: if set, every runner heartbeats this often (and leases use the config ttl).
    """

    name: str
    hosts: list[HostSpec]
    jobs: list[MockJob]
    config: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(lease_ttl_s=None))
    heartbeat_s: float | None = None
    load_changes: list[tuple[float, str, float]] = field(default_factory=list)
    runner_losses: list[tuple[float, str]] = field(default_factory=list)
    runner_returns: list[tuple[float, str]] = field(default_factory=list)


def _jobs(n: int, rng: random.Random, *, kind: str, trials: tuple[int, ...], users: int,
          prefix: str = "job", fail_rate: float = 0.0,
          arrival_span: float = 0.0) -> list[MockJob]:
    out = []
    times = GPU_HOST_TIMES if kind == "cuda" else CPU_HOST_TIMES
    for i in range(n):
        spec = mock_spec(f"{prefix}-{i}", kind, user=f"user-{rng.randrange(users)}",
                         priority=rng.choice((0, 0, 0, 1)), trials=rng.choice(trials),
                         batch_size=32)
        out.append(MockJob(spec, times, seed=rng.randrange(1 << 30),
                           arrival=rng.uniform(0.0, arrival_span) if arrival_span else 0.0,
                           fail_rate=fail_rate))
    return out


def gpu_host_scenario(jobs: int = 4, seed: int = 1) -> Scenario:
    """One GPU workstation (16 cores, 1 GPU), `jobs` cuda jobs of 256 trials each."""
    rng = random.Random(seed)
    hosts = [HostSpec("gpu-0", cores=16, gpus=1, memory_mb=131072, target_kinds=("cuda",))]
    return Scenario(f"1 GPU host, {jobs} jobs", hosts,
                    _jobs(jobs, rng, kind="cuda", trials=(256,), users=2))


def cpu_hosts_scenario(hosts: int = 8, jobs: int = 100, seed: int = 2) -> Scenario:
    """`hosts` 8-core CPU hosts, `jobs` llvm jobs of 128-256 trials, host-exclusive profiles."""
    rng = random.Random(seed)
    specs = [HostSpec(f"cpu-{i}", cores=8) for i in range(hosts)]
    return Scenario(f"{hosts} CPU hosts, {jobs} jobs", specs,
                    _jobs(jobs, rng, kind="llvm", trials=(128, 192, 256), users=5))


def huge_scenario(hosts: int = 1000, jobs: int = 10000, seed: int = 3) -> Scenario:
    """`hosts` hosts (4 in 5: 8-core CPU; 1 in 5: 16-core with 2 GPUs), `jobs` jobs of 128
    trials (4 in 5 llvm, 1 in 5 cuda) from 50 users, arriving over the first minute (about
    ten jobs per host: every host stays busy), with 0.5% of stage attempts failing."""
    rng = random.Random(seed)
    n_gpu = hosts // 5
    specs = [HostSpec(f"cpu-{i}", cores=8) for i in range(hosts - n_gpu)]
    specs += [HostSpec(f"gpu-{i}", cores=16, gpus=2, memory_mb=131072, target_kinds=("cuda",))
              for i in range(n_gpu)]
    n_cuda = jobs // 5
    mocks = _jobs(jobs - n_cuda, rng, kind="llvm", trials=(128,), users=50, prefix="cpu",
                  fail_rate=0.005, arrival_span=60.0)
    mocks += _jobs(n_cuda, rng, kind="cuda", trials=(128,), users=50, prefix="gpu",
                   fail_rate=0.005, arrival_span=60.0)
    return Scenario(f"{hosts} hosts, {jobs} jobs", specs, mocks)


# bench_ways.py's three jobs on this 2-core machine (bench/results/spans.json, run 3): seconds
# of one 16-candidate round with both cores; search is the job's own (conv2d's is 5x the
# others'), each drawn within x0.6-1.6 of it per scenario seed to mimic search luck.
_SMALL_HOST_SEARCH = (("matmul", 3.0), ("conv2d", 15.0), ("mlp", 3.3))


def small_host_scenario(seed: int = 5) -> Scenario:
    """One 2-core llvm host and the evaluation's three jobs (64 trials in rounds of 16, all
    placed at once): one job's chain dominates, so who gets the second core matters."""
    rng = random.Random(seed)
    jobs = []
    for name, search in _SMALL_HOST_SEARCH:
        search *= rng.uniform(0.6, 1.6)
        times = StageTimes(extract=(0.15, 0.25), search=(search * 0.85, search * 1.15),
                           build=(1.6, 4.0), profile=(2.4, 2.8), learn=(0.3, 1.0),
                           compile=(0.2, 1.3), benchmark=(2.6, 3.3))
        spec = mock_spec(name, "llvm", user="bench", trials=64, batch_size=16)
        jobs.append(MockJob(spec, times, seed=rng.randrange(1 << 30)))
    return Scenario("2-core host, 3 jobs", [HostSpec("small", cores=2)], jobs,
                    config=SchedulerConfig(lease_ttl_s=None, jobs_per_host=3))


def mixed_scenario(seed: int = 4, jobs: int = 12) -> Scenario:
    """A small, messy scenario for tests: CPU and GPU hosts, two runners on one host,
    failures, a latency goal, search exhaustion, foreign load, a lost and returning runner,
    heartbeats with finite lease ttl."""
    rng = random.Random(seed)
    hosts = [HostSpec("cpu-0", cores=8), HostSpec("cpu-1", cores=8, runners=2),
             HostSpec("gpu-0", cores=8, gpus=2, target_kinds=("cuda", "llvm"))]
    mocks = _jobs(jobs // 2, rng, kind="llvm", trials=(64, 96), users=3, fail_rate=0.05)
    mocks += _jobs(jobs - jobs // 2, rng, kind="cuda", trials=(64,), users=3, prefix="gjob",
                   fail_rate=0.05, arrival_span=30.0)
    mocks[0].exhaust_round = 1
    mocks[1] = replace(mocks[1], spec=replace(mocks[1].spec, latency_goal_us=500.0))
    mocks[2] = replace(mocks[2], spec=replace(mocks[2].spec, cpu_profile_exclusivity="cores"))
    return Scenario(
        "mixed", hosts, mocks,
        config=SchedulerConfig(lease_ttl_s=15.0, max_stage_retries=3),
        heartbeat_s=5.0,
        load_changes=[(20.0, "cpu-0", 0.6), (60.0, "cpu-0", 0.0)],
        runner_losses=[(40.0, "cpu-1-r0"), (45.0, "gpu-0-r0")],
        runner_returns=[(90.0, "cpu-1-r0"), (100.0, "gpu-0-r0")],
    )
