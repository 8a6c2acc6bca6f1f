"""Pure text formatting for the CLI: lists of lines from reports and protobuf replies."""

from __future__ import annotations

import json
from typing import Any

from simpletvm.cores import format_ids


def us(value: float | None) -> str:
    """Microseconds, human-sized: 12.3 us, 1.23 ms, 2.10 s."""
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:.2f} ms"
    return f"{value:.1f} us"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The few lines a person wants from a job report: latency untuned -> tuned."""
    untuned, tuned = report["untuned"], report["tuned"]
    lines = [
        f"{report['name']} ({report['model']}, {report['target'].get('kind')}): "
        f"{report['trials']}/{report['trial_budget']} trials in {report['rounds']} rounds",
        f"  latency untuned {us(untuned['median_us'])} -> tuned {us(tuned['median_us'])} "
        f"({report['speedup']:.1f}x faster; tuned p90 {us(tuned['p90_us'])}, "
        f"CV {100 * tuned['cv']:.1f}%)",
    ]
    for task in report.get("tasks", []):
        best = task.get("verified_us") or task["best_us"]
        kept = "  (untuned schedule kept: faster)" if task.get("kept_default") else ""
        lines.append(f"    {task['name']:<36} x{task['weight']:<2} {task['trials']:>4} trials  "
                     f"best {us(best)}{kept}")
    return lines


def job_table_rows(infos: list[Any]) -> list[str]:
    """`tunesched jobs` lines: id, name, state, stage, trials, best latency."""
    lines = [f"{'job':<16} {'name':<14} {'state':<10} {'stage':<8} {'trials':>11} {'best':>10}"]
    for j in infos:
        lines.append(f"{j.job_id:<16} {j.name[:14]:<14} {j.state:<10} {j.stage or '-':<8} "
                     f"{j.trials_done:>5}/{j.trial_budget:<5} {us(j.best_latency_us or None):>10}")
        if j.waiting:
            lines.append(f"{'':<16} waits: {j.waiting}")
    return lines


def job_lines(j: Any) -> list[str]:
    """`tunesched show` details after the state word."""
    lines = [f"job       {j.job_id} ({j.name})", f"model     {j.model}",
             f"target    {j.target_json}{_cores_note(j.target_json)}",
             f"user      {j.user}  priority {j.priority}",
             f"progress  {j.trials_done}/{j.trial_budget} trials, round {j.round}"
             + (f", stage {j.stage} on {j.host_id}" if j.stage else ""),
             f"best      {us(j.best_latency_us or None)}"]
    if j.waiting:
        lines.append(f"waits     {j.waiting}")
    if j.reused_records:
        tasks = f"{j.reused_tasks}/{j.tasks}" if j.tasks else str(j.reused_tasks)
        lines.append(f"reused    {j.reused_records} records for {tasks} tasks; new trials "
                     f"{max(j.trials_done - j.known_trials, 0)}")
    if j.tuned_latency_us:
        lines.append(f"latency   untuned {us(j.untuned_latency_us)} -> tuned "
                     f"{us(j.tuned_latency_us)}")
    if j.error:
        lines.append(f"error     {j.error}")
    return lines


def runner_lines(rows: list[Any]) -> list[str]:
    """`tunesched runners` lines: runner, host, cores, GPUs, connected, foreign load, leases."""
    lines = [f"{'runner':<20} {'host':<14} {'cores':<10} {'gpus':<6} {'up':<4} {'load':<5} leases"]
    for r in rows:
        lines.append(f"{r.runner_id:<20} {r.host_id:<14} {format_ids(list(r.cores)):<10} "
                     f"{format_ids(list(r.gpus)) or '-':<6} {'yes' if r.connected else 'no':<4} "
                     f"{r.foreign_load:<5.2f} {', '.join(r.leases) or '-'}")
    return lines


def record_lines(keys: list[Any]) -> list[str]:
    """`tunesched db stats` lines: per target key, workloads, records (imported), trials."""
    lines = [f"{'workloads':>9} {'records':>8} {'imported':>8} {'trials':>8}  target key"]
    for k in keys:
        scope = f" [{k.scope}]" if k.scope else ""
        lines.append(f"{k.workloads:>9} {k.records:>8} {k.imported:>8} {k.trials:>8}  "
                     f"{k.target_key}{scope}")
    return lines


def _cores_note(target_json: str) -> str:
    """What an llvm target without num-cores means for a job: the runner's cores."""
    try:
        target = json.loads(target_json)
    except ValueError:
        return ""
    if isinstance(target, dict) and target.get("kind") == "llvm" and "num-cores" not in target:
        return "  (every core of the runner that takes it)"
    return ""
