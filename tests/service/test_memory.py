"""Tuning memory through the real daemon and runner agents with sleep stages (which write and
take in records as the real stages do): reuse, budgets, target keys, scopes, imports, kill -9."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.api import Client, ClientError
from scheduler.core import TERMINAL_JOB_STATES
from scheduler.service.config import DaemonConfig
from scheduler.testing import DaemonProcess, LocalCluster, sleep_agent, wait_for
from simpletvm import tuningdb
from simpletvm.spec import JobSpec

QUICK = {"extract": 0.02, "search": 0.02, "build": 0.02, "profile": 0.02, "learn": 0.02,
         "compile": 0.02}
TWO = {"kind": "llvm", "num-cores": 2}
MLP = JobSpec(model="zoo:mlp", target=TWO, trials=8, batch_size=4)


def run(client: Client, spec: JobSpec, timeout: float = 30) -> object:
    """Submit `spec` and wait for the job to end; its JobInfo."""
    job = client.submit(spec).job_id
    return wait_for(lambda: (lambda i: i if i.state in TERMINAL_JOB_STATES else None)(
        client.get(job)), timeout, f"job {job} to end", interval=0.05)


def totals(client: Client) -> dict[str, tuple[int, int, int]]:
    """target key (with its scope) -> (workloads, records, trials)."""
    return {f"{k.scope}|{k.target_key}": (k.workloads, k.records, k.trials)
            for k in client.record_stats()}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, {"box": 1}, seconds=QUICK) as fake:
        yield fake


def test_a_resubmitted_model_tunes_nothing_and_a_bigger_budget_tunes_the_difference(
        cluster: LocalCluster) -> None:
    client = cluster.client
    first = run(client, MLP)
    assert (first.state, first.trials_done, first.reused_records) == ("done", 8, 0)
    [(workloads, records, trials)] = totals(client).values()
    assert (workloads, records, trials) == (1, 8, 8)
    again = run(client, MLP)  # retrained: new weights, the same layers
    assert again.state == "done" and again.trials_done == 8
    assert (again.reused_records, again.reused_tasks, again.known_trials) == (8, 1, 8)
    assert list(totals(client).values()) == [(1, 8, 8)]  # reused records are not new trials
    longer = run(client, MLP.with_(trials=16))  # continue tuning: only the difference
    assert (longer.trials_done, longer.known_trials) == (16, 8)
    assert list(totals(client).values()) == [(1, 16, 16)]
    fresh = run(client, MLP.with_(fresh=True))  # takes nothing, still adds its own
    assert (fresh.trials_done, fresh.reused_records, fresh.known_trials) == (8, 0, 0)
    assert list(totals(client).values()) == [(1, 24, 24)]


def test_the_show_command_says_what_was_reused(cluster: LocalCluster) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    run(cluster.client, MLP)
    job = run(cluster.client, MLP.with_(trials=12))
    shown = CliRunner().invoke(cli, ["show", job.job_id, "--scheduler", cluster.address])
    assert "reused    8 records for 1/1 tasks; new trials 4" in shown.output, shown.output


def test_records_of_one_target_key_are_never_used_for_another(cluster: LocalCluster) -> None:
    client = cluster.client
    run(client, MLP)
    one_core = run(client, MLP.with_(target={"kind": "llvm", "num-cores": 1}))
    assert (one_core.trials_done, one_core.reused_records) == (8, 0)
    other_model = run(client, MLP.with_(model="zoo:conv2d"))  # other workloads: nothing known
    assert other_model.reused_records == 0
    keys = totals(client)
    assert len(keys) == 2 and all(v[2] in (8, 16) for v in keys.values()), keys
    device = tuningdb.cpu_model() or "unknown device"
    assert {k.split("|", 1)[1] for k in keys} == {
        tuningdb.target_key(TWO, device),
        tuningdb.target_key({"kind": "llvm", "num-cores": 1}, device)}


def test_a_cpu_target_runs_on_the_cores_of_the_runner_that_takes_it(tmp_path: Path) -> None:
    """`--target cpu` (an llvm target without num-cores) is not resolved where it is
    submitted: the runner that takes the job gives it all its cores (job.json says so before
    any stage reads it) and the records are filed under that count."""
    from click.testing import CliRunner

    from cli.main import cli
    from scheduler.testing import connected_runners

    with LocalCluster(tmp_path, {}, seconds=QUICK) as cluster:
        cluster.add_agent(sleep_agent(cluster.address, "three", cluster.work_dir("three"),
                                      "three-r0", cores=3, seconds=QUICK))
        wait_for(lambda: connected_runners(cluster.client) == 1, 30, "the runner to register")
        out = CliRunner().invoke(cli, ["submit", "zoo:mlp", "--target", "cpu", "--trials", "8",
                                       "--batch-size", "4", "--scheduler", cluster.address])
        assert out.exit_code == 0, out.output
        [submitted] = cluster.client.jobs()
        assert json.loads(submitted.target_json) == {"kind": "llvm"}  # not this machine's
        info = wait_for(lambda: (lambda i: i if i.state in TERMINAL_JOB_STATES else None)(
            cluster.client.get(submitted.job_id)), 30, "the job to end", interval=0.05)
        assert info.state == "done", info.error
        job_json = cluster.work_dir("three") / "jobs" / info.job_id / "job.json"
        assert json.loads(job_json.read_text())["target"] == {"kind": "llvm", "num-cores": 3}
        device = tuningdb.cpu_model() or "unknown device"
        assert list(totals(cluster.client)) == [
            "|" + tuningdb.target_key({"kind": "llvm", "num-cores": 3}, device)]
        # the same model for three cores named outright reuses them: one key
        again = run(cluster.client, MLP.with_(target={"kind": "llvm", "num-cores": 3}))
        assert again.reused_records == 8


def test_a_user_scoped_memory_shows_nothing_across_users(tmp_path: Path) -> None:
    config = DaemonConfig(tmp_path / "state" / "s.db", records_scope="user")
    with LocalCluster(tmp_path, {"box": 1}, seconds=QUICK, config=config) as cluster:
        client = cluster.client
        run(client, MLP.with_(user="alice"))
        bob = run(client, MLP.with_(user="bob"))
        assert bob.reused_records == 0  # alice's records stay hers
        alice = run(client, MLP.with_(user="alice"))
        assert alice.reused_records == 8
        assert {k.split("|")[0] for k in totals(client)} == {"alice", "bob"}


def test_an_export_is_the_memory_as_a_metaschedule_database(cluster: LocalCluster,
                                                             tmp_path: Path) -> None:
    run(cluster.client, MLP)
    run(cluster.client, MLP.with_(model="zoo:conv2d"))
    out = tmp_path / "export"
    cluster.client.export_records(out, json.dumps(TWO))
    db = tuningdb.read_database(out)
    assert len(db.workloads) == 2 and sum(len(r) for r in db.records.values()) == 16
    assert all(r.target == TWO for rs in db.records.values() for r in rs)
    cluster.client.export_records(tmp_path / "none", json.dumps({"kind": "cuda"}))
    assert tuningdb.read_database(tmp_path / "none").records == {}


def _database(root: Path, records: list[str], workloads: list[str] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / tuningdb.WORKLOAD_FILE).write_text(
        "\n".join(workloads if workloads is not None else ['["w1", "encoded"]']) + "\n")
    (root / tuningdb.RECORD_FILE).write_text("\n".join(records) + "\n")
    return root


GOOD = json.dumps([0, [[["fake", "a"]], [2e-5, 2.2e-5], TWO, []]])


@pytest.mark.parametrize(("records", "workloads", "needle"), [
    (["[0, [oops"], None, "is not a MetaSchedule record: not JSON"),
    ([json.dumps([3, [[], [1e-5], TWO, []]])], None, "names workload 3, but the database has 1"),
    ([json.dumps([0, [[], [1e-5], {"kind": "tpu"}, []]])], None, "target kind 'tpu'"),
    ([json.dumps([0, [[], ["fast"], TWO, []]])], None, "non-negative numbers"),
    ([GOOD], ['["w1"]'], "a workload is [hash, encoded IR]"),
    ([json.dumps([0, [[], [1e-5], {"kind": "cuda"}, []]])], None, "import each target's"),
])
def test_bad_imports_are_refused_with_one_line_and_change_nothing(
        cluster: LocalCluster, tmp_path: Path, records, workloads, needle) -> None:
    run(cluster.client, MLP)
    before = totals(cluster.client)
    db = _database(tmp_path / "bad", [GOOD, *records], workloads)
    with pytest.raises(ClientError) as err:
        cluster.client.import_records(db, json.dumps(TWO), "some CPU")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert totals(cluster.client) == before


def test_imported_records_are_marked_and_reach_jobs_on_that_device(
        cluster: LocalCluster, tmp_path: Path) -> None:
    client = cluster.client
    run(client, MLP.with_(trials=4))  # learns the workload's hash, as extract computes it
    shash = next(iter(tuningdb.read_database(_export(client, tmp_path)).workloads))
    db = _database(tmp_path / "elsewhere", [GOOD], [json.dumps([shash, "encoded"])])
    reply = client.import_records(db, json.dumps(TWO), tuningdb.cpu_model() or "unknown device")
    assert (reply.workloads, reply.records) == (1, 1)
    [stats] = client.record_stats()
    assert (stats.records, stats.imported) == (5, 1)
    job = run(client, MLP)
    assert job.reused_records == 5  # the imported one among them, re-timed in verification
    other = client.import_records(db, json.dumps(TWO), "another CPU")
    assert other.target_key.endswith("@another CPU") and len(client.record_stats()) == 2


def _export(client: Client, tmp_path: Path) -> Path:
    out = tmp_path / "export"
    client.export_records(out)
    return out


def test_the_memory_survives_kill_9_of_the_daemon_mid_update(tmp_path: Path) -> None:
    """Records commit with the state bundle they came in: after kill -9 and a restart, every
    job's trials are counted once, none lost, none twice."""
    state, log = tmp_path / "state" / "s.db", tmp_path / "daemon.log"
    daemon = DaemonProcess(state, log, ["--runner-timeout", "3", "--lease-ttl", "3"])
    address = daemon.address
    stop = threading.Event()
    agents = [sleep_agent(address, "box", tmp_path / "work", f"r{i}", seconds={
        **QUICK, "learn": 0.1, "search": 0.05}) for i in (1, 2)]
    threads = [threading.Thread(target=a.run, args=(stop,), daemon=True) for a in agents]
    for t in threads:
        t.start()
    try:
        with Client(address, timeout=10) as client:
            wait_for(lambda: sum(r.connected for r in client.runners()) == 2, 20, "runners")
            jobs = [client.submit(MLP.with_(model=m, trials=24, batch_size=2)).job_id
                    for m in ("zoo:mlp", "zoo:conv2d", "zoo:matmul")]
            wait_for(lambda: sum(k.trials for k in client.record_stats()) >= 10, 30,
                     "records to come in")
        daemon.stop(signal.SIGKILL)  # learns are uploading: some commit, some never do
        daemon = DaemonProcess(state, log, ["--runner-timeout", "3", "--lease-ttl", "3"],
                               listen=address)
        with Client(address, timeout=10) as client:
            ended = wait_for(lambda: (lambda js: js if all(j.state in TERMINAL_JOB_STATES
                                                           for j in js) else None)(
                [client.get(j) for j in jobs]), 120, "the jobs to end after the restart")
            assert [(j.state, j.trials_done) for j in ended] == [("done", 24)] * 3
            assert list(totals(client).values()) == [(3, 72, 72)]
    finally:
        stop.set()
        for a in agents:
            a.stop()
        daemon.stop()


