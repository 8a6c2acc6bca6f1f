"""tunesched command line. Every command prints one-line errors and exits non-zero on failure."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from client.format import report_lines


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """tunesched: a load-aware scheduler for TVM autotuning jobs."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("sweep_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out_dir", default="sweep-out", show_default=True,
              type=click.Path(file_okay=False))
def sweep(sweep_file: str, out_dir: str) -> None:
    """Run a benchmark sweep (model x target x trials x batch) from a TOML file."""
    from rich.progress import Progress

    from simpletvm import sweep as sweeps

    def go() -> None:
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

    _guard(go)


@cli.command()
@click.argument("stage")
@click.argument("job_dir", type=click.Path(file_okay=False))
@click.option("--round", "round_", default=0, show_default=True)
@click.option("--cores", default=None, help="CPU ids to pin to, e.g. 0-3.")
@click.option("--gpus", default=None, help="GPU ids to expose, e.g. 0.")
def stage(stage: str, job_dir: str, round_: int, cores: str | None, gpus: str | None) -> None:
    """Run one tuning stage in this process (what a runner's child process does)."""
    from simpletvm.stages.__main__ import main as stage_main

    argv = [stage, job_dir, "--round", str(round_)]
    argv += ["--cores", cores] if cores else []
    argv += ["--gpus", gpus] if gpus else []
    sys.exit(stage_main(argv))


def _guard(fn: Any) -> None:
    """Run `fn`, turning our errors into one line on stderr and exit code 1."""
    from client.api import ClientError
    from simpletvm.errors import SimpleTVMError

    try:
        fn()
    except (SimpleTVMError, ClientError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def print_report(report: dict[str, Any]) -> None:
    for line in report_lines(report):
        click.echo(line)


def main() -> None:
    cli(prog_name="tunesched")


__all__ = ["cli", "main", "print_report"]


from client import commands  # noqa: E402,F401  (registers the service commands on `cli`)
