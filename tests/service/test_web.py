"""The dashboard's HTTP side against a real daemon and sleep-stage runners over loopback: the
JSON API and SVG routes, one-line JSON errors, bearer tokens (no foreign job on any route),
TLS with the daemon's certificate, and `/metrics` on the same port."""

from __future__ import annotations

import gzip
import json
import re
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.api import Client
from scheduler.core import TERMINAL_JOB_STATES
from scheduler.service.auth import Auth
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from scheduler.service.web import Cache
from scheduler.testing import LocalCluster, sleep_agent, wait_for
from simpletvm.spec import JobSpec

from .test_security import TOKENS, _secret, _self_signed

QUICK = {"extract": 0.02, "search": 0.02, "build": 0.02, "profile": 0.02, "learn": 0.02,
         "compile": 0.02}
MLP = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=16,
              batch_size=4)
NS = "{http://www.w3.org/2000/svg}"
ROUTES = ("/api/jobs", "/api/runners", "/api/timeline", "/api/timeline.svg", "/metrics")


def get(url: str, token: str | None = None,
        context: ssl.SSLContext | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, errors included."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def get_json(url: str, token: str | None = None) -> dict:
    status, kind, body = get(url, token)
    assert status == 200 and kind == "application/json", (status, body)
    return json.loads(body)


def _ended(client: Client, jobs: list[str]) -> None:
    for job in jobs:
        wait_for(lambda j=job: client.get(j).state in TERMINAL_JOB_STATES, 30, f"{job} to end",
                 interval=0.05)


def test_the_api_shows_jobs_curves_tasks_runners_and_every_lease(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, {"box": 2}, seconds=QUICK, http="127.0.0.1:0") as cluster:
        base, client = cluster.service.web.url.rstrip("/"), cluster.client
        jobs = [client.submit(MLP).job_id, client.submit(MLP.with_(name="second")).job_id]
        _ended(client, jobs)
        listed = get_json(f"{base}/api/jobs")["jobs"]
        leases = client.timeline()
        detail = get_json(f"{base}/api/jobs/{jobs[0]}")
        runners = get_json(f"{base}/api/runners")
        timeline = get_json(f"{base}/api/timeline")
        status, kind, gantt = get(f"{base}/api/timeline.svg")
        _, _, curve = get(f"{base}/api/jobs/{jobs[0]}/curve.svg")
        done = get_json(f"{base}/api/jobs?state=done")["jobs"]
    assert [j["job_id"] for j in listed] == jobs[::-1]  # newest first
    assert {j["job_id"] for j in done} == set(jobs)
    assert all(j["trials_done"] == 16 and j["state"] == "done" for j in listed)
    # one curve point per learn with an estimate, trials rising to the budget
    trials = [p[1] for p in detail["curve"]]
    assert trials == sorted(trials) and trials[-1] == 16 and len(trials) == 4
    assert detail["task_rows"][0]["name"] == "fake_dense"
    assert detail["task_rows"][0]["trials"] == 16
    assert {x["lease_id"] for x in detail["leases"]} == \
        {x["lease_id"] for x in leases if x["job_id"] == jobs[0]}
    assert {r["runner_id"] for r in runners["runners"]} == {"box-r0", "box-r1"}
    assert runners["hosts"][0]["cores"] == [0, 1]
    assert {x["lease_id"] for x in timeline["leases"]} == {x["lease_id"] for x in leases}
    assert status == 200 and kind == "image/svg+xml"
    bars = [g.get("data-lease") for g in ET.fromstring(gantt).iter(f"{NS}g")
            if g.get("class") == "lease" for bar in g if bar.get("class") == "bar"]
    assert sorted(bars) == sorted(x["lease_id"] for x in leases for _ in x["cores"])
    points = [c for c in ET.fromstring(curve).iter(f"{NS}circle") if c.get("class") == "point"]
    assert len(points) == 4


@pytest.mark.parametrize(("path", "status", "word"), [
    ("/api/nothing", 404, "no route"), ("/api/jobs/job-0000000000", 404, "no job"),
    ("/api/timeline?window=-5", 400, "window"), ("/api/timeline.svg?window=abc", 400, "window"),
    ("/api/timeline?window=1e12", 400, "window")])
def test_errors_are_one_line_of_json(tmp_path: Path, path: str, status: int,
                                     word: str) -> None:
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0", http="127.0.0.1:0").start()
    try:
        got, kind, body = get(svc.web.url.rstrip("/") + path)
    finally:
        svc.stop()
    assert got == status and kind == "application/json"
    assert body.count("\n") == 1 and body.endswith("\n")
    assert word in json.loads(body)["error"]


@pytest.fixture
def secured_cluster(tmp_path: Path):
    users = {name: {"token": tok, "admin": name == "root"} for name, tok in TOKENS.items()}
    auth = Auth.from_files(None, str(_secret(tmp_path / "users.json", json.dumps(users))))
    config = DaemonConfig(tmp_path / "state" / "s.db", auth=auth)
    with LocalCluster(tmp_path, {"box": 1}, seconds=QUICK, config=config,
                      http="127.0.0.1:0", token=TOKENS["root"]) as cluster:
        yield cluster


def test_tokens_guard_every_route_and_hide_other_users_jobs(secured_cluster) -> None:
    cluster = secured_cluster
    base = cluster.service.web.url.rstrip("/")
    ids = {}
    for user in ("alice", "bob"):
        with Client(cluster.address, timeout=10, token=TOKENS[user]) as client:
            ids[user] = client.submit(MLP.with_(name=f"{user}-model")).job_id
            _ended(client, [ids[user]])
    for path in ROUTES:
        for token in (None, "not-a-token"):
            status, kind, body = get(base + path, token)
            assert status == 401 and kind == "application/json", (path, status)
            assert "token" in json.loads(body)["error"]
    for viewer, other in (("alice", "bob"), ("bob", "alice")):
        token = TOKENS[viewer]
        seen = get_json(f"{base}/api/jobs", token)["jobs"]
        assert [j["job_id"] for j in seen] == [ids[viewer]]
        for path in (*ROUTES, f"/api/jobs/{ids[viewer]}", f"/api/jobs/{ids[viewer]}/curve.svg"):
            status, _, body = get(base + path, token)
            assert status == 200, path
            assert ids[other] not in body and f"{other}-model" not in body, (viewer, path)
        for path in (f"/api/jobs/{ids[other]}", f"/api/jobs/{ids[other]}/curve.svg"):
            status, _, body = get(base + path, token)
            assert status == 404 and ids[other] in json.loads(body)["error"]
        # the other user's leases are still drawn, without their job
        timeline = get_json(f"{base}/api/timeline", token)["leases"]
        assert {x["job_id"] for x in timeline} == {ids[viewer], ""}
    everything = get_json(f"{base}/api/jobs", TOKENS["root"])["jobs"]
    assert {j["job_id"] for j in everything} == set(ids.values())
    # the pages themselves hold no data and load without a token
    status, kind, page = get(base + "/")
    assert status == 200 and kind.startswith("text/html") and "job-" not in page


def test_tls_serves_the_dashboard_with_the_daemons_certificate(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "cert.pem").write_bytes(cert)
    svc = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0", tls=(key, cert),
                  http="127.0.0.1:0",
                  http_tls_files=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))).start()
    try:
        url = svc.web.url
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        status, _, body = get(url + "api/jobs", context=trusted)
        assert status == 200 and json.loads(body) == {"jobs": []}
        with pytest.raises(urllib.error.URLError):  # a client that does not trust it
            get(url + "api/jobs", context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain http
            get(url.replace("https://", "http://") + "api/jobs")
    finally:
        svc.stop()


def test_metrics_on_the_dashboard_port_parse_with_prometheus(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, {}, seconds=QUICK, http="127.0.0.1:0") as cluster:
        agent = cluster.add_agent(sleep_agent(cluster.address, "box", cluster.work_dir("box"),
                                              "late", seconds=QUICK))
        wait_for(lambda: any(r.connected for r in cluster.client.runners()), 20, "the runner")
        job = cluster.client.submit(MLP).job_id
        _ended(cluster.client, [job])
        status, kind, text = get(cluster.service.web.url + "metrics")
        assert agent.config.runner_id == "late"
    assert status == 200 and kind.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"tunesched_jobs", "tunesched_leases_granted", "tunesched_runners_connected"} <= names
    assert re.search(r'^tunesched_jobs\{state="done"\} 1\.0$', text, re.M)


