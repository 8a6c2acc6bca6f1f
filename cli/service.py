"""`tunesched scheduler` and `tunesched runner`: the daemon and a runner agent, until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from cli import options
from cli.params import GPUS, IDS, StageSeconds
from scheduler.core import SchedulerConfig, available_policies
from scheduler.service.config import STAGE_TIMEOUTS_S, DaemonConfig

CORE = SchedulerConfig()  # the core's defaults are the flags' defaults
DAEMON = {f.name: f.default for f in fields(DaemonConfig)}


def _log_info() -> None:
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))


def _check_host_port(value: str, flag: str) -> None:
    """A usage error unless `value` is empty (off) or HOST:PORT."""
    host, _, port = value.rpartition(":")
    if value and not (host and port.isdigit() and int(port) < 65536):
        raise click.BadParameter(f"want HOST:PORT (port 0 picks one), got {value!r}",
                                 param_hint=flag)


@click.command()
@click.option("--listen", default="127.0.0.1:50051", show_default=True,
              help="Address to serve on (port 0 picks a free one).")
@click.option("--state", "state_path", default="tunesched-state/scheduler.db", show_default=True,
              type=click.Path(dir_okay=False), help="SQLite file holding the durable state.")
@click.option("--policy", default=CORE.policy, show_default=True,
              type=click.Choice(available_policies()))
@click.option("--lease-ttl", default=CORE.lease_ttl_s, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds a lease lives without its runner's heartbeat.")
@click.option("--runner-timeout", default=DAEMON["runner_timeout_s"], show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds without a heartbeat before a runner is declared lost.")
@click.option("--cpu-profile", type=click.Choice(["host", "cores"]),
              default=CORE.cpu_profile_exclusivity, show_default=True,
              help="What a CPU profile lease owns exclusively.")
@click.option("--jobs-per-host", type=click.IntRange(1, 10000), default=None,
              help="Jobs placed on one host at once (default: one per 4 cores, at least 2, "
              "plus one per GPU).")
@click.option("--max-foreign-load", default=CORE.foreign_load_threshold, show_default=True,
              type=click.FloatRange(0.0, 1.0), help="No profile on a host whose CPU is busier "
              "than this fraction with processes no lease explains (1: never hold back).")
@click.option("--pause-for-profile/--no-pause-for-profile", default=CORE.pause_for_profile,
              show_default=True, help="A host-exclusive CPU profile pauses (SIGSTOP) the "
              "host's other stages while it runs instead of waiting for them to end.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate: serve TLS (with --tls-key).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--runner-token-file", type=click.Path(dir_okay=False), default=None,
              help="File (0600) with the token runners must present.")
@click.option("--users-file", type=click.Path(dir_okay=False), default=None,
              help='File (0600), JSON {"alice": {"token": "...", "admin": false}}.')
@click.option("--stage-timeout", "stage_timeouts", multiple=True,
              type=StageSeconds(list(STAGE_TIMEOUTS_S)),
              help="Kill a stage after SECONDS (repeatable, e.g. build=600); a timed-out "
              "stage counts as a failed attempt.")
@click.option("--max-model-mb", default=DAEMON["max_model_bytes"] >> 20, show_default=True,
              type=click.IntRange(1, 2047), help="Largest uploaded model in MiB (bigger: "
              "RESOURCE_EXHAUSTED). Clients send models in 1 MiB chunks.")
@click.option("--records-scope", type=click.Choice(["shared", "user"]),
              default=DAEMON["records_scope"], show_default=True,
              help="Tuning memory: records shared by every user, or kept apart per user.")
@click.option("--records-keep", type=click.IntRange(1, 4096), default=DAEMON["records_keep"],
              show_default=True, help="Records kept per workload and target key (the best).")
@click.option("--http", default="", metavar="HOST:PORT",
              help="Serve the web dashboard at http://HOST:PORT/, its JSON API under /api "
              "and Prometheus metrics at /metrics (https with --tls-cert; user tokens with "
              "--users-file); off unless given.")
def scheduler(listen: str, state_path: str, policy: str, lease_ttl: float,
              runner_timeout: float, cpu_profile: str, jobs_per_host: int | None,
              max_foreign_load: float, pause_for_profile: bool, tls_cert: str | None,
              tls_key: str | None, runner_token_file: str | None, users_file: str | None,
              stage_timeouts: tuple[tuple[str, float], ...], max_model_mb: int,
              records_scope: str, records_keep: int, http: str) -> None:
    """Run the scheduler daemon until SIGTERM/SIGINT."""
    from scheduler.service.auth import Auth
    from scheduler.service.server import serve

    _log_info()
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together: pass both or neither")
    _check_host_port(http, "--http")
    core = SchedulerConfig(policy=policy, lease_ttl_s=lease_ttl,
                           cpu_profile_exclusivity=cpu_profile,
                           foreign_load_threshold=max_foreign_load,
                           pause_for_profile=pause_for_profile, jobs_per_host=jobs_per_host)
    config = DaemonConfig(Path(state_path), core=core, runner_timeout_s=runner_timeout,
                          stage_timeouts_s={**STAGE_TIMEOUTS_S, **dict(stage_timeouts)},
                          auth=Auth.from_files(runner_token_file, users_file),
                          max_model_bytes=max_model_mb << 20, records_scope=records_scope,
                          records_keep=records_keep)
    tls = (Path(tls_key).read_bytes(), Path(tls_cert).read_bytes()) if tls_cert else None
    serve(config, listen, tls, http=http,
          http_tls_files=(tls_cert, tls_key) if tls_cert and tls_key else None)


@click.command()
@options.SCHEDULER
@options.TOKEN_FILE
@options.TLS_CA
@click.option("--host-id", default=None, help="Host this runner runs on (default: hostname). "
              "Runners of one host must share one --work-dir.")
@click.option("--cores", type=IDS, default=None,
              help="Cores to offer, e.g. 0-3 (default: all allowed).")
@click.option("--gpus", type=GPUS, default="auto", show_default=True,
              help="auto, none, or ids like 0,1.")
@click.option("--work-dir", required=True, type=click.Path(file_okay=False),
              help="Where job directories live.")
@click.option("--runner-id", default=None, help="Stable id (default: generated).")
@click.option("--metrics", "metrics_at", default="", metavar="HOST:PORT",
              help="Serve this runner's Prometheus metrics at http://HOST:PORT/metrics; off "
              "unless given.")
def runner(address: str, token_file: str | None, tls_ca: str | None, host_id: str | None,
           cores: list[int] | None, gpus: list[int] | None, work_dir: str,
           runner_id: str | None, metrics_at: str) -> None:
    """Run a runner agent: register this host's resources and run leased stages."""
    from runner.agent import Agent, RunnerConfig
    from runner.hostinfo import detect
    from runner.metrics import RunnerMetrics

    _log_info()
    _check_host_port(metrics_at, "--metrics")
    try:
        host = detect(host_id, cores, gpus)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    config = RunnerConfig(address, host, Path(work_dir), token=options.secret(token_file) or "",
                          tls_ca=options.pem(tls_ca))
    if runner_id:
        config.runner_id = runner_id
    metrics = RunnerMetrics()
    if metrics_at:
        try:
            _, served = metrics.serve(metrics_at)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    agent = Agent(config, metrics=metrics)

    def stop(*_: Any) -> None:
        agent.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    click.echo(f"runner {config.runner_id} on host {host.host_id}: cores {host.cores}, "
               f"gpus {host.gpus or 'none'}, scheduler {address}")
    if metrics_at:
        click.echo(f"metrics at http://{served}/metrics")
    agent.run(threading.Event())
    if agent.fatal:
        raise click.ClickException(agent.fatal)
