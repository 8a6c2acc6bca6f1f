"""The dashboard's pure parts: what a caller may see, the server-drawn SVG, the curve kept on a
job record, and task rows a runner may send."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from scheduler.service import dashboard, svg
from scheduler.service.auth import Caller
from scheduler.service.records import MAX_CURVE, JobRecord
from scheduler.service.validation import malformed_result
from simpletvm.jobdir import Progress, TaskInfo, TaskProgress
from simpletvm.spec import JobSpec

NS = "{http://www.w3.org/2000/svg}"


def _record(job_id: str, user: str, name: str = "m") -> JobRecord:
    return JobRecord(JobSpec(model="zoo:mlp", name=name, user=user, job_id=job_id),
                     submitted_at=float(int(job_id[-1])))


def _lease(lease_id: str, job_id: str, cores: list[int], granted: float, ended: float = 0.0,
           host: str = "h") -> dict:
    return {"lease_id": lease_id, "epoch": 1, "job_id": job_id, "stage": "search", "round": 0,
            "host_id": host, "runner_id": "r", "cores": cores, "gpus": [],
            "exclusivity": "none", "exclusive": False, "granted_at": granted,
            "ended_at": ended, "outcome": "finished" if ended else "live",
            "paused_at": [], "resumed_at": []}


def _view() -> dashboard.View:
    jobs = {"job-1": _record("job-1", "alice", "<b>evil</b>"), "job-2": _record("job-2", "bob")}
    leases = [_lease("lease-1", "job-1", [0, 1], 10, 20), _lease("lease-2", "job-2", [1], 15)]
    runners = [{"runner_id": "r", "host_id": "h", "cores": [0, 1], "gpus": [],
                "memory_mb": 1024, "target_kinds": ["llvm"], "connected": True,
                "foreign_load": 0.25, "last_heartbeat": 0.0, "leases": ["lease-2"]}]
    return dashboard.View(30.0, jobs, leases, runners)


def test_a_user_sees_their_jobs_and_only_anonymous_leases_of_others() -> None:
    view, alice = _view(), Caller("alice")
    assert [j["job_id"] for j in dashboard.jobs(view, alice)] == ["job-1"]
    assert [j["job_id"] for j in dashboard.jobs(view, Caller("root", admin=True))] == \
        ["job-2", "job-1"]  # newest first
    rows = dashboard.timeline(view, alice)
    assert [(r["job_id"], r["label"]) for r in rows] == \
        [("job-1", "<b>evil</b>"), ("", dashboard.HIDDEN)]
    hosts = dashboard.runners(view, alice)
    assert "job-2" not in repr(hosts) and "bob" not in repr(hosts)
    assert hosts["hosts"] == [{"host_id": "h", "runners": 1, "connected": 1, "cores": [0, 1],
                               "gpus": [], "foreign_load": 0.25, "leases": 1}]


def _bars(root: ET.Element) -> list[tuple[str, str, float]]:
    """(lease, job, x in px) per bar: bars are drawn in seconds inside a scaled group."""
    (scaled,) = [g for g in root.iter(f"{NS}g") if "scale(" in g.get("transform", "")]
    tx, scale = (float(v) for v in re.findall(r"translate\(([-\d.]+) 0\) scale\(([-\d.]+) 1",
                                              scaled.get("transform"))[0])
    return [(g.get("data-lease"), g.get("data-job"), tx + scale * float(bar.get("x")))
            for g in scaled.iter(f"{NS}g") if g.get("class") == "lease"
            for bar in g if bar.get("class") == "bar"]


def test_the_gantt_draws_a_bar_per_lease_and_core_and_escapes_names() -> None:
    view, memo = _view(), {}
    rows = dashboard.timeline(view, Caller("alice"))
    text = svg.gantt_svg(view.runners, rows, view.now, 600, epoch=5.0, memo=memo)
    root = ET.fromstring(text)  # well-formed XML, so the "<b>" of a name was escaped
    bars = _bars(root)
    assert sorted((lease, job) for lease, job, _ in bars) == \
        [("lease-1", "job-1"), ("lease-1", "job-1"), ("lease-2", "")]
    titles = [t.text for t in root.iter(f"{NS}title")]
    assert "<b>evil</b> search (lease-1)" in titles
    # a young daemon: the axis spans from the first lease (t=10) to now (t=30), not 600 s
    xs = {lease: x for lease, _, x in bars}
    assert abs(xs["lease-1"] - 120.0) < 1e-6 and abs(xs["lease-2"] - (120 + 870 / 4)) < 1e-3
    legend = ["".join(g.itertext()) for g in root.iter(f"{NS}g") if g.get("class") == "legend"]
    assert legend == ["<b>evil</b> (job-1)", dashboard.HIDDEN]
    # an ended lease's markup is kept and drawn again as it was; a live one is not kept
    kept = {key[0]: text for key, text in memo.items() if key != svg.ROWS}
    assert list(kept) == ["lease-1"]
    later = svg.gantt_svg(view.runners, rows, view.now + 5, 600, epoch=5.0, memo=memo)
    assert kept["lease-1"] in later and [k[0] for k in memo if k != svg.ROWS] == ["lease-1"]
    svg.gantt_svg(view.runners, rows[1:], view.now, 600, epoch=5.0, memo=memo)
    assert list(memo) == [svg.ROWS]  # what was not drawn is dropped


def test_the_curve_plots_every_point_and_the_untuned_line() -> None:
    root = ET.fromstring(svg.curve_svg([[0, 8, 900.0], [1, 16, 500.0], [2, 24, 450.0]], 1000))
    points = [c for c in root.iter(f"{NS}circle") if c.get("class") == "point"]
    assert len(points) == 3
    ys = [float(c.get("cy")) for c in points]
    assert ys[0] < ys[1] < ys[2]  # lower latency is drawn lower
    assert any(line.get("class") == "untuned" for line in root.iter(f"{NS}line"))
    assert "no measurements yet" in svg.curve_svg([])


def test_a_job_keeps_a_bounded_curve_with_its_first_and_last_point() -> None:
    record = _record("job-1", "alice")
    copy = record.copy()
    for i in range(1000):
        record.add_curve_point(float(i), i, 1000.0 - i)
    assert len(record.curve) <= MAX_CURVE
    assert record.curve[0] == [0.0, 0.0, 1000.0] and record.curve[-1] == [999.0, 999.0, 1.0]
    assert copy.curve == []  # a watcher's copy does not change under it
    assert JobRecord.from_dict(record.to_dict()).curve == record.curve


def test_task_rows_from_progress_pass_validation_and_bad_ones_do_not() -> None:
    infos = [TaskInfo(0, "dense", 2, 1.0e6, "a"), TaskInfo(1, "relu", 1, 10.0, "b")]
    progress = Progress(tasks=[TaskProgress(trials=8, best_us=12.5), TaskProgress()])
    rows = progress.task_rows(infos)
    assert rows[0]["name"] == "dense" and rows[0]["best_us"] == 12.5 and rows[1]["trials"] == 0
    assert malformed_result({"task_rows": rows}) == ""
    for bad in ([{**rows[0], "best_us": float("nan")}], [{**rows[0], "name": "x" * 300}],
                [{**rows[0], "extra": 1}], "rows", [rows[0]] * 5000):
        assert "task_rows" in malformed_result({"task_rows": bad})
