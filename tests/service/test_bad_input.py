"""Bad input over real gRPC: oversized messages, wrong shapes, garbage on the port, and
property-based fuzzing of every request message the daemon accepts. Each must end in one line
with a precise status code (never UNKNOWN or INTERNAL) and leave the daemon and its jobs as
they were."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import onnx
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.api import Client, ClientError
from proto import tunesched_pb2 as pb
from proto import tunesched_pb2_grpc as pb_grpc
from proto.transport import MAX_MESSAGE_BYTES, chunks, open_channel
from scheduler.core import SchedulerConfig
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from simpletvm import zoo
from simpletvm.spec import JobSpec, SpecError

from .conftest import cli, health, start_daemon

MLP = zoo.build("mlp").SerializeToString()
SPEC = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=8)
VALID = {"model": "zoo:mlp", "target_json": "cpu", "trials": 8}  # a raw spec the daemon takes
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
           grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE}
MODEL_LIMIT = 1 << 20  # the daemons here take models up to 1 MiB


class ErrorLog(logging.Handler):
    """Collects ERROR records of the daemon's loggers: a swallowed exception is a bug too."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        out = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}".strip() for r in self.records]
        self.records.clear()
        return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One in-process daemon for the module, an anchor job nobody touches, a log watch."""
    tmp = tmp_path_factory.mktemp("bad-input")
    errors = ErrorLog()
    logging.getLogger("scheduler").addHandler(errors)
    # fuzzed heartbeats report any foreign load; a threshold of 1 keeps that from holding back
    # the profile a later live-lease fuzz waits for (a 10 s deadline per example otherwise)
    svc = Service(DaemonConfig(tmp / "s.db", max_model_bytes=MODEL_LIMIT,
                               core=SchedulerConfig(foreign_load_threshold=1.0)),
                  "127.0.0.1:0").start()
    client = Client(svc.address, timeout=10)
    anchor = client.submit(JobSpec(model="zoo:convnet", target={"kind": "cuda"}, trials=64,
                                   name="anchor", priority=3))
    victims = [client.submit(SPEC.with_(name=f"victim{i}")).job_id for i in range(3)]
    try:
        yield {"service": svc, "client": client, "anchor": anchor, "victims": victims,
               "errors": errors, "tmp": tmp}
    finally:
        client.close()
        svc.stop()
        logging.getLogger("scheduler").removeHandler(errors)


def assert_healthy(env: dict[str, Any]) -> None:
    """The daemon answers health checks and lists jobs; the anchor job is as submitted."""
    svc, client, anchor = env["service"], env["client"], env["anchor"]
    assert health(svc.address, "tunesched.v1.Scheduler") == "SERVING"
    assert anchor.job_id in {j.job_id for j in client.jobs()}
    now = client.get(anchor.job_id)
    assert (now.name, now.model, now.trial_budget, now.priority, now.user) == \
        (anchor.name, anchor.model, anchor.trial_budget, anchor.priority, anchor.user)
    assert now.state in ("queued", "running"), now  # fuzzed runners may have leased it
    assert env["errors"].take() == []


def one_line_error(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The code and message of the ClientError `fn` raises; the message is one line."""
    with pytest.raises(ClientError) as err:
        fn()
    message = str(err.value)
    assert message and "\n" not in message, message
    return err.value.code, message