def test_answers_are_shared_for_a_moment_and_gzipped_when_big() -> None:
    now = [100.0]
    cache = Cache(ttl=5.0, clock=lambda: now[0])
    made = []

    def make() -> tuple[str, bytes]:
        made.append(now[0])
        return "application/json", json.dumps({"n": len(made), "pad": "x" * 5000}).encode()

    first = cache.get(("/api/jobs", (), "*"), make)
    now[0] += 4.0
    assert cache.get(("/api/jobs", (), "*"), make) == first  # shared within the TTL
    assert cache.get(("/api/jobs", (), "alice"), make) != first  # another scope: its own
    now[0] += 2.0
    fresh = cache.get(("/api/jobs", (), "*"), make)
    assert fresh != first and made == [100.0, 104.0, 106.0]
    kind, body, packed = fresh
    assert kind == "application/json"
    assert gzip.decompress(packed) == body and len(packed) < len(body) / 10


def test_a_client_that_accepts_gzip_gets_it(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, {"box": 1}, seconds=QUICK, http="127.0.0.1:0") as cluster:
        jobs = [cluster.client.submit(MLP.with_(name=f"job{i}")).job_id for i in range(8)]
        _ended(cluster.client, jobs)
        request = urllib.request.Request(cluster.service.web.url + "api/jobs",
                                         headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.headers["Content-Encoding"] == "gzip"
            listed = json.loads(gzip.decompress(reply.read()))["jobs"]
    assert {j["job_id"] for j in listed} == set(jobs)
