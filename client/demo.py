"""`tunesched demo`: an embedded daemon and two runners on loopback tune two zoo models at once.

Live progress per job, then each job's report (latency untuned -> tuned), a lease timeline and
the tuning curves as PNG under the output directory.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.api import Client
from client.format import report_lines, us
from client.timeline import plot_timeline
from runner.agent import Agent, RunnerConfig
from runner.hostinfo import HostInfo
from scheduler.service.daemon import DaemonConfig
from scheduler.service.server import Service
from simpletvm.plots import plot_curves

DEMO_JOBS = (("zoo:mlp", "mlp"), ("zoo:convnet", "convnet"))


def run_demo(out: Path, trials: int, policy: str) -> None:
    console = Console()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    service = Service(DaemonConfig(out / "state" / "scheduler.db", policy=policy),
                      "127.0.0.1:0").start()
    cores = sorted(os.sched_getaffinity(0))
    agents, threads = [], []
    for i in (1, 2):  # two runner agents on one host, sharing its work dir
        host = HostInfo("demo-host", cores, [], 0, ["llvm"])
        agent = Agent(RunnerConfig(service.address, host, out / "work", f"runner-{i}"))
        thread = threading.Thread(target=agent.run, name=f"runner-{i}", daemon=True)
        thread.start()
        agents.append(agent)
        threads.append(thread)
    console.print(f"scheduler on {service.address} (policy {policy}), 2 runners, "
                  f"cores {cores}")
    try:
        with Client(service.address) as client:
            _run(console, client, out, trials, len(cores))
    finally:
        for agent in agents:
            agent.stop()
        service.stop()
        for thread in threads:
            thread.join(timeout=10)


def _run(console: Console, client: Client, out: Path, trials: int, ncores: int) -> None:
    target = json.dumps({"kind": "llvm", "num-cores": ncores})
    infos = [client.submit(model, target, trials, name=name, batch_size=16)
             for model, name in DEMO_JOBS]
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
            if all(j.state in ("done", "failed", "cancelled") for j in jobs):
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