def rpc_error(fn: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    assert err.value.details() and "\n" not in err.value.details(), err.value.details()
    return err.value


def raw_submit(address: str, fields: dict[str, Any], model: bytes = b"") -> grpc.RpcError:
    """SubmitJob on the raw stub (what no JobSpec would let the client send): its error."""
    def requests() -> Iterator[pb.SubmitJobRequest]:
        yield pb.SubmitJobRequest(spec=pb.JobSpec(**(VALID | fields)))
        for piece in chunks(model) if model else ():
            yield pb.SubmitJobRequest(model_chunk=piece)

    with open_channel(address) as channel:
        stub = pb_grpc.SchedulerStub(channel)
        return rpc_error(lambda: stub.SubmitJob(requests(), timeout=30))


# ---------------------------------------------------------------------------- oversized
def test_messages_over_the_receive_limit_are_resource_exhausted(env) -> None:
    """One gRPC message over the server's 8 MiB receive limit, on a unary and a stream RPC."""
    big = MAX_MESSAGE_BYTES + 1024
    with open_channel(env["service"].address) as channel:
        stub = pb_grpc.SchedulerStub(channel)
        err = rpc_error(lambda: stub.SubmitJob(iter([
            pb.SubmitJobRequest(spec=pb.JobSpec(model="big.onnx", trials=8)),
            pb.SubmitJobRequest(model_chunk=os.urandom(big))]), timeout=30))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        err = rpc_error(lambda: stub.GetJob(pb.GetJobRequest(job_id="j" * big), timeout=30))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        runner = pb_grpc.RunnerChannelStub(channel)
        err = rpc_error(lambda: runner.UploadBundle(iter([
            pb.UploadBundleRequest(header=pb.UploadHeader(job_id=env["anchor"].job_id)),
            pb.UploadBundleRequest(chunk=pb.FileChunk(data=b"\0" * big))]), timeout=30))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_healthy(env)


def test_a_model_over_the_size_limit_is_resource_exhausted(env) -> None:
    """The client sends 1 MiB chunks (each under the message limit); the total is too big."""
    big = MLP + b"\0" * (MODEL_LIMIT + 1)
    code, message = one_line_error(lambda: env["client"].submit(SPEC.with_(model="big.onnx"),
                                                                big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"over the {MODEL_LIMIT} byte limit" in message
    assert_healthy(env)


def test_the_cli_prints_one_line_for_an_oversized_model(tmp_path) -> None:
    daemon = start_daemon(tmp_path / "s.db", tmp_path / "daemon.log", extra=["--max-model-mb", "1"])
    try:
        big = tmp_path / "big.onnx"
        big.write_bytes(MLP + b"\0" * (MODEL_LIMIT + 1))
        run = cli("submit", str(big), "--scheduler", daemon.address, "--trials", "8",
                  timeout=60)
        assert run.returncode == 1 and run.stdout == ""
        assert run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.startswith("error: model is over the 1048576 byte limit")
        ok = cli("submit", "zoo:mlp", "--scheduler", daemon.address, "--trials", "8")
        assert ok.returncode == 0, ok.stderr
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()


# ---------------------------------------------------------------------------- shapes, models
@pytest.mark.parametrize(("model", "shapes", "needle"), [
    ("zoo:mlp", {"x": [1, 3, 16, 16]}, "rank"),
    ("zoo:convnet", {"x": [1, 3, 16]}, "rank"),
    ("zoo:mlp", {"y": [1, 64]}, "model's inputs are ['x']"),
    ("mlp.onnx", {"input": [1, 64]}, "model's inputs are ['x']"),
    ("mlp.onnx", {"x": [1, 64, 2]}, "rank"),
    ("zoo:mlp", {"x": [1, -64]}, "positive"),
    ("zoo:mlp", {"x": [0, 64]}, "positive"),
    ("zoo:mlp", {"x": [1, 10**12]}, "at most"),
    ("zoo:convnet", {"x": [4096, 3, 4096, 4096]}, "elements"),
    ("zoo:mlp", {"x": []}, "input shapes must be JSON"),
    ("zoo:mlp", {"x": [1.5, 64]}, "input shapes must be JSON"),
    ("zoo:mlp", {"x": [True, 64]}, "input shapes must be JSON"),
])
def test_wrong_input_shapes_are_invalid_argument(env, model, shapes, needle) -> None:
    before = len(env["client"].jobs())
    err = raw_submit(env["service"].address, {"model": model, "input_shapes_json":
                                              json.dumps(shapes)},
                     b"" if model.startswith("zoo:") else MLP)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.details(), \
        err.details()
    if model.startswith("zoo:"):  # the CLI and the client build the same spec: it refuses
        with pytest.raises(SpecError, match=None) as refused:
            JobSpec(model=model, input_shapes=shapes)
        assert needle in str(refused.value)
    assert len(env["client"].jobs()) == before
    assert_healthy(env)


@pytest.mark.parametrize(("spec", "needle"), [
    ({"input_shapes_json": '{"x": [1, 64'}, "input shapes must be JSON"),
    ({"input_shapes_json": '[[1, 64]]'}, "input shapes must be JSON"),
    ({"input_shapes_json": '{"x": [' + "9" * 5000 + "]}"}, "input shapes must be JSON"),
    ({"input_shapes_json": "[" * 100_000}, "input shapes must be JSON"),
    ({"target_json": '{"kind": "tpu"}'}, "unknown target kind"),
    ({"target_json": '{"kind": "rocm"}'}, "target kind 'rocm' is not supported"),
    ({"target_json": '{"kind": "vulkan"}'}, "target kind 'vulkan' is not supported"),
    ({"target_json": '{"kind": "llvm", '}, "not valid JSON"),
    ({"target_json": '{"kind": ' + "[" * 100_000}, "not valid JSON"),
    ({"target_json": '{"kind": "llvm", "num-cores": ' + "9" * 5000 + "}"}, "not valid JSON"),
    ({"latency_goal_us": float("nan")}, "latency goal"),
    ({"latency_goal_us": float("inf")}, "latency goal"),
    ({"trials": -(2**31)}, "trials must be between"),
    ({"trials": 2**31 - 1}, "trials must be between"),
    ({"batch_size": -1}, "batch size"),
    ({"priority": 2**31 - 1}, "priority"),
    ({"name": "n" * 201}, "longer than 200"),
    ({"model": ""}, "no model uploaded"),
    ({"model": "zoo:"}, "unknown zoo model"),
    ({"replay_dir": "jobs/earlier"}, "replay directory must be an absolute path"),
])
def test_bad_specs_are_invalid_argument(env, spec, needle) -> None:
    """Specs the Client would never build, sent on the raw stub."""
    err = raw_submit(env["service"].address, spec)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.details(), \
        err.details()
    assert_healthy(env)


@pytest.mark.parametrize(("data", "needle"), [
    (os.urandom(4096), "not a valid ONNX model"),
    (b"\x08\x07" + b"\xff" * 64, "not a valid ONNX model"),
    (zoo.build("mlp").SerializeToString()[:-7], "not a valid ONNX model"),
    (onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])).SerializeToString(),
     "no nodes"),
])
def test_malformed_onnx_bytes_are_invalid_argument(env, data, needle) -> None:
    code, message = one_line_error(
        lambda: env["client"].submit(SPEC.with_(model="garbage.onnx"), data))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in message, message
    assert_healthy(env)


