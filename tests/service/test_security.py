"""Access control over real gRPC: tokens, users and admins, runner tokens, TLS. No secret leaks."""

from __future__ import annotations

import json
import logging
import threading

import grpc
import pytest

from client.api import Client, ClientError
from runner.agent import Agent, RunnerConfig
from runner.hostinfo import HostInfo
from scheduler.service.auth import Auth, TokenFileError, read_secret_file
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from scheduler.testing import wait_for
from simpletvm.fake_executor import SleepExecutor
from simpletvm.spec import JobSpec
from tests.tls import self_signed

MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8)

TOKENS = {"alice": "tok-alice-7f3a", "bob": "tok-bob-91c2", "root": "tok-root-55d0"}
RUNNER_TOKEN = "tok-runner-e81b"


def _secret(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def secured(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    users = {name: {"token": tok, "admin": name == "root"} for name, tok in TOKENS.items()}
    auth = Auth.from_files(str(_secret(tmp_path / "runner.token", RUNNER_TOKEN)),
                           str(_secret(tmp_path / "users.json", json.dumps(users))))
    svc = Service(DaemonConfig(tmp_path / "s.db", auth=auth), "127.0.0.1:0").start()
    yield svc
    svc.stop()
    logged = caplog.text
    for secret in [*TOKENS.values(), RUNNER_TOKEN]:
        assert secret not in logged  # never logged


def _as(svc, user: str | None) -> Client:
    return Client(svc.address, timeout=10, token=TOKENS.get(user or ""))


def _denied(fn) -> grpc.StatusCode:
    with pytest.raises(ClientError) as err:
        fn()
    assert "\n" not in str(err.value) and "tok-" not in str(err.value)
    return err.value.code


def test_token_files_must_be_owner_only(tmp_path) -> None:
    loose = _secret(tmp_path / "t", "secret", 0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_secret_file(loose)
    with pytest.raises(TokenFileError, match="empty"):
        read_secret_file(_secret(tmp_path / "e", "  \n"))
    assert read_secret_file(_secret(tmp_path / "ok", "secret\n")) == "secret"


def test_clients_need_a_token_and_see_only_their_jobs(secured) -> None:
    for token_user in (None, "mallory"):
        with _as(secured, token_user) as anon:
            assert _denied(anon.jobs) == grpc.StatusCode.UNAUTHENTICATED
            assert _denied(lambda a=anon: a.submit(MLP)) == \
                grpc.StatusCode.UNAUTHENTICATED
    with _as(secured, "alice") as alice, _as(secured, "bob") as bob, \
            _as(secured, "root") as root:
        job = alice.submit(MLP.with_(user="not-alice")).job_id
        assert alice.get(job).user == "alice"  # the token decides who you are
        bobs = bob.submit(MLP).job_id
        for call in (bob.get, bob.cancel, lambda j: list(bob.watch(j))):
            assert _denied(lambda c=call: c(job)) == grpc.StatusCode.PERMISSION_DENIED
        assert [j.job_id for j in bob.jobs()] == [bobs]
        assert {j.job_id for j in root.jobs()} == {job, bobs}
        assert root.cancel(job).state == "cancelled"
        assert alice.get(job).state == "cancelled"


def test_runners_need_the_runner_token(secured, tmp_path) -> None:
    host = HostInfo("h", [0], [], 0, ["llvm"])

    def start(token: str) -> tuple[Agent, threading.Thread]:
        agent = Agent(RunnerConfig(secured.address, host, tmp_path / "w", f"r-{token[:6]}",
                                   token=token), executor=SleepExecutor())
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        return agent, thread

    bad, thread = start("wrong-token")
    thread.join(timeout=20)
    assert not thread.is_alive() and "runner token" in bad.fatal
    with _as(secured, "root") as root:
        assert root.runners() == []
        good, _ = start(RUNNER_TOKEN)
        try:
            wait_for(lambda: len(root.runners()) == 1, 20, "the runner with the token")
        finally:
            good.stop()
    assert RUNNER_TOKEN not in repr(good.config)


def _self_signed(tmp_path):
    return self_signed()


def test_tls_serves_trusting_clients_and_refuses_plaintext(tmp_path) -> None:
    key, cert = _self_signed(tmp_path)
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0", tls=(key, cert)).start()
    try:
        with Client(svc.address, timeout=10, tls_ca=cert) as client:
            job = client.submit(MLP).job_id
            assert client.get(job).state == "queued"
        with Client(svc.address, timeout=3) as plain:
            assert _denied(plain.jobs) == grpc.StatusCode.UNAVAILABLE
        _, other = _self_signed(tmp_path)
        with Client(svc.address, timeout=3, tls_ca=other) as wrong_ca:
            assert _denied(wrong_ca.jobs) == grpc.StatusCode.UNAVAILABLE
    finally:
        svc.stop()


def test_only_admins_import_records(secured, tmp_path) -> None:
    """Imported records reach every user's jobs: under access control only admins add them."""
    db = tmp_path / "db"
    db.mkdir()
    (db / "database_workload.json").write_text('["w", "ir"]\n')
    record = [0, [[["fake", 1]], [1e-5], {"kind": "llvm", "num-cores": 2}, []]]
    (db / "database_tuning_record.json").write_text(json.dumps(record) + "\n")
    target = json.dumps({"kind": "llvm", "num-cores": 2})
    with _as(secured, "alice") as alice, _as(secured, "root") as root:
        assert _denied(lambda: alice.import_records(db, target, "a CPU")) == \
            grpc.StatusCode.PERMISSION_DENIED
        assert alice.record_stats() == []
        assert root.import_records(db, target, "a CPU").records == 1
        assert [k.imported for k in alice.record_stats()] == [1]  # shared: everyone sees it
