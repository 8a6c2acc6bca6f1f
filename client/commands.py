"""The service commands: scheduler, runner, submit, jobs, show, watch, cancel, result, runners,
timeline, demo. Registered on the `tunesched` group by import."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from client.api import DEFAULT_ADDRESS, Client
from client.cli import _fail, _guard, cli, print_report
from client.format import job_lines, job_table_rows, us

SCHEDULER_OPTION = click.option(
    "--scheduler", "address", envvar="TUNESCHED_SCHEDULER", default=DEFAULT_ADDRESS,
    show_default=True, help="Scheduler address (env TUNESCHED_SCHEDULER).")
TOKEN_OPTION = click.option(
    "--token-file", envvar="TUNESCHED_TOKEN_FILE", default=None,
    type=click.Path(dir_okay=False), help="File (mode 0600) holding your token "
    "(env TUNESCHED_TOKEN_FILE).")
TLS_CA_OPTION = click.option(
    "--tls-ca", envvar="TUNESCHED_TLS_CA", default=None, type=click.Path(dir_okay=False),
    help="PEM certificate to trust for TLS (env TUNESCHED_TLS_CA).")


def _secret(token_file: str | None) -> str | None:
    from scheduler.service.auth import TokenFileError, read_secret_file

    if not token_file:
        return None
    try:
        return read_secret_file(token_file)
    except TokenFileError as exc:
        _fail(str(exc))
    return None


def _pem(path: str | None) -> bytes | None:
    from proto.transport import read_pem

    try:
        return read_pem(path)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    return None


def client_options(fn: Any) -> Any:
    """--scheduler, --token-file, --tls-ca; the command gets `connect()` -> Client."""

    @functools.wraps(fn)
    def wrapper(*args: Any, address: str, token_file: str | None, tls_ca: str | None,
                **kwargs: Any) -> Any:
        kwargs["connect"] = lambda: Client(address, token=_secret(token_file), tls_ca=_pem(tls_ca))
        return fn(*args, **kwargs)

    for option in (TLS_CA_OPTION, TOKEN_OPTION, SCHEDULER_OPTION):
        wrapper = option(wrapper)
    return wrapper


@cli.command()
@click.option("--listen", default="127.0.0.1:50051", show_default=True,
              help="Address to serve on (port 0 picks a free one).")
@click.option("--state", "state_path", default="tunesched-state/scheduler.db", show_default=True,
              type=click.Path(dir_okay=False), help="SQLite file holding the durable state.")
@click.option("--policy", default="interleaved", show_default=True,
              type=click.Choice(["sequential", "shared", "interleaved", "predictive"]))
@click.option("--lease-ttl", default=30.0, show_default=True,
              help="Seconds a lease lives without its runner's heartbeat.")
@click.option("--runner-timeout", default=15.0, show_default=True,
              help="Seconds without a heartbeat before a runner is declared lost.")
@click.option("--cpu-profile", type=click.Choice(["host", "cores"]), default="host",
              show_default=True, help="What a CPU profile lease owns exclusively.")
@click.option("--jobs-per-host", type=click.IntRange(1, 10000), default=None,
              help="Jobs placed on one host at once (default: one per 4 cores, at least 2, "
              "plus one per GPU).")
@click.option("--max-foreign-load", default=0.25, show_default=True,
              type=click.FloatRange(0.0, 1.0), help="No profile on a host whose CPU is busier "
              "than this fraction with processes no lease explains (1: never hold back).")
@click.option("--pause-for-profile/--no-pause-for-profile", default=True, show_default=True,
              help="A host-exclusive CPU profile pauses (SIGSTOP) the host's other stages "
              "while it runs instead of waiting for them to end.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate: serve TLS (with --tls-key).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--runner-token-file", type=click.Path(dir_okay=False), default=None,
              help="File (0600) with the token runners must present.")
@click.option("--users-file", type=click.Path(dir_okay=False), default=None,
              help='File (0600), JSON {"alice": {"token": "...", "admin": false}}.')
@click.option("--stage-timeout", "stage_timeouts", multiple=True, metavar="STAGE=SECONDS",
              help="Kill a stage after SECONDS (repeatable, e.g. build=600); a timed-out "
              "stage counts as a failed attempt.")
@click.option("--max-model-mb", default=512, show_default=True, type=click.IntRange(1, 2047),
              help="Largest uploaded model in MiB (bigger: RESOURCE_EXHAUSTED). One gRPC "
              "message is at most 8 MiB; clients send models in 1 MiB chunks.")
def scheduler(listen: str, state_path: str, policy: str, lease_ttl: float,
              runner_timeout: float, cpu_profile: str, jobs_per_host: int | None,
              max_foreign_load: float, pause_for_profile: bool,
              tls_cert: str | None,
              tls_key: str | None, runner_token_file: str | None,
              users_file: str | None, stage_timeouts: tuple[str, ...],
              max_model_mb: int) -> None:
    """Run the scheduler daemon until SIGTERM/SIGINT."""
    from scheduler.service.auth import Auth, TokenFileError
    from scheduler.service.daemon import DaemonConfig, parse_stage_timeouts
    from scheduler.service.server import serve

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    if bool(tls_cert) != bool(tls_key):
        _fail("--tls-cert and --tls-key go together: pass both or neither")
    try:
        auth = Auth.from_files(runner_token_file, users_file)
    except TokenFileError as exc:
        _fail(str(exc))
    try:
        timeouts = parse_stage_timeouts(stage_timeouts)
    except ValueError as exc:
        _fail(str(exc))
    tls = (Path(tls_key).read_bytes(), Path(tls_cert).read_bytes()) if tls_cert else None
    config = DaemonConfig(Path(state_path), policy=policy, lease_ttl_s=lease_ttl,
                          runner_timeout_s=runner_timeout, cpu_profile_exclusivity=cpu_profile,
                          foreign_load_threshold=max_foreign_load, jobs_per_host=jobs_per_host,
                          pause_for_profile=pause_for_profile,
                          stage_timeouts_s=timeouts, auth=auth,
                          max_model_bytes=max_model_mb << 20)
    _guard(lambda: serve(config, listen, tls))


def _parse_gpus(text: str) -> list[int] | None:
    from simpletvm.cores import parse_ids

    if text == "auto":
        return None
    if text == "none":
        return []
    return parse_ids(text)


@cli.command()
@SCHEDULER_OPTION
@TOKEN_OPTION
@TLS_CA_OPTION
@click.option("--host-id", default=None, help="Host this runner runs on (default: hostname). "
              "Runners of one host must share one --work-dir.")
@click.option("--cores", default=None, help="Cores to offer, e.g. 0-3 (default: all allowed).")
@click.option("--gpus", default="auto", show_default=True, help="auto, none, or ids like 0,1.")
@click.option("--work-dir", required=True, type=click.Path(file_okay=False),
              help="Where job directories live.")
@click.option("--runner-id", default=None, help="Stable id (default: generated).")
def runner(address: str, token_file: str | None, tls_ca: str | None, host_id: str | None,
           cores: str | None, gpus: str, work_dir: str, runner_id: str | None) -> None:
    """Run a runner agent: register this host's resources and run leased stages."""
    from runner.agent import Agent, RunnerConfig
    from runner.hostinfo import detect
    from simpletvm.cores import parse_ids

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    try:
        host = detect(host_id, parse_ids(cores) if cores else None, _parse_gpus(gpus))
    except ValueError as exc:
        _fail(str(exc))
    config = RunnerConfig(address, host, Path(work_dir), token=_secret(token_file) or "",
                          tls_ca=_pem(tls_ca))
    if runner_id:
        config.runner_id = runner_id
    agent = Agent(config)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    click.echo(f"runner {config.runner_id} on host {host.host_id}: cores {host.cores}, "
               f"gpus {host.gpus or 'none'}, scheduler {address}")
    agent.run(stop)
    if agent.fatal:
        _fail(agent.fatal)


