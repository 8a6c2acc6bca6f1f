"""The daemon's client API over real gRPC on loopback: validation, status codes, durability."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import Client, ClientError
from scheduler.service.daemon import DaemonConfig
from scheduler.service.server import Service
from simpletvm import zoo


@pytest.fixture
def service(tmp_path):
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    yield svc
    svc.stop()


@pytest.fixture
def client(service):
    with Client(service.address, timeout=10) as c:
        yield c


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ClientError) as err:
        fn()
    assert "\n" not in str(err.value)
    return err.value.code, str(err.value)


def test_health_is_serving(service) -> None:
    with grpc.insecure_channel(service.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "tunesched.v1.Scheduler", "tunesched.v1.RunnerChannel"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"trials": 0}, "trials must be between"),
    ({"trials": -5}, "trials must be between"),
    ({"trials": 10**9}, "trials must be between"),
    ({"target": "tpu"}, "unknown target"),
    ({"target": '{"kind": "llvm", "num-cores": 0}'}, "num-cores"),
    ({"batch_size": 100_000}, "batch size"),
    ({"model": "zoo:vgg"}, "unknown zoo model"),
    ({"latency_goal_us": -1.0}, "latency goal"),
    ({"verify_top": -1}, "verify top must be 0 (verification off) or between 2 and 64"),
    ({"verify_top": 1}, "verify top must be 0"),  # one candidate: nothing to choose from
    ({"verify_top": 65}, "or between 2 and 64 candidates per task, got 65"),
    ({"verify_passes": 0}, "verify passes must be between 1 and 64"),
])
def test_bad_submissions_are_invalid_argument(client, kwargs, needle) -> None:
    args = {"model": "zoo:mlp", "target": "cpu", "trials": 8} | kwargs
    code, message = _code(lambda: client.submit(**args))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in message
    assert client.jobs() == []


def test_malformed_onnx_upload_is_rejected(client, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(zoo.build("mlp").SerializeToString()[:200])
    code, message = _code(lambda: client.submit(str(bad), "cpu", 8))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid ONNX model" in message
    code, message = _code(lambda: client.submit(str(tmp_path / "missing.onnx"), "cpu", 8))
    assert "cannot read model" in message


def test_unknown_job_ids_are_not_found(client) -> None:
    for call in (client.get, client.cancel):
        code, message = _code(lambda call=call: call("job-nope"))
        assert code == grpc.StatusCode.NOT_FOUND and "job-nope" in message
    code, _ = _code(lambda: list(client.watch("job-nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: client.fetch_result("job-nope", __import__("pathlib").Path("x")))
    assert code == grpc.StatusCode.NOT_FOUND


def test_submit_is_idempotent_and_results_wait_for_done(client, tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(zoo.build("mlp").SerializeToString())
    first = client.submit(str(model), "cpu", 16, name="a", request_id="req-1")
    again = client.submit(str(model), "cpu", 16, name="a", request_id="req-1")
    assert first.job_id == again.job_id and len(client.jobs()) == 1
    assert first.state == "queued" and first.trial_budget == 16
    code, message = _code(lambda: client.fetch_result(first.job_id, tmp_path / "out"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "queued" in message
    assert client.cancel(first.job_id).state == "cancelled"


def test_state_survives_a_restart(tmp_path) -> None:
    config = DaemonConfig(tmp_path / "s.db")
    svc = Service(config, "127.0.0.1:0").start()
    with Client(svc.address) as c:
        ids = [c.submit("zoo:mlp", "cpu", 8).job_id, c.submit("zoo:convnet", "cpu", 8).job_id]
        c.cancel(ids[1])
    svc.stop()
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    try:
        with Client(svc.address) as c:
            assert {j.job_id: j.state for j in c.jobs()} == {ids[0]: "queued",
                                                              ids[1]: "cancelled"}
        assert svc.daemon.core.jobs[ids[0]].state == "queued"
    finally:
        svc.stop()


def test_verification_settings_reach_the_job_and_survive_a_restart(tmp_path) -> None:
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    with Client(svc.address) as c:
        ids = [c.submit("zoo:mlp", "cpu", 8).job_id,
               c.submit("zoo:mlp", "cpu", 8, verify_top=0).job_id,
               c.submit("zoo:mlp", "cpu", 8, verify_top=3, verify_passes=5).job_id]
    svc.stop()
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    try:
        specs = [svc.daemon.get(i).job_spec() for i in ids]  # what job.json will hold
        assert [(s["verify_top"], s["verify_passes"]) for s in specs] == [(6, 7), (0, 7), (3, 5)]
    finally:
        svc.stop()


def test_unreachable_scheduler_is_one_clear_line() -> None:
    with Client("127.0.0.1:9", timeout=2) as c:
        code, message = _code(c.jobs)
    assert code == grpc.StatusCode.UNAVAILABLE and "tunesched scheduler" in message


def test_an_llvm_profile_asks_for_exactly_the_targets_cores() -> None:
    from scheduler.service.daemon import profile_demand

    assert profile_demand({"kind": "llvm", "num-cores": 1}) == {
        "profile": {"min_cores": 1, "max_cores": 1}}
    assert profile_demand({"kind": "llvm"}) == {}
    assert profile_demand({"kind": "cuda", "num-cores": 4}) == {}
