"""Access control: runner tokens, per-user client tokens, admins. Tokens are never logged.

Token files hold one secret and must be readable by their owner only (mode 0600). A users file
is JSON: {"alice": {"token": "...", "admin": false}, ...}, also 0600. With neither configured
the daemon is open (a single-user box on loopback: what the demo and the tests use).
"""

from __future__ import annotations

import hmac
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.service.errors import PermissionDenied, Unauthenticated

METADATA_KEY = "authorization"


class TokenFileError(Exception):
    """A token or users file is missing, malformed or readable by others."""


def read_secret_file(path: str | Path) -> str:
    """The file's content, stripped; TokenFileError unless it is owner-only (0600)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {p}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenFileError(f"token file {p} is readable by others: run chmod 600 {p}")
    text = p.read_text().strip()
    if not text:
        raise TokenFileError(f"token file {p} is empty: put the token on its first line")
    return text


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user name, and whether they may act on every job."""

    name: str
    admin: bool = False


OPEN = Caller("default", admin=True)


@dataclass
class Auth:
    """The daemon's access rules. Empty token sets mean that side is open."""

    runner_tokens: frozenset[str] = frozenset()
    users: dict[str, Caller] = field(default_factory=dict)  # token -> caller

    @classmethod
    def from_files(cls, runner_token_file: str | None, users_file: str | None) -> Auth:
        runner_tokens = frozenset({read_secret_file(runner_token_file)}) \
            if runner_token_file else frozenset()
        users: dict[str, Caller] = {}
        if users_file:
            try:
                data: Any = json.loads(read_secret_file(users_file))
                for name, entry in data.items():
                    users[str(entry["token"])] = Caller(str(name), bool(entry.get("admin")))
            except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
                raise TokenFileError(f"users file {users_file} must be JSON like "
                                     '{"alice": {"token": "...", "admin": false}}') from exc
        return cls(runner_tokens, users)

    @property
    def clients_open(self) -> bool:
        return not self.users

    def client(self, metadata: Any) -> Caller:
        """The caller behind a client RPC's metadata; Unauthenticated without a valid token."""
        if self.clients_open:
            return OPEN
        token = bearer(metadata)
        for known, caller in self.users.items():
            if token and hmac.compare_digest(known, token):
                return caller
        raise Unauthenticated("missing or unknown client token: pass --token-file with the "
                              "token the scheduler's admin gave you")

    def runner(self, metadata: Any) -> None:
        """Unauthenticated unless the runner presented a valid runner token (when required)."""
        if not self.runner_tokens:
            return
        token = bearer(metadata)
        if not token or not any(hmac.compare_digest(t, token) for t in self.runner_tokens):
            raise Unauthenticated("missing or wrong runner token: start the runner with "
                                  "--token-file pointing at the scheduler's runner token")


def bearer(metadata: Any) -> str:
    """The bearer token in gRPC invocation metadata, or ""."""
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):]
    return ""


def check_owner(caller: Caller, owner: str, job_id: str) -> None:
    """PermissionDenied unless the caller owns the job or is an admin."""
    if not caller.admin and caller.name != owner:
        raise PermissionDenied(f"job {job_id} belongs to another user")