def _shapes(values: tuple[str, ...]) -> dict[str, list[int]] | None:
    shapes = {}
    for value in values:
        name, _, dims = value.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            _fail(f"bad --input-shape {value!r}: use NAME=1,3,224,224")
    return shapes or None


@cli.command()
@click.argument("model")
@client_options
@click.option("--target", default="cpu", show_default=True, help="cpu, cuda, or a JSON dict.")
@click.option("--trials", type=int, required=True, help="Trial budget.")
@click.option("--name", default="", help="Job name (default: the model's).")
@click.option("--priority", default=0, show_default=True)
@click.option("--latency-goal-us", type=float, default=0.0, help="Stop once reached.")
@click.option("--batch-size", default=32, show_default=True, help="Candidates per round.")
@click.option("--input-shape", multiple=True, help="NAME=d0,d1,... for dynamic inputs.")
@click.option("--user", default=lambda: os.environ.get("USER", "default"), show_default="$USER")
@click.option("--verify-top", type=int, default=None,
              help="After the search, time each task's N leading candidates again and keep "
                   "the fastest [default: 6; 0: off].")
@click.option("--verify-passes", type=int, default=None,
              help="Interleaved timing passes of that verification [default: 7].")
def submit(model: str, connect: Any, target: str, trials: int, name: str, priority: int,
           latency_goal_us: float, batch_size: int, input_shape: tuple[str, ...],
           user: str, verify_top: int | None, verify_passes: int | None) -> None:
    """Submit MODEL (a .onnx file or zoo:NAME); prints the job id as the last line."""
    def go() -> None:
        with connect() as client:
            info = client.submit(model, target, trials, name, priority, latency_goal_us,
                                 batch_size, user, _shapes(input_shape),
                                 verify_top=verify_top, verify_passes=verify_passes)
        click.echo(f"submitted {info.name} ({info.model}, {info.trial_budget} trials)")
        click.echo(info.job_id)

    _guard(go)


