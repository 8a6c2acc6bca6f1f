"""Options several commands share: where the scheduler is, and the caller's credentials."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from client.api import DEFAULT_ADDRESS, Client
from proto.transport import read_pem
from scheduler.service.auth import read_secret_file

SCHEDULER = click.option(
    "--scheduler", "address", envvar="TUNESCHED_SCHEDULER", default=DEFAULT_ADDRESS,
    show_default=True, help="Scheduler address (env TUNESCHED_SCHEDULER).")
TOKEN_FILE = click.option(
    "--token-file", envvar="TUNESCHED_TOKEN_FILE", default=None,
    type=click.Path(dir_okay=False), help="File (mode 0600) holding your token "
    "(env TUNESCHED_TOKEN_FILE).")
TLS_CA = click.option(
    "--tls-ca", envvar="TUNESCHED_TLS_CA", default=None, type=click.Path(dir_okay=False),
    help="PEM certificate to trust for TLS (env TUNESCHED_TLS_CA).")


def secret(token_file: str | None) -> str | None:
    """The token in `token_file` (TokenFileError, one line, unless it is owner-only)."""
    return read_secret_file(token_file) if token_file else None


def pem(path: str | None) -> bytes | None:
    try:
        return read_pem(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None


def connection(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--scheduler, --token-file, --tls-ca; the command gets `connect()` -> Client."""

    @functools.wraps(fn)
    def wrapper(*args: Any, address: str, token_file: str | None, tls_ca: str | None,
                **kwargs: Any) -> Any:
        kwargs["connect"] = lambda: Client(address, token=secret(token_file), tls_ca=pem(tls_ca))
        return fn(*args, **kwargs)

    for option in (TLS_CA, TOKEN_FILE, SCHEDULER):
        wrapper = option(wrapper)
    return wrapper
