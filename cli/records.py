"""`tunesched db`: the scheduler's tuning memory (records kept across jobs, per target key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.format import record_lines
from cli.options import connection
from cli.params import TARGET
from simpletvm import tuningdb


@click.group()
def db() -> None:
    """The records the scheduler keeps across jobs: stats, export, import."""


@db.command()
@connection
def stats(connect: Any) -> None:
    """Records, workloads and trials per target key (target @ device model)."""
    with connect() as client:
        click.echo("\n".join(record_lines(client.record_stats())))


@db.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@connection
@click.option("--target", type=TARGET, default=None,
              help="Only records of this target (default: every target).")
def export(out_dir: str, connect: Any, target: dict[str, Any] | None) -> None:
    """Write the records as a MetaSchedule JSON database (plain TVM's JSONDatabase opens it)."""
    with connect() as client:
        files = client.export_records(Path(out_dir), json.dumps(target) if target else "")
    click.echo(f"wrote {len(files)} files to {out_dir}")


@db.command(name="import")
@click.argument("db_dir", type=click.Path(exists=True, file_okay=False))
@connection
@click.option("--target", type=TARGET, required=True,
              help="The target the records were tuned for.")
@click.option("--device", default=None, help="The CPU or GPU model that timed them "
              "(default: this machine's).")
def import_(db_dir: str, connect: Any, target: dict[str, Any], device: str | None) -> None:
    """Add a MetaSchedule JSON database made elsewhere (admins only under access control).
    Imported records are marked as such; a job re-times them before keeping one."""
    device = device or tuningdb.device_model(target["kind"], tuningdb.cpu_model(),
                                             tuningdb.gpu_models())
    with connect() as client:
        reply = client.import_records(Path(db_dir), json.dumps(target), device)
    click.echo(f"imported {reply.records} records of {reply.workloads} workloads under "
               f"{reply.target_key}")
