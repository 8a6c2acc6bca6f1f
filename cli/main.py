"""The `tunesched` command group: every command is added here, and every error ends here in one
line on stderr (exit 1; usage errors exit 2, as click's do; interrupted: 130)."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from cli import jobs, records, service, tools
from client.api import ClientError
from scheduler.service.auth import TokenFileError
from simpletvm.errors import SimpleTVMError

# what a command may raise on purpose: its message is the whole story
EXPECTED = (ClientError, SimpleTVMError, TokenFileError, OSError)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class Tunesched(click.Group):
    """A click group whose errors, any of them, end in one line."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name or "tunesched", complete_var,
                                standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors (2) and ours raised as such (1)
            fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            fail("interrupted", 130)
        except EXPECTED as exc:
            fail(str(exc) or type(exc).__name__)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=Tunesched, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """tunesched: a load-aware scheduler for TVM autotuning jobs."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for command in (service.scheduler, service.runner, *jobs.COMMANDS, records.db,
                *tools.COMMANDS):
    cli.add_command(command)


def main() -> None:
    """The console script: `tunesched` with the process's arguments."""
    cli.main()
