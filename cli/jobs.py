"""The client verbs: submit, jobs, show, watch, cancel, result, runners, timeline."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from cli.format import job_lines, job_table_rows, report_lines, runner_lines, us
from cli.options import connection
from cli.params import INPUT_SHAPE, JOB_TARGET
from client.api import read_model
from simpletvm.spec import JobSpec

SPEC = JobSpec()  # the spec's defaults are the flags' defaults


def spec_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """An option per JobSpec field that names a "flag" in its metadata: its help text, the
    spec's default, the default's type (or the metadata's "type", or a choice of its
    "choices")."""
    for f in reversed(fields(JobSpec)):
        if "flag" in f.metadata:
            default = getattr(SPEC, f.name)
            flag = f"--{f.name.replace('_', '-')}"
            if isinstance(default, bool):
                command = click.option(flag, f.name, is_flag=True, default=default,
                                       help=f.metadata["flag"])(command)
                continue
            kind = (click.Choice(f.metadata["choices"]) if "choices" in f.metadata
                    else f.metadata.get("type", type(default)))
            command = click.option(flag, f.name, default=default, type=kind,
                                   show_default=default not in ("", None),
                                   help=f.metadata["flag"])(command)
    return command


@click.command()
@click.argument("model")
@connection
@click.option("--target", type=JOB_TARGET, default="cpu", show_default=True,
              help='cpu (every core of the runner that takes the job; an llvm dict without '
                   'num-cores too), cuda, or a JSON dict such as {"kind": "llvm", '
                   '"num-cores": 2}.')
@click.option("--trials", type=click.IntRange(min=0), required=True,
              help="Trial budget (0: compile only, no tuning).")
@click.option("--input-shape", "input_shapes", type=INPUT_SHAPE, multiple=True,
              help="NAME=d0,d1,... for dynamic inputs (repeatable).")
@click.option("--user", default=lambda: os.environ.get("USER", SPEC.user), show_default="$USER")
@spec_options
def submit(model: str, connect: Any, input_shapes: tuple[tuple[str, list[int]], ...],
           **fields: Any) -> None:
    """Submit MODEL (a .onnx file or zoo:NAME); prints the job id as the last line."""
    name, data = read_model(model)
    spec = JobSpec(model=name, input_shapes=dict(input_shapes) or None, **fields)
    with connect() as client:
        info = client.submit(spec, data)
    click.echo(f"submitted {info.name} ({info.model}, {info.trial_budget} trials)")
    if info.waiting:
        click.echo(f"warning: no registered runner can run this job ({info.waiting}); it waits "
                   "until one registers, or cancel it", err=True)
    click.echo(info.job_id)


@click.command()
@connection
@click.option("--state", default="", help="Only jobs in this state.")
def jobs(connect: Any, state: str) -> None:
    """List jobs."""
    with connect() as client:
        _print(job_table_rows(client.jobs(state)))


@click.command()
@click.argument("job_id")
@connection
def show(job_id: str, connect: Any) -> None:
    """Print a job's state word, then its details."""
    with connect() as client:
        info = client.get(job_id)
    _print([info.state, *job_lines(info)])


@click.command()
@click.argument("job_id")
@connection
def watch(job_id: str, connect: Any) -> None:
    """Follow a job live until it ends; exit 0 if it is done, 1 otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    job = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("trials  best {task.fields[best]}  ETA {task.fields[eta]}"))
    waits = ""
    with connect() as client, Progress(*columns, transient=False) as bar:
        task = bar.add_task(job_id, total=None, best="-", eta="-")
        for event in client.watch(job_id):
            job = event.job
            if job.waiting != waits:  # no runner can run it (or one can again)
                waits = job.waiting
                bar.console.print(f"{job.job_id} waits: {waits}" if waits
                                  else f"{job.job_id}: a runner that can run it is here",
                                  soft_wrap=True, highlight=False, markup=False)
            eta = "-" if job.eta_s < 0 else f"{job.eta_s:.0f}s"
            stage = f" {job.stage}" if job.stage else ""
            bar.update(task, total=job.trial_budget, completed=job.trials_done,
                       description=f"{job.name} [{job.state}{stage}]",
                       best=us(job.best_latency_us or None), eta=eta)
    if job is not None:
        click.echo(f"{job.job_id} {job.state}" + (f": {job.error}" if job.error else ""))
    if job is None or job.state != "done":
        sys.exit(1)


@click.command()
@click.argument("job_id")
@connection
def cancel(job_id: str, connect: Any) -> None:
    """Cancel a job."""
    with connect() as client:
        info = client.cancel(job_id)
    click.echo(f"{info.job_id} {info.state}")


@click.command()
@click.argument("job_id")
@connection
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
def result(job_id: str, connect: Any, out_dir: str) -> None:
    """Fetch a done job's records, compiled model and report into a directory."""
    with connect() as client:
        files = client.fetch_result(job_id, Path(out_dir))
    report = Path(out_dir) / "report.json"
    if report.exists():
        _print(report_lines(json.loads(report.read_text())))
    click.echo(f"wrote {len(files)} files to {out_dir}")


@click.command()
@connection
def runners(connect: Any) -> None:
    """List runners, their hosts, resources and leases."""
    with connect() as client:
        _print(runner_lines(client.runners()))


@click.command()
@connection
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False))
def timeline(connect: Any, out_path: str) -> None:
    """Draw the lease timeline (Gantt chart per host resource) as PNG."""
    from client.timeline import plot_timeline

    with connect() as client:
        leases = client.timeline()
        names = {j.job_id: j.name for j in client.jobs()}
    if not leases:
        raise click.ClickException("no leases yet: submit a job first")
    plot_timeline(leases, Path(out_path), now=time.time(), labels=names)
    click.echo(f"wrote {out_path} ({len(leases)} leases)")


def _print(lines: list[str]) -> None:
    click.echo("\n".join(lines))


COMMANDS = (submit, jobs, show, watch, cancel, result, runners, timeline)
