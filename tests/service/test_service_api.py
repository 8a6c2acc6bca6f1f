"""The daemon's client API over real gRPC on loopback: validation, status codes, durability."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import Client, ClientError, read_model
from proto import tunesched_pb2 as pb
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from simpletvm import zoo
from simpletvm.spec import JobSpec, SpecError

MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8)


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


BAD = [
    ({"trials": -5}, "trials must be between"),
    ({"trials": 10**9}, "trials must be between"),
    ({"target_json": "tpu"}, "unknown target"),
    ({"target_json": '{"kind": "llvm", "num-cores": 0}'}, "num-cores"),
    ({"batch_size": 100_000}, "batch size"),
    ({"model": "zoo:vgg"}, "unknown zoo model"),
    ({"latency_goal_us": -1.0}, "latency goal"),
    ({"verify_top": -1}, "verify top must be 0 (verification off) or between 2 and 64"),
    ({"verify_top": 1}, "verify top must be 0"),  # one candidate: nothing to choose from
    ({"verify_top": 65}, "or between 2 and 64 candidates per task, got 65"),
    ({"verify_passes": 0}, "verify passes must be between 1 and 64"),
    ({"input_shapes_json": '{"x": [1, 2, 3]}'}, "has rank 3, but the model's input has rank 2"),
    ({"replay_dir": "relative/dir"}, "must be an absolute path"),
]


@pytest.mark.parametrize(("fields", "needle"), BAD)
def test_bad_submissions_are_invalid_argument(client, fields, needle) -> None:
    """What any gRPC client sends is checked by the daemon (INVALID_ARGUMENT, one line)."""
    wire = pb.JobSpec(**({"model": "zoo:mlp", "target_json": "cpu", "trials": 8} | fields))
    with pytest.raises(grpc.RpcError) as err:
        client.stub.SubmitJob(iter([pb.SubmitJobRequest(spec=wire)]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details() and "\n" not in err.value.details()
    assert client.jobs() == []


@pytest.mark.parametrize(("fields", "needle"), BAD)
def test_the_spec_refuses_the_same_with_the_same_words(fields, needle) -> None:
    """The CLI and the client build the same JobSpec, so they fail before any RPC."""
    from proto import jobspec

    wire = pb.JobSpec(**({"model": "zoo:mlp", "target_json": "cpu", "trials": 8} | fields))
    with pytest.raises(SpecError, match=None) as err:
        jobspec.from_pb(wire)
    assert needle in str(err.value)


def test_malformed_onnx_upload_is_rejected(client, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(zoo.build("mlp").SerializeToString()[:200])
    name, data = read_model(str(bad))
    code, message = _code(lambda: client.submit(MLP.with_(model=name), data))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid ONNX model" in message
    with pytest.raises(ClientError, match="cannot read model"):
        read_model(str(tmp_path / "missing.onnx"))


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
    spec = MLP.with_(model="m.onnx", trials=16, name="a")
    first = client.submit(spec, model.read_bytes(), request_id="req-1")
    again = client.submit(spec, model.read_bytes(), request_id="req-1")
    assert first.job_id == again.job_id and len(client.jobs()) == 1
    assert first.state == "queued" and first.trial_budget == 16
    code, message = _code(lambda: client.fetch_result(first.job_id, tmp_path / "out"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "queued" in message
    assert client.cancel(first.job_id).state == "cancelled"


def test_state_survives_a_restart(tmp_path) -> None:
    config = DaemonConfig(tmp_path / "s.db")
    svc = Service(config, "127.0.0.1:0").start()
    with Client(svc.address) as c:
        ids = [c.submit(MLP).job_id, c.submit(MLP.with_(model="zoo:convnet")).job_id]
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
        ids = [c.submit(MLP).job_id,
               c.submit(MLP.with_(verify_top=0)).job_id,
               c.submit(MLP.with_(verify_top=3, verify_passes=5)).job_id]
    svc.stop()
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    try:
        specs = [svc.daemon.get(i).spec.to_dict() for i in ids]  # what job.json will hold
        assert [(s["verify_top"], s["verify_passes"]) for s in specs] == [(6, 7), (0, 7), (3, 5)]
    finally:
        svc.stop()


def test_unreachable_scheduler_is_one_clear_line() -> None:
    with Client("127.0.0.1:9", timeout=2) as c:
        code, message = _code(c.jobs)
    assert code == grpc.StatusCode.UNAVAILABLE and "tunesched scheduler" in message


def test_an_llvm_profile_asks_for_exactly_the_targets_cores() -> None:
    from scheduler.core.demands import job_demands

    def profile(target: dict) -> tuple[int, int]:
        demand = job_demands(JobSpec(target=target), "host")["profile"]
        return demand.min_cores, demand.max_cores

    assert profile({"kind": "llvm", "num-cores": 1}) == (1, 1)
    assert profile({"kind": "llvm"}) == (4, 4)  # no num-cores: the default profile demand
    assert profile({"kind": "cuda", "num-cores": 4}) == (1, 1)  # one core drives the GPU


def test_a_zero_trial_job_is_compile_only(client) -> None:
    info = client.submit(MLP.with_(trials=0))
    assert info.state == "queued" and info.trial_budget == 0


def test_the_client_retries_a_scheduler_that_is_not_up_yet(tmp_path) -> None:
    """The channel's retry policy: a call that finds no scheduler (its first connection is
    dropped) is retried with backoff and answered once the scheduler is up."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer: dict[str, object] = {}

    def call() -> None:
        try:
            with Client(f"127.0.0.1:{port}", timeout=20) as c:
                answer["jobs"] = c.jobs()
        except ClientError as exc:
            answer["error"] = str(exc)

    caller = threading.Thread(target=call)
    caller.start()
    connection, _ = listener.accept()  # the client's first attempt, which finds no gRPC
    connection.close()
    listener.close()
    svc = Service(DaemonConfig(tmp_path / "s.db"), f"127.0.0.1:{port}").start()
    try:
        caller.join(timeout=30)
        assert answer == {"jobs": []}
    finally:
        svc.stop()
