"""The tools: `sweep` (benchmark sweeps), `stage` (one tuning stage in this process), `demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.params import IDS
from scheduler.core import SchedulerConfig, available_policies
from simpletvm.stages import STAGES


@click.command()
@click.argument("sweep_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out_dir", default="sweep-out", show_default=True,
              type=click.Path(file_okay=False))
def sweep(sweep_file: str, out_dir: str) -> None:
    """Run a benchmark sweep (model x target x trials x batch) from a TOML file."""
    from rich.progress import Progress

    from simpletvm import sweep as sweeps

    plan = sweeps.load(sweep_file)
    with Progress() as bar:
        task = bar.add_task(f"sweep {plan.name}", total=len(plan.points))

        def on_point(i: int, point: Any, result: Any) -> None:
            if result is None:
                bar.update(task, description=f"{point.model} {point.trials} trials "
                                             f"b{point.batch}")
            else:
                bar.advance(task)
                if result.error:
                    bar.console.print(f"[red]{point}: {result.error}")

        results = sweeps.run(plan, out_dir, on_point)
    for r in results:
        click.echo(f"{r.model:<16} {r.target[:24]:<24} trials={r.trials:<5} b={r.batch:<3} "
                   f"untuned={r.untuned_us:9.1f}us tuned={r.tuned_us:9.1f}us "
                   f"speedup={r.speedup:5.1f}x wall={r.tuning_wall_s:6.1f}s {r.error}")
    click.echo(f"wrote {out_dir}/results.csv, results.json, sweep.png")


@click.command()
@click.argument("stage", type=click.Choice(STAGES))
@click.argument("job_dir", type=click.Path(file_okay=False))
@click.option("--round", "round_", default=0, show_default=True)
@click.option("--cores", type=IDS, default=None, help="CPU ids to pin to, e.g. 0-3.")
@click.option("--gpus", type=IDS, default=None, help="GPU ids to expose, e.g. 0.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the outcome JSON here instead of stdout.")
def stage(stage: str, job_dir: str, round_: int, cores: list[int] | None,
          gpus: list[int] | None, out: str | None) -> None:
    """Run one tuning stage in this process, pinned to CORES and GPUS, and print its outcome
    as JSON (what a runner's stage process does); exit 1 if it failed."""
    from simpletvm.executor import StageRequest, execute, pin

    request = StageRequest(stage, job_dir, round_, cores, gpus)
    pin(request.cores, request.gpus)
    outcome = execute(request)
    text = json.dumps(outcome.to_dict(), indent=1)
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text)
    if not outcome.ok:
        click.echo(outcome.error, err=True)
        sys.exit(1)


@click.command()
@click.option("-o", "--out", "out_dir", default="demo-out", show_default=True,
              type=click.Path(file_okay=False), help="State, work dirs, results and pictures.")
@click.option("--trials", default=80, show_default=True, help="Trial budget per job.")
@click.option("--policy", default=SchedulerConfig().policy, show_default=True,
              type=click.Choice(available_policies()))
def demo(out_dir: str, trials: int, policy: str) -> None:
    """An embedded daemon and two runners on loopback tune two zoo models at once."""
    from cli.demo import run_demo

    run_demo(Path(out_dir), trials, policy)


COMMANDS = (sweep, stage, demo)