@cli.command()
@client_options
@click.option("--state", default="", help="Only jobs in this state.")
def jobs(connect: Any, state: str) -> None:
    """List jobs."""
    def go() -> None:
        with connect() as client:
            infos = client.jobs(state)
        for line in job_table_rows(infos):
            click.echo(line)

    _guard(go)


@cli.command()
@click.argument("job_id")
@client_options
def show(job_id: str, connect: Any) -> None:
    """Print a job's state word, then its details."""
    def go() -> None:
        with connect() as client:
            info = client.get(job_id)
        click.echo(info.state)
        for line in job_lines(info):
            click.echo(line)

    _guard(go)


@cli.command()
@click.argument("job_id")
@client_options
def watch(job_id: str, connect: Any) -> None:
    """Follow a job live until it ends; exit 0 if it is done, 1 otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    final: dict[str, Any] = {}

    def go() -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("trials  best {task.fields[best]}  ETA {task.fields[eta]}"))
        with connect() as client, Progress(*columns, transient=False) as bar:
            task = bar.add_task(job_id, total=None, best="-", eta="-")
            for event in client.watch(job_id):
                job = event.job
                eta = "-" if job.eta_s < 0 else f"{job.eta_s:.0f}s"
                stage = f" {job.stage}" if job.stage else ""
                bar.update(task, total=job.trial_budget, completed=job.trials_done,
                           description=f"{job.name} [{job.state}{stage}]",
                           best=us(job.best_latency_us or None), eta=eta)
                final["job"] = job
        job = final.get("job")
        if job is not None:
            click.echo(f"{job.job_id} {job.state}" + (f": {job.error}" if job.error else ""))

    _guard(go)
    job = final.get("job")
    if job is None or job.state != "done":
        sys.exit(1)


@cli.command()
@click.argument("job_id")
@client_options
def cancel(job_id: str, connect: Any) -> None:
    """Cancel a job."""
    def go() -> None:
        with connect() as client:
            info = client.cancel(job_id)
        click.echo(f"{info.job_id} {info.state}")

    _guard(go)


@cli.command()
@click.argument("job_id")
@client_options
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
def result(job_id: str, connect: Any, out_dir: str) -> None:
    """Fetch a done job's records, compiled model and report into a directory."""
    def go() -> None:
        with connect() as client:
            files = client.fetch_result(job_id, Path(out_dir))
        report = Path(out_dir) / "report.json"
        if report.exists():
            print_report(json.loads(report.read_text()))
        click.echo(f"wrote {len(files)} files to {out_dir}")

    _guard(go)


@cli.command()
@client_options
def runners(connect: Any) -> None:
    """List runners, their hosts, resources and leases."""
    def go() -> None:
        with connect() as client:
            rows = client.runners()
        click.echo(f"{'runner':<20} {'host':<14} {'cores':<10} {'gpus':<6} {'up':<4} "
                   f"{'load':<5} leases")
        from simpletvm.cores import format_ids

        for r in rows:
            click.echo(f"{r.runner_id:<20} {r.host_id:<14} {format_ids(list(r.cores)):<10} "
                       f"{format_ids(list(r.gpus)) or '-':<6} {'yes' if r.connected else 'no':<4} "
                       f"{r.foreign_load:<5.2f} {', '.join(r.leases) or '-'}")

    _guard(go)


@cli.command()
@client_options
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False))
def timeline(connect: Any, out_path: str) -> None:
    """Draw the lease timeline (Gantt chart per host resource) as PNG."""
    from client.timeline import plot_timeline

    def go() -> None:
        with connect() as client:
            leases = client.timeline()
            names = {j.job_id: j.name for j in client.jobs()}
        if not leases:
            _fail("no leases yet: submit a job first")
        plot_timeline(leases, Path(out_path), now=time.time(), labels=names)
        click.echo(f"wrote {out_path} ({len(leases)} leases)")

    _guard(go)


@cli.command()
@click.option("-o", "--out", "out_dir", default="demo-out", show_default=True,
              type=click.Path(file_okay=False), help="State, work dirs, results and pictures.")
@click.option("--trials", default=80, show_default=True, help="Trial budget per job.")
@click.option("--policy", default="interleaved", show_default=True,
              type=click.Choice(["sequential", "shared", "interleaved", "predictive"]))
def demo(out_dir: str, trials: int, policy: str) -> None:
    """An embedded daemon and two runners on loopback tune two zoo models at once."""
    from client.demo import run_demo

    _guard(lambda: run_demo(Path(out_dir), trials, policy))



