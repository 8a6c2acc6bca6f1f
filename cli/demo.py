"""`tunesched demo`: an embedded daemon and two runners on loopback tune two zoo models at once.

Live progress per job (and the web dashboard, whose URL it prints), then each job's report
(latency untuned -> tuned), a lease timeline and the tuning curves as PNG under the output
directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.format import report_lines, us
from client.api import Client
from client.timeline import plot_timeline
from scheduler.core import TERMINAL_JOB_STATES, SchedulerConfig
from scheduler.service.config import DaemonConfig
from scheduler.testing import LocalCluster
from simpletvm.plots import plot_curves
from simpletvm.spec import JobSpec

DEMO_JOBS = ("zoo:mlp", "zoo:convnet")


def run_demo(out: Path, trials: int, policy: str) -> None:
    console = Console()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = DaemonConfig(out / "state" / "scheduler.db", core=SchedulerConfig(policy=policy))
    cores = sorted(os.sched_getaffinity(0))
    # two runner agents on one host, sharing its work dir
    with LocalCluster(out, {"demo-host": 2}, cores=cores, config=config,
                      http="127.0.0.1:0") as cluster:
        console.print(f"scheduler on {cluster.address} (policy {policy}), 2 runners, "
                      f"cores {cores}")
        console.print(f"dashboard at {cluster.service.web.url}", highlight=False)
        console.print("(open it to watch the jobs; it serves until they end)")
        _run(console, cluster.client, out, trials, len(cores))


def _run(console: Console, client: Client, out: Path, trials: int, ncores: int) -> None:
    target = {"kind": "llvm", "num-cores": ncores}
    infos = [client.submit(JobSpec(model=model, target=target, trials=trials, batch_size=16))
             for model in DEMO_JOBS]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("trials  best {task.fields[best]}"), TimeElapsedColumn())
    started = time.time()
    with Progress(*columns, console=console) as bar:
        tasks = {i.job_id: bar.add_task(i.name, total=i.trial_budget, best="-") for i in infos}
        while True:
            jobs = [client.get(i.job_id) for i in infos]
            for job in jobs:
                stage = f" {job.stage}" if job.stage else ""
                bar.update(tasks[job.job_id], completed=job.trials_done,
                           description=f"{job.name:<12} {job.state}{stage:<9}",
                           best=us(job.best_latency_us or None))
            if all(j.state in TERMINAL_JOB_STATES for j in jobs):
                break
            time.sleep(0.5)  # a display refresh, not synchronisation
    console.print(f"both jobs ended after {time.time() - started:.0f} s")
    curves = {}
    for job in jobs:
        if job.state != "done":
            console.print(f"[red]{job.name} {job.state}: {job.error}")
            continue
        client.fetch_result(job.job_id, out / "results" / job.name)
        report = json.loads((out / "results" / job.name / "report.json").read_text())
        curves[job.name] = report["curve"]
        for line in report_lines(report):
            console.print(line, highlight=False)
    png = plot_timeline(client.timeline(), out / "timeline.png", title="demo lease timeline",
                        labels={j.job_id: j.name for j in jobs})
    curve_png = plot_curves(curves, out / "tuning-curves.png", "demo: best latency over time")
    console.print(f"wrote {png} and {curve_png}")
    if any(j.state != "done" for j in jobs):
        raise SystemExit(1)