def test_requests_out_of_order_are_rejected(env) -> None:
    """Two specs, chunks without a spec, a runner stream not starting with Register, a cancel
    of a cancelled job, runner bundle calls for unknown jobs or dead leases."""
    victim = env["client"].submit(SPEC).job_id
    env["client"].cancel(victim)
    with open_channel(env["service"].address) as channel:
        stub, runner = pb_grpc.SchedulerStub(channel), pb_grpc.RunnerChannelStub(channel)
        spec = pb.SubmitJobRequest(spec=pb.JobSpec(model="zoo:mlp", trials=8))
        cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
            (lambda: stub.SubmitJob(iter([spec, spec]), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "two specs"),
            (lambda: stub.SubmitJob(iter([pb.SubmitJobRequest(model_chunk=MLP)]), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "needs a spec"),
            (lambda: stub.SubmitJob(iter([]), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "needs a spec"),
            (lambda: stub.CancelJob(pb.CancelJobRequest(job_id=victim), timeout=10),
             grpc.StatusCode.FAILED_PRECONDITION, "already cancelled"),
            (lambda: list(runner.Connect(iter([pb.RunnerMessage(
                heartbeat=pb.Heartbeat())]), timeout=10)),
             grpc.StatusCode.INVALID_ARGUMENT, "must be Register"),
            (lambda: list(runner.FetchBundle(pb.FetchBundleRequest(job_id="job-nope"),
                                             timeout=10)),
             grpc.StatusCode.NOT_FOUND, "job-nope"),
            (lambda: runner.UploadBundle(iter([]), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "header"),
            (lambda: runner.UploadBundle(iter([pb.UploadBundleRequest(header=pb.UploadHeader(
                job_id=env["anchor"].job_id, lease_id="l-1", epoch=1, kind="state"))]),
                timeout=10),
             grpc.StatusCode.FAILED_PRECONDITION, "not live"),
        ]
        for call, code, needle in cases:
            err = rpc_error(call)
            assert err.code() == code and needle in err.details(), (code, err.details())
    assert_healthy(env)


@pytest.mark.parametrize(("register", "needle"), [
    ({"host_id": "h", "cores": [0]}, "runner_id and a host_id"),
    ({"runner_id": "r", "host_id": "h"}, "at least one core"),
    ({"runner_id": "r", "host_id": "h", "cores": [0, 0]}, "distinct"),
    ({"runner_id": "r", "host_id": "h", "cores": [-1]}, "distinct"),
    ({"runner_id": "r", "host_id": "h", "cores": [0], "gpus": [2**31 - 1]}, "distinct"),
    ({"runner_id": "r", "host_id": "h", "cores": [0], "memory_mb": -1}, "memory_mb"),
])
def test_bad_registrations_are_invalid_argument(env, register, needle) -> None:
    with open_channel(env["service"].address) as channel:
        runner = pb_grpc.RunnerChannelStub(channel)
        err = rpc_error(lambda: list(runner.Connect(iter([pb.RunnerMessage(
            register=pb.Register(**register))]), timeout=10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.details()
    assert env["client"].runners() == [] or all(r.runner_id != "r"
                                                 for r in env["client"].runners())
    assert_healthy(env)


def test_malformed_stage_results_become_failed_stages() -> None:
    """A runner's result numbers feed the core's arithmetic: strings, NaN, negatives and
    unparsable JSON turn the result into a failed stage instead of crashing the daemon."""
    from scheduler.service.convert import result_dict as parsed
    from scheduler.service.validation import checked_result

    def result_dict(msg: pb.StageResult) -> dict[str, Any]:
        return checked_result(parsed(msg))

    for text in ('{"trials_total": "8"}', '{"trials": -1}', '{"best_latency_us": NaN}',
                 '{"estimated_latency_us": "fast"}', '{"measured": true}'):
        got = result_dict(pb.StageResult(lease_id="l", ok=True, result_json=text))
        assert not got["ok"] and "malformed result" in got["error"] and got["result"] == {}
    for text in ("[" * 100_000, '{"x": ' + "9" * 5000 + "}", "[1]", "nope"):
        got = result_dict(pb.StageResult(lease_id="l", ok=True, result_json=text))
        assert got["ok"] and got["result"] == {}
    good = result_dict(pb.StageResult(ok=True, result_json='{"trials_total": 8, '
                                      '"estimated_latency_us": 61.5, "done": true}'))
    assert good["ok"] and good["result"]["trials_total"] == 8


# ---------------------------------------------------------------------------- garbage on the port
def _garbage(address: str) -> None:
    host, port = address.rsplit(":", 1)
    payloads = [
        os.urandom(64 * 1024),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r",  # a truncated HTTP/2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(4096),  # a preface, then junk frames
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(512),  # a TLS hello
        b"",
    ]
    for payload in payloads:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            if payload:
                sock.sendall(payload)
            sock.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionError):
                sock.recv(4096)


def test_garbage_on_the_grpc_port_is_dropped(tmp_path) -> None:
    """Random bytes, HTTP/1.1, a truncated HTTP/2 preface, a TLS hello: the daemon (its own
    process) neither crashes nor stops serving, also while an idle socket stays open."""
    daemon = start_daemon(tmp_path / "s.db", tmp_path / "daemon.log")
    try:
        with Client(daemon.address, timeout=10) as client:
            job = client.submit(SPEC).job_id
            host, port = daemon.address.rsplit(":", 1)
            idle = socket.create_connection((host, int(port)), timeout=5)
            try:
                _garbage(daemon.address)
                assert [j.job_id for j in client.jobs()] == [job]
                assert health(daemon.address) == "SERVING"
            finally:
                idle.close()
            assert client.get(job).state == "queued"
            assert client.submit(SPEC).state == "queued"
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


# ---------------------------------------------------------------------------- fuzzing
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
ODD_STRINGS = ["", " ", "\n", "\x00", "zoo:mlp", "zoo:resnet18", "zoo:", "cpu", "cuda", "llvm",
               '{"kind": "llvm", "num-cores": 2}', '{"kind": "cuda"}', '{"kind": 1}', "{",
               '{"x": [1, 64]}', '{"x": [1, 3, 16, 16]}', '{"x": [-1]}', '{"x": [1e999]}',
               "[" * 5000, '{"a":' * 3000, "9" * 5000, "state", "result", "queued", "done",
               "extract", "learn", "compile", "../../etc/passwd", "é" * 300, "n" * 5000]


def _ints(bits: int) -> st.SearchStrategy[int]:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return st.one_of(st.integers(-3, 70), st.sampled_from([lo, hi, 0, -1, 2**31 - 1]),
                     st.integers(lo, hi))


def message_strategy(descriptor: Descriptor, ids: list[str], depth: int = 0,
                     base: dict[str, Any] | None = None) -> st.SearchStrategy:
    """Arbitrary instances of a protobuf message, built from its descriptor: every scalar type,
    repeated fields, nested messages and oneofs (at most one member set). String fields also
    draw known job ids (so calls reach past NOT_FOUND) and odd strings; bytes fields draw
    random bytes and a valid ONNX model."""
    cls = getattr(pb, descriptor.name)
    strings = st.one_of(TEXT, st.sampled_from(ODD_STRINGS), st.sampled_from(ids))
    scalars = {
        FieldDescriptor.TYPE_STRING: strings,
        FieldDescriptor.TYPE_BYTES: st.one_of(st.binary(max_size=256), st.just(MLP),
                                              st.just(MLP[:100])),
        FieldDescriptor.TYPE_INT32: _ints(32), FieldDescriptor.TYPE_INT64: _ints(64),
        FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
        FieldDescriptor.TYPE_BOOL: st.booleans(),
    }

    def field(f: FieldDescriptor) -> st.SearchStrategy:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            one = message_strategy(f.message_type, ids, depth + 1) if depth < 3 \
                else st.just(getattr(pb, f.message_type.name)())
        else:
            one = scalars[f.type]
        if f.is_repeated:
            return st.lists(one, max_size=6)
        return one

    oneof_fields = {f.name for o in descriptor.oneofs for f in o.fields}
    plain = st.fixed_dictionaries(
        {}, optional={f.name: field(f) for f in descriptor.fields if f.name not in oneof_fields})
    choices = [st.just({})] + [st.fixed_dictionaries({f.name: field(f)})
                               for o in descriptor.oneofs for f in o.fields]
    return st.tuples(plain, st.one_of(choices)).map(
        lambda p: cls(**{**(base or {}), **p[0], **p[1]}))


def _stream(strategy: st.SearchStrategy, first: Message | None = None) -> st.SearchStrategy:
    rest = st.lists(strategy, min_size=0 if first else 1, max_size=4)
    return rest.map(lambda xs: [first, *xs] if first is not None else xs)


VALID_SPEC = {"model": "zoo:mlp", "target_json": "cpu", "trials": 8}  # fuzzing mutates it
# result JSON with the keys the core and the daemon read, holding arbitrary values
RESULT_KEYS = ["trials", "measured", "trials_total", "best_latency_us", "estimated_latency_us",
               "tuned_us", "untuned_us", "done", "exhausted", "tasks", "candidates"]
RESULT_JSON = st.one_of(TEXT, st.dictionaries(
    st.sampled_from(RESULT_KEYS),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
              st.lists(st.integers(), max_size=2))).map(json.dumps))


def _fields(msg: Message) -> dict[str, Any]:
    return {f.name: v for f, v in msg.ListFields()}


REGISTER = pb.RunnerMessage(register=pb.Register(runner_id="fuzz-runner", host_id="fuzz-host",
                                                 cores=[0, 1], memory_mb=1024))


def _targets(stub: Any, runner: Any, ids: list[str]) -> dict[str, tuple[st.SearchStrategy,
                                                                        Callable[[Any], Any]]]:
    """Per request message: (strategy, how to send one drawn value)."""
    def m(name: str) -> st.SearchStrategy:
        return message_strategy(pb.DESCRIPTOR.message_types_by_name[name], ids)

    def watch(req: pb.WatchJobRequest) -> None:
        call = stub.WatchJob(req, timeout=10)
        try:
            next(call, None)  # the job's state now; a live job would stream until it ends
        finally:
            call.cancel()

    def connect(messages: list[pb.RunnerMessage]) -> None:
        list(runner.Connect(iter(messages), timeout=10))

    def live_result(res: pb.StageResult) -> None:
        """Register, wait for a StartStage, answer it with the drawn result (its ids set to
        the live lease's): arbitrary result JSON, ok flags and errors reach the core."""
        jobs = [j for j in ids if j.startswith("job-") and j != "job-nope"]
        if not [j for j in jobs if stub.GetJob(pb.GetJobRequest(job_id=j), timeout=10).state
                in ("queued", "running")]:
            ids.append(stub.SubmitJob(iter([pb.SubmitJobRequest(spec=pb.JobSpec(
                **VALID_SPEC))]), timeout=10).job_id)
        outbox: queue.Queue[pb.RunnerMessage | None] = queue.Queue()
        outbox.put(REGISTER)
        call = runner.Connect(iter(outbox.get, None), timeout=10)
        try:
            for msg in call:
                if msg.HasField("start"):
                    s = msg.start
                    answer = pb.StageResult()
                    answer.CopyFrom(res)
                    answer.lease_id, answer.epoch, answer.job_id = \
                        s.lease.lease_id, s.lease.epoch, s.job_id
                    answer.stage_id, answer.stage = s.stage_id, s.stage
                    outbox.put(pb.RunnerMessage(result=answer))
                    outbox.put(None)
        finally:
            outbox.put(None)

    return {
        "SubmitJobRequest": (st.one_of(_stream(m("SubmitJobRequest")), _stream(
            st.one_of(st.just(MLP), st.binary(max_size=64)).map(
                lambda b: pb.SubmitJobRequest(model_chunk=b)),
            first=None).flatmap(lambda chunks: message_strategy(
                pb.JobSpec.DESCRIPTOR, ids, base=VALID_SPEC).map(
                lambda spec: [pb.SubmitJobRequest(spec=spec), *chunks[:1]]))),
            lambda r: stub.SubmitJob(iter(r), timeout=10)),
        "GetJobRequest": (m("GetJobRequest"), lambda r: stub.GetJob(r, timeout=10)),
        "ListJobsRequest": (m("ListJobsRequest"), lambda r: stub.ListJobs(r, timeout=10)),
        "WatchJobRequest": (m("WatchJobRequest"), watch),
        "CancelJobRequest": (m("CancelJobRequest"), lambda r: stub.CancelJob(r, timeout=10)),
        "FetchResultRequest": (m("FetchResultRequest"),
                               lambda r: list(stub.FetchResult(r, timeout=10))),
        "ListRunnersRequest": (m("ListRunnersRequest"),
                               lambda r: stub.ListRunners(r, timeout=10)),
        "GetTimelineRequest": (m("GetTimelineRequest"),
                               lambda r: stub.GetTimeline(r, timeout=10)),
        "Register": (m("Register").map(lambda r: [pb.RunnerMessage(register=r)]), connect),
        "Heartbeat": (_stream(m("Heartbeat").map(lambda h: pb.RunnerMessage(heartbeat=h)),
                              REGISTER), connect),
        "StageResult": (_stream(m("StageResult").map(lambda s: pb.RunnerMessage(result=s)),
                                REGISTER), connect),
        "RunnerMessage": (_stream(m("RunnerMessage")), connect),
        "StageResult for a live lease": (  # mostly ok: the job moves on to later stages
            st.tuples(m("StageResult"), RESULT_JSON, st.sampled_from([True] * 5 + [False])).map(
                lambda p: pb.StageResult(**{**_fields(p[0]), "result_json": p[1], "ok": p[2]})),
            live_result),
        "FetchBundleRequest": (m("FetchBundleRequest"),
                               lambda r: list(runner.FetchBundle(r, timeout=10))),
        "UploadBundleRequest": (_stream(m("UploadBundleRequest")),
                                lambda r: runner.UploadBundle(iter(r), timeout=10)),
    }


FUZZED = ["SubmitJobRequest", "GetJobRequest", "ListJobsRequest", "WatchJobRequest",
          "CancelJobRequest", "FetchResultRequest", "ListRunnersRequest", "GetTimelineRequest",
          "Register", "Heartbeat", "StageResult", "StageResult for a live lease",
          "RunnerMessage", "FetchBundleRequest",
          "UploadBundleRequest"]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=False)
def fuzz_summary() -> Iterator[Counter[str]]:
    yield TRIED
    if TRIED:
        print(f"\nfuzz inputs tried per message ({sum(TRIED.values())} in all): "
              + ", ".join(f"{k}={v}" for k, v in TRIED.items()))


@pytest.mark.slow
@pytest.mark.parametrize("message", FUZZED)
def test_fuzz_every_request_message(env, fuzz_summary, message: str) -> None:
    """Arbitrary field values for `message`: OK or an allowed code with a one-line message;
    no error logged by the daemon; healthy, anchor job intact afterwards."""
    codes: Counter[str] = Counter()
    ids = [*env["victims"], "job-nope", "fuzz-runner", "fuzz-host"]
    with open_channel(env["service"].address) as channel:
        strategy, send = _targets(pb_grpc.SchedulerStub(channel),
                                  pb_grpc.RunnerChannelStub(channel), ids)[message]

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(request: Any) -> None:
            TRIED[message] += 1
            try:
                send(request)
                codes["OK"] += 1
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1
                assert exc.code() in ALLOWED, (exc.code(), exc.details(), request)
                assert exc.details() and "\n" not in exc.details(), (exc.details(), request)
            errors = env["errors"].take()
            assert errors == [], (errors, request)

        t0 = time.monotonic()
        one()
    print(f"\nfuzz {message}: {TRIED[message]} inputs in {time.monotonic() - t0:.1f} s, "
          f"outcomes {dict(codes)}")
    assert TRIED[message] >= min(EXAMPLES, 1 if message.startswith(("List", "GetTimeline"))
                                 else EXAMPLES // 2), f"{message}: only {TRIED[message]} tried"
    assert_healthy(env)


def test_job_id_strings_are_never_echoed_across_lines(env) -> None:
    """NOT_FOUND names the id it did not find, escaped: ids with newlines stay one line."""
    err = rpc_error(lambda: pb_grpc.SchedulerStub(open_channel(env["service"].address)).GetJob(
        pb.GetJobRequest(job_id="a\nb\r\nc"), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "a\\nb" in err.details()
    assert json.dumps(err.details())  # plain text
    assert_healthy(env)


@pytest.mark.slow
def test_a_model_over_512_mib_is_taken_when_the_limit_allows_it(tmp_path) -> None:
    """`--max-model-mb` is the one limit: a 520 MiB model goes in under 600 (no fixed 512 MiB
    ceiling behind it), arrives whole, and the next MiB over the limit is RESOURCE_EXHAUSTED."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros(520 << 18, "float32"), "w")  # 520 MiB
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = model.SerializeToString()
    del model, weights, graph
    assert 520 << 20 < len(data) < 600 << 20
    daemon = start_daemon(tmp_path / "s.db", tmp_path / "daemon.log",
                          extra=["--max-model-mb", "600"])
    try:
        with Client(daemon.address, timeout=300) as client:
            job = client.submit(SPEC.with_(model="big.onnx"), data)
            assert client.get(job.job_id).state == "queued"
            stored = tmp_path / "s-blobs" / job.job_id / "model.onnx"
            assert stored.stat().st_size == len(data)
            client.cancel(job.job_id)
            over = data + b"\0" * ((600 << 20) - len(data) + 1)
            code, message = one_line_error(lambda: client.submit(
                SPEC.with_(model="over.onnx"), over))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"over the {600 << 20} byte limit" in message
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