def _bundle(files: dict[str, str]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_records_are_kept_at_their_verified_time(tmp_path: Path) -> None:
    """A record the job's verification timed again is kept at that time, also when it was
    kept already (a reused one): a lucky search batch does not hand its luck on."""
    from scheduler.service.blobs import BlobStore
    from scheduler.service.recordstore import RecordStore, parse_state
    from scheduler.service.store import Store

    store = Store(tmp_path / "s.db")
    memory = RecordStore(store, BlobStore(tmp_path / "blobs"), keep=8)

    def line(i: int, secs: float) -> str:
        return json.dumps([0, [[["fake", i]], [secs], TWO, []]])

    files = {"tasks/index.json": json.dumps([{"index": 0, "name": "t", "weight": 1,
                                              "flops": 1.0, "shash": "w"}]),
             "tasks/00/db/database_workload.json": '["w", "ir"]\n',
             "tasks/00/db/database_tuning_record.json": line(0, 1e-4) + "\n" + line(1, 2e-4),
             "tasks/00/measured.txt": "h0\nh1\n", "progress.json": "{}"}

    def best() -> list[float]:
        known = memory.known("", "key", ["w"])["tasks"]["w"]["records"]
        return [r[1][0] for r in known]

    with store.transaction() as tx:
        memory.ingest(tx, "job-1", "", "key", parse_state(_bundle(files)))
    assert best() == [1e-4, 2e-4]  # the search's times, best first
    files["tasks/00/verified.json"] = json.dumps({"kept": "h1", "candidates": [
        {"hash": "h0", "verified_us": 300.0}, {"hash": "h1", "verified_us": 150.0}]})
    with store.transaction() as tx:  # the job's last learn: no new lines, a verification
        assert memory.ingest(tx, "job-1", "", "key", parse_state(_bundle(files))) == 0
    assert best() == [1.5e-4, 3e-4]  # re-timed: the lucky one is no longer first
    assert memory.known("", "key", ["w"])["tasks"]["w"]["trials"] == 2  # counted once
